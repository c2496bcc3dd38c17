"""GET /api/v1/map: what the page's map needs (the tile URL template and its attribution); the places
themselves come with each answer's card."""

from __future__ import annotations

from fastapi import APIRouter

from snapid.serve.deps import SettingsDep
from snapid.serve.schemas import MapConfig

router = APIRouter(tags=["model"])


@router.get("/api/v1/map", response_model=MapConfig)
def map_config(settings: SettingsDep) -> MapConfig:
    """The map's tile server (SNAPID_TILE_URL; empty: no map, the page lists the places only)."""
    return MapConfig(tile_url=settings.tile_url, attribution=settings.tile_attribution)
