"""GET /api/v1/model and /api/v1/classes: what is being served."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from snapid.serve.deps import current_model
from snapid.serve.routes import error_responses
from snapid.serve.schemas import ClassList, ModelInfo
from snapid.serve.services.model import LoadedModel

router = APIRouter(prefix="/api/v1", tags=["model"], responses=error_responses(503))


@router.get("/model", response_model=ModelInfo)
def model_info(request: Request, model: LoadedModel = Depends(current_model)) -> ModelInfo:
    """The served bundle: name, version, sha256, input size, calibration."""
    manifest = model.bundle.manifest
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    return ModelInfo(**model.info, created_at=str(manifest.get("created_at") or "") or None, classes=len(model.labels),
                     input_size=model.spec.size, resize=model.spec.resize, temperature=model.temperature,
                     threshold=model.threshold, max_files=request.app.state.settings.max_files, metrics=metrics)


@router.get("/classes", response_model=ClassList)
def classes(model: LoadedModel = Depends(current_model)) -> ClassList:
    """Every class the model knows, in output order."""
    return ClassList(model=model.info, classes=model.labels)
