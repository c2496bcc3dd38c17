"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from snapid.serve.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(counters: MetricsDep) -> PlainTextResponse:
    """Requests by route and status, latency histogram, queue depth, batch sizes."""
    return PlainTextResponse(counters.render(), media_type="text/plain; version=0.0.4")
