"""Typed dependencies for the routes: settings, the database engine, the predictor."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import Engine

from snapid.config import Settings
from snapid.serve.services.model import LoadedModel
from snapid.serve.services.predictor import NoModel, Predictor


def settings(request: Request) -> Settings:
    return request.app.state.settings


def db_engine(request: Request) -> Engine:
    """The workspace database, opened on first use (serving predictions alone never waits for it)."""
    return request.app.state.db_engine()


def predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def current_model(request: Request) -> LoadedModel:
    model = request.app.state.predictor.model
    if model is None:
        raise NoModel("no model is loaded; serve a bundle (snapid serve BUNDLE) or check the log")
    return model
