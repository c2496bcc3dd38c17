"""Admin routes, for clients on this machine only, with the admin token: POST /api/v1/admin/reload loads the bundle
again now; POST /api/v1/admin/knowledge imports a knowledge file for the served dataset (issue 21)."""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import APIRouter, Header, Query, Request

from snapid.config import Settings
from snapid.errors import SnapidError
from snapid.knowledge.table import MAX_FILE_BYTES
from snapid.serve.bodies import read_file
from snapid.serve.deps import DatabaseDep, KnowledgeDep, PredictorDep, ReloaderDep, SettingsDep, loaded_model
from snapid.serve.middleware import is_local_client
from snapid.serve.routes import error_responses
from snapid.serve.schemas import KnowledgeImported, ReloadResponse
from snapid.serve.services.knowledge_import import import_upload

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def check_admin(request: Request, settings: Settings, token: str | None) -> None:
    expected = settings.admin_token
    if not expected:
        raise SnapidError("admin endpoints are disabled; set SNAPID_ADMIN_TOKEN", code="admin_disabled", status=403)
    if not is_local_client(request.scope):  # behind a trusted proxy: the client address it reports
        raise SnapidError("admin endpoints answer clients on this machine only (a request through a proxy "
                          "counts only when SNAPID_FORWARDED_ALLOW_IPS trusts it and it reports a loopback "
                          "client)", code="forbidden", status=403)
    if not hmac.compare_digest((token or "").encode(), expected.encode()):
        raise SnapidError("missing or wrong X-Admin-Token", code="unauthorized", status=401)


@router.post("/reload", response_model=ReloadResponse, responses=error_responses(401, 403, 404, 422, 503))
async def reload(request: Request, settings: SettingsDep, reloader: ReloaderDep,
                 x_admin_token: str | None = Header(None, max_length=512)) -> ReloadResponse:
    """Verify and load the bundle again; if it fails, the old model keeps serving and the error is returned."""
    check_admin(request, settings, x_admin_token)
    if reloader is None:
        raise SnapidError("no bundle path is configured; start with snapid serve BUNDLE", code="no_model", status=503)
    model = await reloader.reload()
    return ReloadResponse(reloaded=True, model=model.info)


KNOWLEDGE_FIELD = "file"
KNOWLEDGE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [KNOWLEDGE_FIELD],
    "properties": {KNOWLEDGE_FIELD: {"type": "string", "format": "binary",
                                     "description": "The knowledge file: CSV, YAML (.yaml, .yml) or JSON (.json) "
                                                    f"by its name's suffix, UTF-8, at most {MAX_FILE_BYTES >> 20} MB "
                                                    "(and SNAPID_MAX_BODY_BYTES); the columns of docs/knowledge.md "
                                                    "for its kind."}}}}}}}


@router.post("/knowledge", response_model=KnowledgeImported, openapi_extra=KNOWLEDGE_BODY,
             responses=error_responses(400, 401, 403, 404, 408, 409, 413, 422, 503))
async def import_knowledge(request: Request, settings: SettingsDep, predictor: PredictorDep, database: DatabaseDep,
                           live: KnowledgeDep,
                           kind: Literal["cards", "rules", "table", "places"] = Query(
                               "cards", description="What the file holds, as `snapid knowledge import --kind` "
                                                    "(rules: as `snapid knowledge rules`)."),
                           table: str | None = Query(None, max_length=64, description="kind=table: the table's name "
                                                     "(e.g. discounts); the import replaces the previous one."),
                           allow_unknown: bool = Query(False, description="cards, rules: skip (and list) entries for "
                                                       "classes the dataset lacks instead of refusing the file."),
                           x_admin_token: str | None = Header(None, max_length=512)) -> KnowledgeImported:
    """Import a knowledge file for the served model's dataset as its next knowledge version, as `snapid knowledge
    import` does: a bad file is refused whole (422 knowledge_error naming the file, line and column) and the old
    version keeps serving; answers carry the new knowledge_version within SNAPID_KNOWLEDGE_POLL_S."""
    check_admin(request, settings, x_admin_token)
    model = loaded_model(predictor)
    name, data = await read_file(request, field=KNOWLEDGE_FIELD, limit=MAX_FILE_BYTES)
    result, serving = await import_upload(name, data, kind=kind, table=table, allow_unknown=allow_unknown,
                                          model=model, engine=database, live=live)
    return KnowledgeImported(dataset=result.dataset, knowledge_version=result.version, kind=kind,
                             table=table.strip().lower() if kind == "table" and table else None, source=result.source,
                             items=result.items, unknown=result.unknown, missing=result.missing, notes=result.notes,
                             serving=serving)
