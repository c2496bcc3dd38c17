"""Places near a landmark (restaurants, lodging, sights): parsed from CSV or YAML, and found by distance.

Columns (case-insensitive): ``name`` / ``name_<lang>`` (at least one), ``category`` (``food``, ``lodging``,
``sight`` or another lower-case word), ``lat`` (-90..90), ``lon`` (-180..180), ``address`` /
``address_<lang>``, ``link`` (http(s)). Pure: no database, no network (NumPy for the search).

`PlaceIndex` keeps the places sorted by latitude: a query takes the latitude band of a box around the point
by binary search, filters it by longitude, and measures only what is left (haversine), widening the box
until every category has its nearest places or the box reaches ``max_km``; so a query looks at the places
near the point, not at all 100,000.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snapid.knowledge import KnowledgeError
from snapid.knowledge.cards import NO_LANGUAGE, checked_url, coordinate
from snapid.knowledge.table import language_of, read_rows

EARTH_KM = 6371.0088
CATEGORIES = ("food", "lodging", "sight")
_CATEGORY = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass
class Place:
    category: str
    lat: float
    lon: float
    names: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    link: str = ""

    def as_dict(self) -> dict:
        return {"category": self.category, "lat": self.lat, "lon": self.lon, "names": dict(self.names),
                "addresses": dict(self.addresses), "link": self.link}


def parse_places(path: Path) -> list[Place]:
    """Every place in ``path``, in file order; KnowledgeError names the file, line and column at fault."""
    out = []
    for row in read_rows(Path(path), key_column="name"):
        values, names, addresses = row.values, {}, {}
        for column, text in values.items():
            if lang := language_of(column, ("name_",)):
                names[lang] = text
            elif lang := language_of(column, ("address_",)):
                addresses[lang] = text
        if values.get("name"):
            names.setdefault(NO_LANGUAGE, values["name"])
        if values.get("address"):
            addresses.setdefault(NO_LANGUAGE, values["address"])
        if not names:
            raise KnowledgeError(f"{row.where}: column 'name': a place needs a name (name or name_<lang>)")
        category = values.get("category", "").lower()
        if not _CATEGORY.match(category):
            raise KnowledgeError(f"{row.where}: column 'category': {category[:40]!r} is not a category "
                                 f"({', '.join(CATEGORIES)} or another lower-case word)")
        for column in ("lat", "lon"):
            if column not in values:
                raise KnowledgeError(f"{row.where}: column {column!r} is missing")
        link = checked_url(row.where, "link", values["link"]) if values.get("link") else ""
        out.append(Place(category, coordinate(row.where, "lat", values["lat"]),
                         coordinate(row.where, "lon", values["lon"]), names, addresses, link))
    return out


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km; NumPy arrays or floats."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class PlaceIndex:
    """Places (Place.as_dict()) sorted by latitude, for `nearest`."""

    def __init__(self, places: list[dict]):
        lat = np.array([float(p["lat"]) for p in places], dtype=np.float64)
        order = np.argsort(lat, kind="stable")
        self.places = [places[i] for i in order]
        self.lat = lat[order]
        self.lon = np.array([float(p["lon"]) for p in self.places], dtype=np.float64)
        names = [str(p["category"]) for p in self.places]
        self.categories = sorted(set(names))
        number = {c: i for i, c in enumerate(self.categories)}
        self.category = np.array([number[c] for c in names], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.places)

    def in_box(self, lat: float, lon: float, km: float) -> np.ndarray:
        """Indices of the places in the box of half-side ``km`` around the point (a superset of the disc)."""
        dlat = math.degrees(km / EARTH_KM)
        lo = int(np.searchsorted(self.lat, lat - dlat, side="left"))
        hi = int(np.searchsorted(self.lat, lat + dlat, side="right"))
        band = np.arange(lo, hi)
        widest = max(abs(lat) + dlat, 0.0)
        if widest >= 89.9:
            return band
        dlon = math.degrees(km / (EARTH_KM * math.cos(math.radians(widest))))
        if dlon >= 180:
            return band
        off = np.abs((self.lon[band] - lon + 180.0) % 360.0 - 180.0)
        return band[off <= dlon]

    def nearest(self, lat: float, lon: float, *, per_category: int = 3, max_km: float = 20.0,
                start_km: float = 0.5) -> list[dict]:
        """The ``per_category`` nearest places of each category within ``max_km``, as
        [{**place, "distance_km"}], grouped by category (categories in name order), nearest first."""
        if not len(self) or per_category <= 0:
            return []
        km = min(start_km, max_km)
        while True:
            idx = self.in_box(lat, lon, km)
            dist = haversine_km(lat, lon, self.lat[idx], self.lon[idx]) if len(idx) else np.zeros(0)
            keep = dist <= km  # inside the disc: nothing outside it can be nearer than these
            idx, dist = idx[keep], dist[keep]
            counts = np.bincount(self.category[idx], minlength=len(self.categories))
            if km >= max_km or counts.min() >= per_category:
                break
            km = min(km * 4, max_km)
        out = []
        for c in range(len(self.categories)):
            mine = np.flatnonzero(self.category[idx] == c)
            best = mine[np.lexsort((idx[mine], dist[mine]))][:per_category]
            out += [{**self.places[idx[i]], "distance_km": float(dist[i])} for i in best]
        return out


def brute_force_nearest(places: list[dict], lat: float, lon: float, *, per_category: int = 3,
                        max_km: float = 20.0) -> list[dict]:
    """The reference `PlaceIndex.nearest` must agree with (tests, benchmarks): every place measured."""
    by_category: dict[str, list] = {}
    for p in places:
        d = float(haversine_km(lat, lon, float(p["lat"]), float(p["lon"])))
        if d <= max_km:
            by_category.setdefault(str(p["category"]), []).append((d, p))
    out = []
    for category in sorted(by_category):
        out += [{**p, "distance_km": d} for d, p in sorted(by_category[category], key=lambda t: t[0])[:per_category]]
    return out
