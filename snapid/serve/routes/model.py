"""GET /api/v1/model and /api/v1/classes: what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from snapid.serve.deps import ModelDep, SettingsDep
from snapid.serve.routes import error_responses
from snapid.serve.schemas import ClassList, ModelInfo

router = APIRouter(prefix="/api/v1", tags=["model"], responses=error_responses(503))


@router.get("/model", response_model=ModelInfo)
def model_info(model: ModelDep, settings: SettingsDep) -> ModelInfo:
    """The served bundle: name, version, sha256, input size, calibration."""
    manifest = model.bundle.manifest
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    return ModelInfo(**model.info, created_at=str(manifest.get("created_at") or "") or None, classes=len(model.labels),
                     input_size=model.spec.size, resize=model.spec.resize, temperature=model.temperature,
                     threshold=model.threshold, max_files=settings.max_files, metrics=metrics,
                     explain=model.explain and model.detector is None)


@router.get("/classes", response_model=ClassList)
def classes(model: ModelDep) -> ClassList:
    """Every class the model knows, in output order."""
    return ClassList(model=model.info, classes=model.labels)
