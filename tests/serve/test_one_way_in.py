"""The serve layer has one way in (issue 18): `create_app` builds everything the routes use, routes reach it
through snapid.serve.deps only, and the services know nothing of the web framework."""

from __future__ import annotations

import ast
from pathlib import Path

from snapid.config import Settings
from snapid.serve.app import create_app

SERVE = Path(__file__).resolve().parents[2] / "snapid" / "serve"


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_routes_never_read_the_app_state_themselves():
    offenders = [p.name for p in (SERVE / "routes").glob("*.py") if "app.state" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_services_know_nothing_of_the_web_framework():
    offenders = {p.name: sorted(_imported(p) & {"fastapi", "starlette"}) for p in (SERVE / "services").glob("*.py")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_create_app_builds_the_state_and_opens_nothing(tmp_path):
    """Everything is on app.state once create_app returns; the workspace (database, saved photos, the
    hand-off secret) is opened only when a request first needs it."""
    home = tmp_path / "home"
    state = create_app(Settings(home=home, reload_poll_s=0)).state
    for name in ("settings", "metrics", "predictor", "reloader", "db_engine", "prediction_log", "streams",
                 "photo_store", "decode_slots", "identify", "handoff", "draining"):
        assert hasattr(state, name), name
    assert not home.exists()
