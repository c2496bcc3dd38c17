"""One typed Settings object (env prefix SNAPID_). Inner functions take only the values they use."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNAPID_", extra="ignore")

    home: Path = Field(Path("snapid-home"), description="Workspace folder: database, caches, runs, bundles.")
    db_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the workspace.")
    workers: int = Field(default_factory=_default_workers, description="Parallel workers for import/prepare.")
    max_pixels: int = Field(40_000_000, description="Largest image accepted, in pixels (width x height).")
    min_side: int = Field(32, description="Smallest accepted image side, in pixels.")
    max_file_bytes: int = Field(64 * 1024 * 1024, description="Largest image file read during import.")

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'snapid.db').resolve()}"


def get_settings() -> Settings:
    return Settings()
