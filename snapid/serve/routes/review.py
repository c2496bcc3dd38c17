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
from snapid.feedback import new_class, service
from snapid.serve.bodies import read_json
from snapid.serve.deps import (
    DatabaseDep,
    NewClassesDep,
    PhotoStoreDep,
    PredictorDep,
    SettingsDep,
    loaded_model,
)
from snapid.serve.routes import error_responses
from snapid.serve.schemas import UUID, NewClassGroups, NewClassIn, NewClassOut, ReviewIn
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


def _body(model) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


REVIEW_BODY, NEW_CLASS_BODY = _body(ReviewIn), _body(NewClassIn)
NEW_CLASS_MAX_BODY = 8 * 1024  # a name and up to 100 ids


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


@router.get("/api/v1/review/new-classes", dependencies=[Depends(require_reviewer)], response_model=NewClassGroups,
            responses=error_responses(401, 403, 503))
async def new_class_groups(database: DatabaseDep) -> NewClassGroups:
    """Approved "not in the list" feedback that no class names yet, grouped by the users' text."""
    return NewClassGroups(groups=await run_in_threadpool(new_class.groups, database()))


@router.post("/api/v1/review/new-class", dependencies=[Depends(require_reviewer)], response_model=NewClassOut,
             openapi_extra=NEW_CLASS_BODY, responses=error_responses(401, 403, 404, 409, 413, 422, 500, 501, 503, 504))
async def make_new_class(request: Request, predictor: PredictorDep, maker: NewClassesDep) -> dict:
    """Add a class to the served bundle folder from the kept photos (5 to 20) of approved "not in the list"
    feedback, as `snapid add-class` does (run as a child process); the server then serves the new version and
    the feedback items record the class they became. Refusals name why: the items (409), the photo count or
    the name (422), a packed bundle or reload off (409), add-class missing from this install (501)."""
    try:
        body = NewClassIn.model_validate(await read_json(request, limit=NEW_CLASS_MAX_BODY))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    return await maker.make(body.name, body.feedback_ids, loaded_model(predictor).labels)


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
