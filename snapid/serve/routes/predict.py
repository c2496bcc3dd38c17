"""POST /api/v1/predict: 1 to 5 photos of one object → one combined, calibrated answer with its knowledge card;
or (mode=each) one answer per photo, with warnings when the objects must not go together; or, when the
bundle has a detector (mode=detect), one answer per object found in the photos, rules checked across them."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Literal

import numpy as np
from fastapi import APIRouter, Query, Request

from snapid.serve.routes import error_responses
from snapid.serve.schemas import PredictResponse
from snapid.serve.services.photos import keep_photos
from snapid.serve.services.prediction_log import model_fields
from snapid.serve.services import answers
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
                                           description="Language of display names, cards and warnings, e.g. en, ko."),
                  consent: bool = Query(False, description="Keep the photos (upright, EXIF stripped) for review and "
                                                           "retraining. Off by default: nothing is stored."),
                  mode: Literal["same", "each"] = Query("same", description="same: the photos show one object and are "
                                                        "combined; each: every photo is its own object, and rules "
                                                        "are checked across them. A bundle with a detector always "
                                                        "answers mode=detect: one answer per object found.")) -> PredictResponse:
    """Identify one object from 1 to 5 photos (their calibrated probabilities are averaged), or with
    mode=each one object per photo, with warnings when the objects must not go together."""
    start = time.perf_counter()
    state = request.app.state
    state.predictor.check_capacity()
    photos = await read_photos(request, max_files=state.settings.max_files)
    k = k or state.settings.top_k
    if getattr(state.predictor.model, "detector", None) is not None:
        return await _predict_detect(request, photos, k=k, lang=lang, consent=consent, start=start)
    if mode == "each":
        return await _predict_each(request, photos, k=k, lang=lang, consent=consent, start=start)
    result = await state.predictor.predict(photos)
    body = answers.answer(result.model, result.probs, k=k, lang=lang)
    prediction_id, kept = await _keep_and_log(request, result, body, [data for _, data in photos], consent=consent)
    return PredictResponse(prediction_id=prediction_id, **body, threshold=result.model.threshold, photos=result.photos,
                           model=result.model.info, timings_ms=_timings(result, result, start), mode="same", kept=kept)


async def _predict_each(request: Request, photos: list[tuple[str, bytes]], *, k: int, lang: str | None, consent: bool,
                        start: float) -> PredictResponse:
    predictor = request.app.state.predictor
    results = await asyncio.gather(*(predictor.predict([photo]) for photo in photos))
    model = results[0].model  # a hot swap between photos is possible; the first photo's model answers the rules
    objects, kept = [], []
    for n, (result, (_, data)) in enumerate(zip(results, photos)):
        body = answers.answer(result.model, result.probs, k=k, lang=lang)
        prediction_id, photo_kept = await _keep_and_log(request, result, body, [data], consent=consent)
        kept.append(photo_kept)
        objects.append({"photo": n, "prediction_id": prediction_id, **body})
    recognised = answers.recognised((o["photo"], o) for o in objects)
    first = objects[0]
    return PredictResponse(prediction_id=first["prediction_id"], predictions=first["predictions"],
                           unknown=first["unknown"], card=first["card"], threshold=model.threshold, photos=len(photos),
                           model=model.info, mode="each", objects=objects,
                           kept="quota_full" if "quota_full" in kept else kept[0],
                           warnings=answers.warnings_for(model, recognised, lang),
                           timings_ms=_timings(max(results, key=lambda r: r.decode_ms),
                                               max(results, key=lambda r: r.inference_ms), start))


async def _predict_detect(request: Request, photos: list[tuple[str, bytes]], *, k: int, lang: str | None,
                          consent: bool, start: float) -> PredictResponse:
    """A bundle with a detector: one answer per detected object, rules across all of them; with nothing
    detected, the photos are identified whole (combined as in mode=same) and the answer says so."""
    result = await request.app.state.predictor.predict_objects(photos)
    model, datas = result.model, [data for _, data in photos]
    if result.fallback:
        body = answers.answer(model, np.concatenate(result.probs).mean(axis=0), k=k, lang=lang)
        prediction_id, kept = await _keep_and_log(request, result, body, datas, consent=consent)
        return PredictResponse(prediction_id=prediction_id, **body, threshold=model.threshold, photos=result.photos,
                               model=model.info, mode="detect", objects=[], fallback="no_object_detected",
                               timings_ms=_timings(result, result, start), kept=kept)
    objects, kept = [], "not_asked"
    for photo, (found, probs) in enumerate(zip(result.found, result.probs)):
        for detection, row in zip(found.detections, probs):
            body = answers.answer(model, row, k=k, lang=lang)
            first = not objects  # the photos are kept once, with the first object's answer
            prediction_id, object_kept = await _keep_and_log(request, result, body, datas if first else [],
                                                             consent=consent and first)
            kept = object_kept if first else kept
            objects.append({"photo": photo, "prediction_id": prediction_id, **body, "box": list(detection.box),
                            "detector_score": round(min(1.0, max(0.0, detection.score)), 6)})
    recognised = answers.recognised(enumerate(objects))
    first = objects[0]
    return PredictResponse(prediction_id=first["prediction_id"], predictions=first["predictions"], unknown=first["unknown"],
                           card=first["card"], threshold=model.threshold, photos=result.photos, model=model.info,
                           mode="detect", objects=objects, warnings=answers.warnings_for(model, recognised, lang),
                           timings_ms=_timings(result, result, start), kept=kept)


async def _keep_and_log(request: Request, result, body: dict, photos: list[bytes], *,
                        consent: bool) -> tuple[str, str]:
    """Keep the photos (with consent) and log the answer for feedback; returns its prediction id and
    what happened to the photos (the answer's ``kept``)."""
    prediction_id = str(uuid.uuid4())
    kept = await keep_photos(request, photos, consent=consent, prediction_id=prediction_id)
    request.app.state.prediction_log.add({
        "id": prediction_id, **model_fields(result.model), "unknown": body["unknown"],
        "top": [{"id": p["id"], "score": p["score"]} for p in body["predictions"]], "n_photos": result.photos})
    return prediction_id, kept


def _timings(decode, inference, start: float) -> dict:
    return {"decode": round(decode.decode_ms, 2), "inference": round(inference.inference_ms, 2),
            "total": round((time.perf_counter() - start) * 1000, 2)}
