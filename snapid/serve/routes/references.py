"""GET /api/v1/references/{id}: a reference photo's thumbnail from the served bundle (issue 20).

Answers name the reference photos nearest to the query by opaque id; the id is a digest of the photo's
content, so the thumbnail may be cached for good. An id the served bundle does not hold (say, after a hot
swap) is 404."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response

from snapid.errors import SnapidError
from snapid.serve.deps import ModelDep
from snapid.serve.routes import error_responses

router = APIRouter(prefix="/api/v1", tags=["model"])


@router.get("/references/{reference_id}", response_class=Response, responses={
    200: {"content": {"image/jpeg": {}}, "description": "The reference photo's thumbnail (JPEG)."},
    **error_responses(404, 422, 503)})
def reference_photo(model: ModelDep, reference_id: str = PathParam(..., pattern=r"^[0-9a-f]{8,64}$")) -> Response:
    """A reference photo of the served bundle, by the id an answer gave."""
    thumb = model.references.thumbs.get(reference_id) if model.references is not None else None
    if thumb is None:
        raise SnapidError(f"no reference photo {reference_id} in the served model", code="not_found", status=404)
    return Response(thumb, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=31536000, immutable"})
