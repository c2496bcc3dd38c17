"""Liveness and readiness (both /healthz/... and /health/... paths)."""

from __future__ import annotations

from fastapi import APIRouter

from snapid.errors import SnapidError
from snapid.serve.deps import DrainingDep, PredictorDep, ReloaderDep
from snapid.serve.routes import error_responses
from snapid.serve.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz/live", response_model=Health)
@router.get("/health/live", response_model=Health, include_in_schema=False)
def live() -> Health:
    """The process answers (it does not need a model)."""
    return Health(status="alive")


@router.get("/healthz/ready", response_model=Health, responses=error_responses(503))
@router.get("/health/ready", response_model=Health, include_in_schema=False)
def ready(predictor: PredictorDep, reloader: ReloaderDep, draining: DrainingDep) -> Health:
    """200 while a model is loaded and the server is not shutting down, else 503. Anyone may ask, so a
    refused bundle is named by its error code only; the server log has the whole reason."""
    if draining():
        raise SnapidError("the server is shutting down", code="shutting_down", status=503)
    model = predictor.model
    if model is None or not predictor.ready:
        if reloader is None:
            detail = "no bundle is served"
        elif reloader.last_error_code:
            detail = f"the bundle was refused ({reloader.last_error_code}); the server log says why"
        else:
            detail = "the bundle is still loading"
        raise SnapidError(f"no model is loaded: {detail}", code="not_ready", status=503)
    return Health(status="ready", model=model.info)
