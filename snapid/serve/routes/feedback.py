"""POST /api/v1/feedback: the user's answer to one prediction (a class, or "not in the list")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from snapid.feedback import service
from snapid.serve.bodies import read_json
from snapid.serve.deps import DatabaseDep, PredictionLogDep, PredictorDep, SettingsDep, loaded_model
from snapid.serve.routes import error_responses
from snapid.serve.schemas import FeedbackIn, FeedbackOut

router = APIRouter(prefix="/api/v1", tags=["feedback"])

MAX_BODY = 16 * 1024


BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": FeedbackIn.model_json_schema()}}}}


@router.post("/feedback", status_code=201, response_model=FeedbackOut, openapi_extra=BODY,
             responses={200: {"model": FeedbackOut, "description": "Already stored: the first answer, unchanged."},
                        **error_responses(404, 413, 422, 429, 503)})
async def feedback(request: Request, predictor: PredictorDep, database: DatabaseDep,
                   prediction_log: PredictionLogDep, settings: SettingsDep) -> JSONResponse:
    """Record feedback once per prediction and client key (201; a repeat answers 200 with the same id)."""
    try:
        body = FeedbackIn.model_validate(await read_json(request, limit=MAX_BODY))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    classes = loaded_model(predictor).labels
    record, created = await run_in_threadpool(
        service.record_feedback, database(), prediction_id=body.prediction_id.lower(),
        client_key=body.client_key, label=body.label, not_in_list=body.not_in_list, text=body.text,
        classes=classes, catch_up=lambda: prediction_log.flush(timeout=2.0), limit=settings.feedback_per_prediction)
    out = FeedbackOut(feedback_id=record["id"], created=created, status=record["status"], label=record["label"],
                      not_in_list=record["not_in_list"])
    return JSONResponse(out.model_dump(), status_code=201 if created else 200)
