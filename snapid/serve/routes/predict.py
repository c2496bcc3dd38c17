"""POST /api/v1/predict: 1 to 5 photos of one object → one combined, calibrated answer."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Query, Request

from snapid.serve.routes import error_responses
from snapid.serve.schemas import PredictResponse
from snapid.serve.services.photos import keep_photos
from snapid.serve.services.predictor import top_k
from snapid.serve.services.uploads import FIELD, read_photos

router = APIRouter(prefix="/api/v1", tags=["predict"])

MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "array", "minItems": 1, "maxItems": 5,
                           "description": "1 to 5 photos (SNAPID_MAX_FILES) of the same object: JPEG, PNG, WebP, GIF or BMP",
                           "items": {"type": "string", "format": "binary"}}}}}}}}


@router.post("/predict", response_model=PredictResponse, openapi_extra=MULTIPART_BODY,
             responses=error_responses(400, 408, 413, 415, 422, 503, 507))
async def predict(request: Request,
                  k: int | None = Query(None, ge=1, le=50, description="How many classes to return (default SNAPID_TOP_K)."),
                  lang: str | None = Query(None, max_length=16, pattern=r"^[A-Za-z_-]+$",
                                           description="Language of display_name, e.g. en, ko."),
                  consent: bool = Query(False, description="Keep the photos (upright, EXIF stripped) for review and "
                                                           "retraining. Off by default: nothing is stored.")) -> PredictResponse:
    """Identify one object from 1 to 5 photos; their calibrated probabilities are averaged."""
    start = time.perf_counter()
    state = request.app.state
    photos = await read_photos(request, max_files=state.settings.max_files)
    answer = await state.predictor.predict(photos)
    best = top_k(answer.model, answer.probs, k or state.settings.top_k, lang)
    unknown = best[0]["score"] < answer.model.threshold
    prediction_id = str(uuid.uuid4())
    await keep_photos(request, [data for _, data in photos], consent=consent, prediction_id=prediction_id)
    state.prediction_log.add({"id": prediction_id, **_model_fields(answer.model.info), "unknown": unknown,
                              "top": [{"id": p["id"], "score": p["score"]} for p in best], "n_photos": answer.photos})
    return PredictResponse(prediction_id=prediction_id, predictions=best, unknown=unknown,
                           threshold=answer.model.threshold, photos=answer.photos, model=answer.model.info,
                           timings_ms={"decode": round(answer.decode_ms, 2), "inference": round(answer.inference_ms, 2),
                                       "total": round((time.perf_counter() - start) * 1000, 2)})


def _model_fields(info: dict) -> dict:
    return {"model_name": info["name"], "model_version": info["version"], "model_sha256": info["sha256"]}
