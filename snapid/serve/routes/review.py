"""The review queue: GET /review (the page), and its token-protected JSON API and thumbnails.

Every API call needs ``Authorization: Bearer <SNAPID_REVIEW_TOKEN>`` (compared in constant time);
with no token configured, review is disabled (403). The page itself holds no data: its script asks
for the token and sends it with each call. Photos are served by opaque upload id only."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from snapid.errors import SnapidError
from snapid.feedback import service
from snapid.serve.bodies import read_json
from snapid.serve.deps import DatabaseDep, PhotoStoreDep, PredictorDep, SettingsDep, loaded_model
from snapid.serve.routes import error_responses
from snapid.serve.schemas import UUID, ReviewIn
from snapid.serve.services.predictor import Predictor

PAGE = Path(__file__).resolve().parents[1] / "static" / "review" / "index.html"
MAX_BODY = 4 * 1024

router = APIRouter(tags=["review"])


def require_reviewer(settings: SettingsDep, authorization: str | None = Header(None, max_length=1024)) -> None:
    expected = settings.review_token
    if not expected:
        raise SnapidError("review is disabled; set SNAPID_REVIEW_TOKEN", code="review_disabled", status=403)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise SnapidError("missing or wrong review token (Authorization: Bearer ...)", code="unauthorized", status=401)


def _classes(predictor: Predictor) -> list[dict]:
    model = predictor.model
    return model.labels if model is not None else []


REVIEW_BODY = {"requestBody": {"required": True,
                               "content": {"application/json": {"schema": ReviewIn.model_json_schema()}}}}


@router.get("/review", include_in_schema=False)
def review_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/api/v1/review", dependencies=[Depends(require_reviewer)], responses=error_responses(401, 403, 422))
async def review_queue(predictor: PredictorDep, database: DatabaseDep,
                       status: Literal["pending", "approved", "rejected"] = Query("pending"),
                       limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0, le=10_000_000)) -> dict:
    """A page of feedback, oldest first, with the model's answer and the saved photos' ids; plus the classes."""
    classes = _classes(predictor)
    page = await run_in_threadpool(service.review_queue, database(), status=status, limit=limit,
                                   offset=offset, classes=classes)
    return {**page, "classes": [{"id": c["id"], "name": c["name"]} for c in classes]}


@router.post("/api/v1/review/{feedback_id}", dependencies=[Depends(require_reviewer)], openapi_extra=REVIEW_BODY,
             responses=error_responses(401, 403, 404, 409, 413, 422, 503))
async def review_one(request: Request, predictor: PredictorDep, database: DatabaseDep,
                     feedback_id: str = PathParam(pattern=UUID)) -> dict:
    """approve (keep the user's label), relabel (approve with another class) or reject."""
    try:
        body = ReviewIn.model_validate(await read_json(request, limit=MAX_BODY))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    classes = loaded_model(predictor).labels if body.action == "relabel" else _classes(predictor)
    return await run_in_threadpool(service.review, database(), feedback_id=feedback_id.lower(),
                                   action=body.action, label=body.label, classes=classes)


@router.get("/api/v1/uploads/{upload_id}/thumb", dependencies=[Depends(require_reviewer)],
            response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}, **error_responses(401, 403, 404)})
async def thumbnail(photo_store: PhotoStoreDep, upload_id: str = PathParam(pattern=UUID)) -> FileResponse:
    """The thumbnail of a saved photo, by its upload id."""
    path = await run_in_threadpool(photo_store().thumbnail, upload_id.lower())
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
