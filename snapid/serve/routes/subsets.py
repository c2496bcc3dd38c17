"""GET /api/v1/subsets: the served bundle's named candidate subsets (issue 20), for predict?subset=NAME."""

from __future__ import annotations

from fastapi import APIRouter

from snapid.serve.deps import ModelDep
from snapid.serve.routes import error_responses
from snapid.serve.schemas import SubsetList
from snapid.serve.services import subsets

router = APIRouter(prefix="/api/v1", tags=["model"], responses=error_responses(503))


@router.get("/subsets", response_model=SubsetList)
def subset_list(model: ModelDep) -> SubsetList:
    """Every named subset of the served bundle (subsets.json, or its knowledge base), with its class ids."""
    return SubsetList(model=model.info, subsets=[{"name": name, "classes": ids}
                                                 for name, ids in subsets.named(model).items()])
