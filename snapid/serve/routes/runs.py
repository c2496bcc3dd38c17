"""The experiments dashboard: HTML pages under /runs and the JSON API under /api/v1 behind them.

The pages are static shells (snapid/serve/static/dashboard/) whose scripts fetch this JSON and set
every value as DOM text; no user string is ever templated into HTML on the server.
A run reference is its numeric id when all digits, otherwise its name.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path as FilePath
from typing import Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from snapid.serve.deps import EngineDep
from snapid.serve.schemas import Comparison, EpochPage, RunDetail, RunPage
from snapid.serve.services import runs_view
from snapid.track.queries import SORT_KEYS, RunFilter
from snapid.track.runs import STATUSES

router = APIRouter()
PAGES = FilePath(__file__).resolve().parents[1] / "static" / "dashboard"
NO_NUL = r"^[^\x00]*$"  # NUL is not storable in PostgreSQL text, so it can never match: refuse it up front


def _text(description: str):
    return Query(None, max_length=200, pattern=NO_NUL, description=description)


RunRef = Path(description="A run's numeric id (all digits) or its name.", max_length=200, pattern=NO_NUL)
SortKey = Literal[SORT_KEYS]  # type: ignore[valid-type]


def _page(file: str) -> FileResponse:
    return FileResponse(PAGES / file, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/runs", include_in_schema=False)
def runs_page() -> FileResponse:
    return _page("runs.html")


@router.get("/runs/compare", include_in_schema=False)
def compare_page() -> FileResponse:
    return _page("compare.html")


@router.get("/runs/{ref}", include_in_schema=False)
def run_page(ref: str) -> FileResponse:
    return _page("run.html")


@router.get("/api/v1/runs", response_model=RunPage, tags=["runs"])
def list_runs(engine: EngineDep, dataset: str | None = _text("Dataset name."),
              model: str | None = _text("Model (backbone) name."),
              kind: str | None = _text("train, tune-trial, compare, ensemble, ..."),
              status: Literal[STATUSES] | None = None,  # type: ignore[valid-type]
              since: datetime | None = Query(None, description="Created at or after (ISO 8601; naive = UTC)."),
              until: datetime | None = Query(None, description="Created before (exclusive)."),
              sort: SortKey = "created_at", order: Literal["asc", "desc"] = "desc",
              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000)) -> dict:
    """Runs matching the filters, one page, sorted; `total` counts every match."""
    where = RunFilter(dataset=dataset, model=model, status=status, kind=kind,
                      since=runs_view.as_utc(since, field="since"), until=runs_view.as_utc(until, field="until"))
    return runs_view.list_runs(engine, where=where, sort=sort, descending=order == "desc", limit=limit, offset=offset)


@router.get("/api/v1/compare", response_model=Comparison, tags=["runs"])
def compare_runs(engine: EngineDep,
                 names: str = Query(..., max_length=4000, pattern=NO_NUL, description="Run names, comma-separated.")
                 ) -> dict:
    """Several runs' summaries and the leaderboard of their dataset(s); curves come from each run's epochs."""
    return runs_view.compare_runs(engine, [n.strip() for n in names.split(",")])


@router.get("/api/v1/runs/{ref}", response_model=RunDetail, tags=["runs"],
            responses={404: {"description": "No such run."}})
def get_run(engine: EngineDep, ref: str = RunRef) -> dict:
    """One run: configuration, summary, artifacts' headline metrics, calibration and evaluation results."""
    return runs_view.run_detail(engine, ref)


@router.get("/api/v1/runs/{ref}/epochs", response_model=EpochPage, tags=["runs"],
            responses={404: {"description": "No such run."}})
def get_epochs(engine: EngineDep, ref: str = RunRef,
               after: int = Query(-1, ge=-1, le=2**31, description="Only epochs numbered above this."),
               limit: int = Query(1000, ge=1, le=5000)) -> dict:
    """Epochs after N, in order: poll with the last epoch seen while the status is queued or running."""
    return runs_view.run_epochs(engine, ref, after=after, limit=limit)
