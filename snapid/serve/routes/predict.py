"""POST /api/v1/predict: 1 to 5 photos of one object → one combined, calibrated answer with its knowledge card;
or (mode=each) one answer per photo, with warnings when the objects must not go together; or, when the
bundle has a detector (mode=detect), one answer per object found in the photos, rules checked across them.
The work is snapid.serve.services.identify's."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Query, Request

from snapid.serve.bodies import FIELD, read_photos
from snapid.serve.deps import IdentifyDep, SettingsDep, loaded_model
from snapid.serve.routes import error_responses
from snapid.serve.schemas import PredictResponse
from snapid.serve.services import subsets

router = APIRouter(prefix="/api/v1", tags=["predict"])

MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "array", "minItems": 1, "maxItems": 5,
                           "description": "1 to 5 photos (SNAPID_MAX_FILES) of the same object: JPEG, PNG, WebP, "
                                          "GIF or BMP",
                           "items": {"type": "string", "format": "binary"}}}}}}}}


@router.post("/predict", response_model=PredictResponse, openapi_extra=MULTIPART_BODY,
             responses=error_responses(400, 408, 409, 413, 415, 422, 503, 507))
async def predict(request: Request, identify: IdentifyDep, settings: SettingsDep,
                  k: int | None = Query(None, ge=1, le=50,
                                        description="How many classes to return (default SNAPID_TOP_K)."),
                  lang: str | None = Query(None, max_length=16, pattern=r"^[A-Za-z_-]+$",
                                           description="Language of display names, cards and warnings, e.g. en, ko."),
                  consent: bool = Query(False, description="Keep the photos (upright, EXIF stripped) for review and "
                                                           "retraining. Off by default: nothing is stored."),
                  classes: list[str] | None = Query(None, max_length=1000, description="Answer among these classes "
                                                    "only (ids or names; repeated or comma-separated): probabilities "
                                                    "renormalised over them, then the unknown rule. 422 "
                                                    "unknown_classes names any the model lacks."),
                  subset: str | None = Query(None, max_length=64, description="Answer among a named subset of the "
                                             "bundle (GET /api/v1/subsets), as classes= does. 422 unknown_subset."),
                  mode: Literal["same", "each"] = Query("same", description="same: the photos show one object and are "
                                                        "combined; each: every photo is its own object, and rules "
                                                        "are checked across them. A bundle with a detector always "
                                                        "answers mode=detect: one answer per object found."),
                  explain: bool = Query(False, description="Also answer, per photo, a heatmap of where the model "
                                                           "looked (class activation map: a small grid and a PNG "
                                                           "overlay). 409 explain_unavailable when the bundle cannot "
                                                           "(GET /api/v1/model says explain).")
                  ) -> PredictResponse:
    """Identify one object from 1 to 5 photos (their calibrated probabilities are averaged), or with
    mode=each one object per photo, with warnings when the objects must not go together."""
    start = time.perf_counter()
    identify.check_capacity()
    if explain:
        identify.check_explain()
    candidates = subsets.resolve(loaded_model(identify.predictor), classes, subset)  # 422 before reading photos
    photos = await read_photos(request, max_files=settings.max_files)
    with subsets.only(candidates):
        return PredictResponse(**await identify.photos(photos, k=k or settings.top_k, lang=lang, consent=consent,
                                                       mode=mode, start=start, explain=explain))
