"""POST /api/v1/admin/reload: load the bundle again now (clients on this machine only, with the admin token)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Header, Request

from snapid.config import Settings
from snapid.errors import SnapidError
from snapid.serve.deps import ReloaderDep, SettingsDep
from snapid.serve.middleware import is_local_client
from snapid.serve.routes import error_responses
from snapid.serve.schemas import ReloadResponse

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
