"""`snapid serve [BUNDLE|RUN]`: the web service (API + dashboard) on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from snapid.cli import common
from snapid.errors import NotFound, SnapidError
from snapid.serve.launch import serve_forever
from snapid.workspace import Workspace


def serve(
    target: str = typer.Argument(None, help="Bundle folder, .snapid file or run name; none: dashboard only."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (one model copy each)."),
    reload: bool = typer.Option(True, "--reload/--no-reload",
                                help="Load a new bundle version when its folder changes."),
    public_url: str = typer.Option("", "--public-url", help="Base URL phones use for the QR hand-off, e.g. "
                                   "http://192.168.1.20:8000 (default: the detected LAN address)."),
    keep_days: float | None = typer.Option(None, "--keep-days", min=0,
                                              help="Delete photos kept with consent this many days after upload "
                                                   "(0: keep; default SNAPID_KEEP_DAYS, 30)."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="Print a line per request (off: /metrics counts requests, and a reverse "
                                         "proxy usually logs them; each line costs the event loop time)."),
    forwarded_allow_ips: str = typer.Option("", "--forwarded-allow-ips",
                                            help="Reverse proxies whose X-Forwarded-For/-Proto are believed: IPs or "
                                                 "networks, comma-separated, e.g. 127.0.0.1 (default "
                                                 "SNAPID_FORWARDED_ALLOW_IPS, else none: proxy headers ignored)."),
) -> None:
    """Serve a model bundle: prediction API, dashboard, health and metrics."""
    settings = common.settings()
    bundle = resolve_bundle(target, workspace=common.workspace(), db_url=settings.resolved_db_url(),
                            announce=common.console.print)
    serve_forever(bundle, settings=settings, host=host, port=port, workers=workers, reload=reload,
                  public_url=public_url, keep_days=keep_days, access_log=access_log,
                  forwarded_allow_ips=forwarded_allow_ips)


def resolve_bundle(target: str | None, *, workspace: Workspace, db_url: str,
                   announce=lambda message: None) -> Path | None:
    """A bundle folder or .snapid file as given, else a run name: its bundle in the workspace, exported
    first when there is none (export needs torch; serving afterwards does not). None: dashboard only."""
    if not target:
        return None
    path = Path(target).expanduser()
    if path.exists():
        return path.resolve()
    if os.sep in target or target.endswith(".snapid"):
        raise NotFound(f"{target}: no such bundle folder or .snapid file")
    existing = workspace.bundles / target
    if (existing / "manifest.json").is_file():
        return existing
    try:
        from snapid.export.from_run import export_run
        from snapid.track.db import get_engine
    except ImportError as exc:
        raise SnapidError(f"{target!r} is not a bundle, and exporting the run needs snapid[train] ({exc})",
                          code="export_unavailable") from None
    announce(f"exporting run {target!r} to {existing} …")
    return Path(export_run(target, workspace=workspace, engine=get_engine(db_url)).path)


def print_urls(host: str, port: int, public_url: str, *, flag: str = "snapid serve", step: str = "") -> None:
    """The page's URL and where the QR hand-off sends a phone, with a hint when phones cannot reach it."""
    from snapid.serve.services.phone_link import phone_base

    console = common.console
    page_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"{step}serving the identification page: [bold]http://{page_host}:{port}/[/]", highlight=False)
    phone, note = phone_base(public_url=public_url, request_host="127.0.0.1", request_port=port, scheme="http")
    if page_host in ("127.0.0.1", "localhost", "::1") and not public_url:
        note = f"phones cannot reach a server listening on {host}: run `{flag} --host 0.0.0.0` for the QR hand-off"
    indent = " " * len(step)
    console.print(f"{indent}QR hand-off: press \"Use my phone\" on the page; the phone opens {phone}/m/<token>",
                  markup=False)
    if note:
        console.print(f"{indent}note: {note}", markup=False)
