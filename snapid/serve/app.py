"""The FastAPI app: `create_app(settings, bundle=)`; `factory()` for `uvicorn --factory` workers.

`create_app` builds everything the routes use and keeps it on ``app.state`` (routes reach it through
snapid.serve.deps only); the lifespan starts and stops what runs in the background. The bundle is
loaded once, in the lifespan; the database, the photo store and the hand-off secret are opened on
first use. Nothing on this import path imports torch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from snapid import images
from snapid.config import Settings
from snapid.errors import SnapidError
from snapid.feedback.storage import PhotoStore
from snapid.serve.bodies import BodyLimitMiddleware
from snapid.serve.middleware import (
    AllowedHosts,
    ForwardedClient,
    SecurityHeadersAndMetrics,
    host_names,
    tile_origin,
    trusted_proxies,
)
from snapid.serve.routes import admin, health, predict
from snapid.serve.routes import docs as docs_route
from snapid.serve.routes import feedback as feedback_route
from snapid.serve.routes import handoff as handoff_route
from snapid.serve.routes import metrics as metrics_route
from snapid.serve.routes import model as model_route
from snapid.serve.routes import page as page_route
from snapid.serve.routes import places_map as places_map_route
from snapid.serve.routes import references as references_route
from snapid.serve.routes import review as review_route
from snapid.serve.routes import subsets as subsets_route
from snapid.serve.services import handoff as handoff_service
from snapid.serve.services import photos
from snapid.serve.services.handoff import Handoff
from snapid.serve.services.handoff_tokens import server_secret
from snapid.serve.services.identify import Identify
from snapid.serve.services.knowledge import LiveKnowledge, local_zone
from snapid.serve.services.lazy import Lazy
from snapid.serve.services.memory import fix_mmap_threshold, trim_forever
from snapid.serve.services.metrics import Metrics
from snapid.serve.services.new_class import NewClasses
from snapid.serve.services.prediction_log import PredictionLog
from snapid.serve.services.predictor import Predictor
from snapid.serve.services.redact import install_log_redaction
from snapid.serve.services.reloader import Reloader
from snapid.serve.services.streams import StreamSlots
from snapid.serve.services.unsure import UnsureReview
from snapid.workspace import Workspace

log = logging.getLogger("snapid.serve")
STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None, *, bundle: Path | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.check_secrets()  # a token or key too short to resist guessing: refused here, naming its setting
    bundle = Path(bundle) if bundle is not None else settings.bundle
    app = FastAPI(title="snapid", version=_version(), lifespan=_lifespan,
                  description="Identify objects in photos with a model trained by snapid.",
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)  # /docs: routes/docs.py
    _build_state(app, settings, bundle)
    for router in (predict.router, model_route.router, health.router, metrics_route.router, admin.router,
                   feedback_route.router, review_route.router, handoff_route.router, page_route.router,
                   docs_route.router, references_route.router, subsets_route.router):
        app.include_router(router)
    app.include_router(places_map_route.router)
    _include_dashboard(app)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, deadline_s=settings.body_deadline_s)
    trusted_proxies(settings.forwarded_allow_ips)  # a value that is no address fails here, naming it
    if settings.forwarded_allow_ips:  # else X-Forwarded-* are ignored: the client is the connection's peer
        app.add_middleware(ForwardedClient, trusted=settings.forwarded_allow_ips)
    app.add_middleware(AllowedHosts, names=host_names(allowed=settings.allowed_hosts, bind_host=settings.bind_host,
                                                      public_url=settings.public_url))
    tiles = tile_origin(settings.tile_url)  # the map's tile server: the only other image source the CSP allows
    app.add_middleware(SecurityHeadersAndMetrics, metrics=app.state.metrics,  # outermost: sees every response
                       img_origins=(tiles,) if tiles else ())
    return app


def _build_state(app: FastAPI, settings: Settings, bundle: Path | None) -> None:
    """Everything the routes use (snapid.serve.deps hands it to them), built here and nowhere else."""
    state = app.state
    state.settings, state.metrics, state.bundle_path = settings, Metrics(), bundle
    state.draining = False  # set on SIGTERM
    # requests wait at most serve_db_timeout_s for a lock another connection holds, then get 503
    state.db_engine = Lazy(lambda: _open_engine(settings.resolved_db_url(), lock_timeout_s=settings.serve_db_timeout_s))
    limits = images.DecodeLimits.from_settings(settings, upload=True)
    state.predictor = Predictor(max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms,
                                queue_size=settings.queue_size, decode_threads=settings.decode_threads,
                                metrics=state.metrics, limits=limits)
    state.reloader = Reloader(state.predictor, bundle, threads=settings.inference_threads,
                              poll_s=settings.reload_poll_s) if bundle is not None else None
    state.prediction_log = PredictionLog(state.db_engine)
    state.knowledge = LiveKnowledge(state.predictor, state.db_engine, poll_s=settings.knowledge_poll_s,
                                    tz=local_zone(settings.timezone), per_category=settings.places_per_category,
                                    max_km=settings.places_max_km)  # cards, rules, tables, places: kept current
    state.streams = StreamSlots(per_session=settings.streams_per_session, per_client=settings.streams_per_client,
                                total=settings.max_streams)
    state.photo_store = Lazy(lambda: PhotoStore(Workspace.at(settings.home).uploads, state.db_engine(),
                                                keep_days=settings.keep_days, quota_bytes=settings.photo_quota_bytes,
                                                limits=limits))
    state.new_classes = NewClasses(bundle=bundle, reloader=state.reloader, watching=settings.reload_poll_s > 0,
                                   engine=state.db_engine, photo_store=state.photo_store)
    # full-size decodes outside the predictor (kept photos, hand-off thumbnails) take one of these
    state.decode_slots = asyncio.Semaphore(max(1, settings.decode_threads))
    state.identify = Identify(state.predictor, state.prediction_log, photo_store=state.photo_store,
                              decode_slots=state.decode_slots,
                              unsure=UnsureReview(state.db_engine, per_day=settings.review_unsure_per_day,
                                                  margin=settings.review_unsure_margin))
    state.handoff = Handoff(state.db_engine,
                            secret=lambda: server_secret(settings.session_secret, Workspace.at(settings.home).home),
                            ttl_s=settings.session_ttl_s, max_uploads=settings.session_max_uploads,
                            per_minute=settings.sessions_per_minute)
    gauges = state.metrics.gauges
    # predictions the log could not record (queue full, database down): answers never wait for it
    gauges["snapid_prediction_log_dropped"] = lambda: state.prediction_log.dropped
    # rows a locked database refused for a while, kept and written later
    gauges["snapid_prediction_log_retried"] = lambda: state.prediction_log.retried
    gauges["snapid_event_streams_open"] = lambda: state.streams.open


def factory() -> FastAPI:
    """For `uvicorn --factory snapid.serve.app:factory` (and --workers): settings and SNAPID_BUNDLE from the
    environment."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    return create_app(Settings())


def _version() -> str:
    from snapid import __version__
    return __version__


def _open_engine(url: str, *, lock_timeout_s: float):
    from snapid.track.db import get_engine  # opened on first use: startup does not wait for the database
    return get_engine(url, lock_timeout_s=lock_timeout_s)


def _include_dashboard(app: FastAPI) -> None:
    """The runs dashboard (another module), when present: it may use SQLAlchemy, never torch."""
    try:
        from snapid.serve.routes import runs
    except ModuleNotFoundError as exc:
        if exc.name != "snapid.serve.routes.runs":
            raise
        return
    app.include_router(runs.router)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state = app.state
    fix_mmap_threshold()  # before the model is loaded: a hot swap must not raise glibc's threshold (memory.py)
    await state.predictor.start()
    state.prediction_log.start()
    watcher = None
    if state.reloader is not None:
        await state.reloader.load_initial()
        watcher = asyncio.create_task(state.reloader.watch(), name="snapid-bundle-watch")
    trimmer = asyncio.create_task(trim_forever(), name="snapid-malloc-trim")
    knowledge_watch = asyncio.create_task(state.knowledge.watch(), name="snapid-knowledge-watch")
    restore = _drain_on_sigterm(app)
    settings = state.settings
    photo_sweep = asyncio.create_task(photos.sweep_forever(
        state.photo_store, state.db_engine, interval_s=settings.sweep_interval_s,
        prediction_keep_days=settings.prediction_keep_days), name="snapid-photo-sweep")
    install_log_redaction()  # the access log never shows a hand-off token or key
    session_sweep = asyncio.create_task(handoff_service.sweep_forever(state.handoff), name="snapid-session-sweep")
    try:
        yield
    finally:
        for task in (session_sweep, photo_sweep, knowledge_watch):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        restore()
        for task in (watcher, trimmer):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await state.predictor.stop()
        state.prediction_log.stop()


def _drain_on_sigterm(app: FastAPI):
    """On SIGTERM, readiness turns 503 at once; the server's own shutdown (stop listening, let in-flight
    requests finish) starts ``drain_s`` later, so a load balancer stops sending first."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return lambda: None
    if not callable(previous):  # no server handler to hand over to (tests, embedded use)
        return lambda: None
    loop = asyncio.get_running_loop()
    delay = app.state.settings.drain_s

    def on_sigterm(sig, frame):
        app.state.draining = True
        log.info("SIGTERM: readiness is 503; shutting down in %.1f s", delay)
        loop.call_soon_threadsafe(loop.call_later, delay, previous, sig, frame)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        return lambda: None

    def restore():
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)
    return restore


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SnapidError)
    async def snapid_error(request: Request, exc: SnapidError):
        retry = getattr(exc, "retry_after", None) or (1 if exc.status == 503 else None)
        if exc.status >= 500 and exc.code not in ("overloaded",):
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return _error(exc.status, exc.code, exc.message, {"Retry-After": str(retry)} if retry else None)

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError):
        from snapid.track.db import is_busy

        if is_busy(exc):  # another writer (an import, a backup, another worker) holds the lock: try again soon
            log.warning("%s %s: the database is locked by another writer", request.method, request.url.path)
            return _error(503, "db_busy", "the database is busy (locked by another writer); try again shortly",
                          {"Retry-After": "1"})
        log.error("%s %s: database error", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "unexpected server error; it has been logged")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                             for e in exc.errors()[:5])
        return _error(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path!r}; see /docs for the API"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug: logged with its traceback, answered in JSON
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "unexpected server error; it has been logged")
