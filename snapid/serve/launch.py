"""Start the web service: the one function behind `snapid serve`, `snapid demo` (and any later caller).

Plain typed parameters with real defaults, so a caller from Python gets exactly what the command line
gets. Worker processes are started by uvicorn from an import string, so the bundle and the options they
need travel in the environment (SNAPID_*), which `Settings()` reads in each worker.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from snapid.config import Settings
from snapid.errors import UsageError


def serve_forever(bundle: Path | None, *, settings: Settings, host: str = "127.0.0.1", port: int = 8000,
                  workers: int = 1, reload: bool = True, public_url: str = "", keep_days: float | None = None,
                  access_log: bool = False, forwarded_allow_ips: str = "") -> None:
    """Serve BUNDLE (None: the dashboard only) on HOST:PORT until SIGTERM or Ctrl-C. ``forwarded_allow_ips``:
    the reverse proxies whose X-Forwarded-For / -Proto are believed ("": SNAPID_FORWARDED_ALLOW_IPS, by
    default none)."""
    _check_plain(host=host, port=port, workers=workers, reload=reload, public_url=public_url,
                 keep_days=keep_days, access_log=access_log, forwarded_allow_ips=forwarded_allow_ips)
    settings.check_secrets()  # before uvicorn: with --workers N, a worker that refuses them would be restarted for ever
    import uvicorn

    from snapid.serve.middleware import trusted_proxies
    from snapid.serve.protocol import HeaderTimeoutH11Protocol
    from snapid.serve.services.metrics import serving_metrics_dir

    trusted_proxies(forwarded_allow_ips or settings.forwarded_allow_ips)  # refused here, named, before anything starts
    os.environ.update(_worker_environment(bundle, reload=reload, public_url=public_url, keep_days=keep_days,
                                          host=host, forwarded_allow_ips=forwarded_allow_ips))
    if bundle is None:
        os.environ.pop("SNAPID_BUNDLE", None)
    # with --workers N, one /metrics scrape reports every worker: they share a private folder made here
    with _clean_exit_on_sigterm(), serving_metrics_dir(workers):
        uvicorn.run(
            "snapid.serve.app:factory", factory=True, host=host, port=port, workers=workers,
            timeout_graceful_shutdown=math.ceil(settings.graceful_timeout_s),
            # above our own queue and stream caps, so overload is answered by the app's JSON 503/429 with
            # Retry-After, and health checks and predictions keep connections while streams are open
            limit_concurrency=connection_limit(queue_size=settings.queue_size, max_streams=settings.max_streams),
            timeout_keep_alive=5,
            http=HeaderTimeoutH11Protocol,  # slow request headers are cut off (slowloris)
            h11_max_incomplete_event_size=64 * 1024,  # request line + headers
            proxy_headers=False,  # the app believes X-Forwarded-* from SNAPID_FORWARDED_ALLOW_IPS only
            log_level="info", access_log=access_log,
        )


def connection_limit(*, queue_size: int, max_streams: int) -> int:
    """uvicorn's limit_concurrency: admitted predictions and open event streams together take at most half
    of it; the other half stays for health checks, feedback and the page."""
    return max(128, queue_size * 4, 2 * (queue_size + max_streams))


@contextmanager
def _clean_exit_on_sigterm():
    """uvicorn shuts down gracefully on SIGTERM, then raises the signal again for whoever embeds it; here
    nothing is left to stop, so that second SIGTERM is ignored and the command exits with 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_environment(bundle: Path | None, *, reload: bool, public_url: str, keep_days: float | None,
                        host: str = "127.0.0.1", forwarded_allow_ips: str = "") -> dict[str, str]:
    """The SNAPID_* variables that carry these options to every worker process."""
    env: dict[str, str] = {"SNAPID_BIND_HOST": host}  # a Host name the server answers to
    if forwarded_allow_ips:
        env["SNAPID_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips
    if bundle is not None:
        env["SNAPID_BUNDLE"] = str(bundle)
    if not reload:
        env["SNAPID_RELOAD_POLL_S"] = "0"
    if keep_days is not None:
        if keep_days < 0:
            raise UsageError(f"keep_days {keep_days} must be 0 (keep) or more")
        env["SNAPID_KEEP_DAYS"] = repr(float(keep_days))
    if public_url:
        if not public_url.startswith(("http://", "https://")):
            raise UsageError(f"--public-url {public_url!r} must start with http:// or https://")
        env["SNAPID_PUBLIC_URL"] = public_url
    return env


def _check_plain(**values) -> None:
    """Refuse a command-line placeholder (a Typer/Click OptionInfo left as a default when a command function
    is called from Python): it would otherwise be written into the environment as its repr."""
    for name, value in values.items():
        if type(value).__module__.split(".")[0] in ("typer", "click"):
            raise TypeError(f"{name}={value!r}: pass a plain value (a command-line option object reached the library)")
