"""Benchmark: nearest places at 100,000 places (issue 21).

100,000 random places (food, lodging, sight) over South Korea (lat 33-38.6, lon 124.6-131.9), a third of them
packed into Seoul as a city would have them; 2,000 queries at random landmarks (half in Seoul), each asking
the 3 nearest places of each category within 20 km (the server's defaults). Compared:

- ``PlaceIndex.nearest`` (snapid.knowledge.places: latitude-sorted arrays, a bounding box by binary search
  and a longitude filter, haversine on what is left, the box widened until each category has its 3), what
  the server runs on every answer with coordinates;
- the same box through the database (``snapid.track.knowledge.places_in_box``: the (version_id, lat, lon)
  index of knowledge_places, SQLite in a temporary workspace) followed by haversine;
- brute force: haversine to every place (the reference the tests compare with).

Every answer of the index is checked against brute force. CPU time of this thread (``time.thread_time``)
is the figure on a shared machine; wall time is printed too.

    .venv/bin/python benchmarks/places.py            # ~1 minute on 2 cores
    .venv/bin/python benchmarks/places.py --places 100000 --queries 2000 --json places.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from snapid.knowledge.places import PlaceIndex, brute_force_nearest, haversine_km


def make_places(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        if i % 3 == 0:  # Seoul
            lat, lon = 37.5665 + rng.gauss(0, 0.08), 126.9780 + rng.gauss(0, 0.1)
        else:
            lat, lon = rng.uniform(33.0, 38.6), rng.uniform(124.6, 131.9)
        out.append({"category": rng.choice(("food", "lodging", "sight")), "lat": lat, "lon": lon,
                    "names": {"en": f"place {i}"}, "addresses": {}, "link": ""})
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def timed(fn, queries) -> tuple[list[float], list[float], list]:
    cpu, wall, answers = [], [], []
    for q in queries:
        c0, w0 = time.thread_time(), time.perf_counter()
        answers.append(fn(*q))
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--places", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--brute", type=int, default=50, help="queries also answered by brute force (slow)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(0)
    places = make_places(args.places, rng)
    queries = [((37.5665 + rng.gauss(0, 0.05), 126.978 + rng.gauss(0, 0.06)) if i % 2 else
                (rng.uniform(33.2, 38.4), rng.uniform(126.0, 129.5))) for i in range(args.queries)]

    t0 = time.perf_counter()
    index = PlaceIndex(places)
    build_s = time.perf_counter() - t0
    rows = []
    cpu, wall, got = timed(lambda lat, lon: index.nearest(lat, lon, per_category=3, max_km=20.0), queries)
    rows.append(("PlaceIndex.nearest (served)", cpu, wall))

    # the database path: the same search, each box a query on the (version_id, lat, lon) index
    from snapid.knowledge.store import import_places
    from snapid.track import knowledge as tk
    from snapid.track.db import get_engine, transaction
    from snapid.track.tables import Base

    with tempfile.TemporaryDirectory() as tmp:
        engine = get_engine(f"sqlite:///{tmp}/snapid.db")
        Base.metadata.create_all(engine)
        from snapid.track.tables import DatasetRow
        with transaction(engine) as session:
            session.add(DatasetRow(name="bench"))
        path = Path(tmp) / "places.csv"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("name,category,lat,lon\n")
            fh.writelines(f"{p['names']['en']},{p['category']},{p['lat']!r},{p['lon']!r}\n" for p in places)
        t0 = time.perf_counter()
        import_places(path, dataset="bench", engine=engine)
        import_s = time.perf_counter() - t0

        def in_database(lat: float, lon: float) -> list[dict]:
            km = 0.5
            with transaction(engine) as session:
                while True:
                    dlat = math.degrees(km / 6371.0088)
                    dlon = math.degrees(km / (6371.0088 * math.cos(math.radians(abs(lat) + dlat))))
                    found = tk.places_in_box(session, dataset="bench", south=lat - dlat, north=lat + dlat,
                                             west=lon - dlon, east=lon + dlon)
                    near = [(float(haversine_km(lat, lon, p["lat"], p["lon"])), p) for p in found]
                    near = [(d, p) for d, p in near if d <= km]
                    counts = {c: sum(1 for _, p in near if p["category"] == c) for c in ("food", "lodging", "sight")}
                    if km >= 20.0 or min(counts.values()) >= 3:
                        return near
                    km = min(km * 4, 20.0)

        cpu_db, wall_db, _ = timed(in_database, queries[:500])
        rows.append(("database box (SQLite index) + haversine", cpu_db, wall_db))

    sample = queries[:args.brute]
    cpu_bf, wall_bf, want = timed(lambda lat, lon: brute_force_nearest(places, lat, lon, per_category=3,
                                                                       max_km=20.0), sample)
    rows.append(("brute force (every place)", cpu_bf, wall_bf))
    agree = all([p["names"] for p in a] == [p["names"] for p in b] for a, b in zip(got, want, strict=False))

    print(f"{args.places:,} places; index built in {build_s * 1000:.0f} ms; imported in {import_s:.1f} s; "
          f"index answers equal brute force on {len(sample)} queries: {agree}")
    print("| search | queries | CPU p50 | CPU p99 | wall p50 | wall p99 |")
    print("|---|---|---|---|---|---|")
    result = {"places": args.places, "build_ms": build_s * 1000, "import_s": import_s, "agree": agree, "rows": []}
    for name, c, w in rows:
        print(f"| {name} | {len(c):,} | {percentile(c, 50) * 1e3:.2f} ms | {percentile(c, 99) * 1e3:.2f} ms | "
              f"{percentile(w, 50) * 1e3:.2f} ms | {percentile(w, 99) * 1e3:.2f} ms |")
        result["rows"].append({"search": name, "queries": len(c), "cpu_p50_ms": percentile(c, 50) * 1e3,
                               "cpu_p99_ms": percentile(c, 99) * 1e3, "wall_p50_ms": percentile(w, 50) * 1e3,
                               "wall_p99_ms": percentile(w, 99) * 1e3})
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
