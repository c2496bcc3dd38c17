"""`snapid serve [BUNDLE|RUN]`: the web service (API + dashboard) on uvicorn."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import typer

from snapid.cli import common
from snapid.config import Settings
from snapid.errors import NotFound, SnapidError


def resolve_bundle(target: str | None, settings: Settings) -> Path | None:
    """A bundle folder or .snapid file as given, else a run name: its bundle in the workspace,
    exported first when there is none (export needs torch; serving afterwards does not)."""
    if not target:
        return None
    path = Path(target).expanduser()
    if path.exists():
        return path.resolve()
    if os.sep in target or target.endswith(".snapid"):
        raise NotFound(f"{target}: no such bundle folder or .snapid file")
    workspace = common.workspace()
    existing = workspace.bundles / target
    if (existing / "manifest.json").is_file():
        return existing
    try:
        from snapid.export.export import export_run
    except ImportError as exc:
        raise SnapidError(f"{target!r} is not a bundle, and exporting the run needs snapid[train] ({exc})",
                          code="export_unavailable") from None
    common.console.print(f"exporting run {target!r} to {existing} …")
    return Path(export_run(target, workspace=workspace, engine=common.engine()).path)


def serve(
    target: str = typer.Argument(None, help="Bundle folder, .snapid file or run name; none: dashboard only."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (one model copy each)."),
    reload: bool = typer.Option(True, "--reload/--no-reload", help="Load a new bundle version when its folder changes."),
    public_url: str = typer.Option("", "--public-url", help="Base URL phones use for the QR hand-off, e.g. "
                                   "http://192.168.1.20:8000 (default: the detected LAN address)."),
    keep_days: Optional[float] = typer.Option(None, "--keep-days", min=0,
                                              help="Delete photos kept with consent this many days after upload "
                                                   "(0: keep; default SNAPID_KEEP_DAYS, 30)."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="Print a line per request (off: /metrics counts requests, and a reverse "
                                         "proxy usually logs them; each line costs the event loop time)."),
) -> None:
    """Serve a model bundle: prediction API, dashboard, health and metrics."""
    import uvicorn

    from snapid.serve.protocol import HeaderTimeoutH11Protocol

    settings = common.settings()
    bundle = resolve_bundle(target, settings)
    # Workers are separate processes: they read the bundle and options from the environment.
    if bundle is not None:
        os.environ["SNAPID_BUNDLE"] = str(bundle)
    else:
        os.environ.pop("SNAPID_BUNDLE", None)
    if not reload:
        os.environ["SNAPID_RELOAD_POLL_S"] = "0"
    if keep_days is not None:
        os.environ["SNAPID_KEEP_DAYS"] = str(keep_days)
    if public_url:
        if not public_url.startswith(("http://", "https://")):
            raise SnapidError(f"--public-url {public_url!r} must start with http:// or https://", code="usage", status=422)
        os.environ["SNAPID_PUBLIC_URL"] = public_url
    uvicorn.run(
        "snapid.serve.app:factory", factory=True, host=host, port=port, workers=workers,
        timeout_graceful_shutdown=math.ceil(settings.graceful_timeout_s),
        # above our own queue, so overload is answered by the app's JSON 503 with Retry-After
        limit_concurrency=max(128, settings.queue_size * 4),
        timeout_keep_alive=5,
        http=HeaderTimeoutH11Protocol,  # slow request headers are cut off (slowloris)
        h11_max_incomplete_event_size=64 * 1024,  # request line + headers
        proxy_headers=True, forwarded_allow_ips="127.0.0.1",
        log_level="info", access_log=access_log,
    )
