"""The one way into the app's state: a typed dependency for everything a route needs.

`create_app` builds every object and keeps it on ``app.state``; routes name what they need by type
(``settings: SettingsDep``, ``identify: IdentifyDep`` ...) and never read ``app.state`` themselves.
Only ``EngineDep`` opens something before the route runs (the database: 503 first when it cannot open).
Otherwise the database (``DatabaseDep``), the photo store and the hand-off secret open on first use, when
the route or a service calls for them, so a request that fails validation never waits for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from snapid.config import Settings
from snapid.feedback.storage import PhotoStore
from snapid.serve.services.handoff import Handoff
from snapid.serve.services.identify import Identify
from snapid.serve.services.knowledge import LiveKnowledge
from snapid.serve.services.lazy import Lazy
from snapid.serve.services.metrics import Metrics
from snapid.serve.services.model import LoadedModel
from snapid.serve.services.new_class import NewClasses
from snapid.serve.services.prediction_log import PredictionLog
from snapid.serve.services.predictor import NoModel, Predictor
from snapid.serve.services.reloader import Reloader
from snapid.serve.services.streams import StreamSlots


async def settings(request: Request) -> Settings:
    return request.app.state.settings


async def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def predictor(request: Request) -> Predictor:
    return request.app.state.predictor


async def reloader(request: Request) -> Reloader | None:
    """None when no bundle path is configured."""
    return request.app.state.reloader


def db_engine(request: Request) -> Engine:
    """The workspace database, opened on first use (serving predictions alone never waits for it)."""
    return request.app.state.db_engine()


async def database(request: Request) -> Lazy[Engine]:
    """The workspace database, opened when the route first calls it."""
    return request.app.state.db_engine


async def photo_store(request: Request) -> Lazy[PhotoStore]:
    """The saved photos, opened (with the database) when the route first calls it."""
    return request.app.state.photo_store


async def new_classes(request: Request) -> NewClasses:
    """New classes from reviewed feedback, made on the served bundle folder (one at a time)."""
    return request.app.state.new_classes


async def handoff(request: Request) -> Handoff:
    return request.app.state.handoff


async def live_knowledge(request: Request) -> LiveKnowledge:
    """The watcher that keeps the served dataset's knowledge current (polls the database)."""
    return request.app.state.knowledge


async def prediction_log(request: Request) -> PredictionLog:
    return request.app.state.prediction_log


async def identify(request: Request) -> Identify:
    return request.app.state.identify


async def streams(request: Request) -> StreamSlots:
    return request.app.state.streams


async def draining(request: Request) -> Callable[[], bool]:
    """Asks, whenever called, whether the server is shutting down (SIGTERM: readiness 503, streams end)."""
    state = request.app.state
    return lambda: state.draining


def loaded_model(predictor: Predictor) -> LoadedModel:
    """The model served now, or 503 ``no_model``."""
    model = predictor.model
    if model is None:
        raise NoModel("no model is loaded; serve a bundle (snapid serve BUNDLE) or check the log")
    return model


SettingsDep = Annotated[Settings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
PredictorDep = Annotated[Predictor, Depends(predictor)]
ReloaderDep = Annotated[Reloader | None, Depends(reloader)]
EngineDep = Annotated[Engine, Depends(db_engine)]  # opened before the route runs: 503 first when it cannot open
DatabaseDep = Annotated[Lazy[Engine], Depends(database)]
PhotoStoreDep = Annotated[Lazy[PhotoStore], Depends(photo_store)]
HandoffDep = Annotated[Handoff, Depends(handoff)]
NewClassesDep = Annotated[NewClasses, Depends(new_classes)]
KnowledgeDep = Annotated[LiveKnowledge, Depends(live_knowledge)]
PredictionLogDep = Annotated[PredictionLog, Depends(prediction_log)]
IdentifyDep = Annotated[Identify, Depends(identify)]
StreamsDep = Annotated[StreamSlots, Depends(streams)]
DrainingDep = Annotated[Callable[[], bool], Depends(draining)]


async def current_model(predictor: PredictorDep) -> LoadedModel:
    return loaded_model(predictor)


ModelDep = Annotated[LoadedModel, Depends(current_model)]  # 503 no_model before the route runs
