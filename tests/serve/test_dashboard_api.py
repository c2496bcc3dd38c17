"""The dashboard's JSON API (/api/v1/runs…) and pages (/runs…), on the real app and a real SQLite workspace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from snapid.config import Settings
from snapid.serve.app import create_app
from snapid.track import queries
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.track.tables import RunRow

HOSTILE = "<script>window.__pwned=1</script>"
HOSTILE_IMG = "<img src=x onerror=window.__pwned=1>"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def seed_run(engine, name: str, *, dataset: str = "flowers", model: str = "mobilenet_v2", status: str = "completed",
             kind: str = "train", created: datetime = T0, epochs: int = 3, best: float | None = None,
             run_dir: str = "", config: dict | None = None) -> int:
    """A run row with `epochs` epochs, in the given status, created at `created`; returns its id."""
    with transaction(engine) as s:
        track.create_run(s, name=name, dataset=dataset, dataset_version=1, model=model, config=config or {"lr": 0.01},
                         run_dir=run_dir, monitor="val_top1", kind=kind)
        if status != "queued":
            track.start_run(s, name=name, host="test-host", pid=1)
        for epoch in range(epochs):
            add_epoch(s, name, epoch, is_best=best is not None and epoch == epochs - 1, best=best)
        if status not in ("queued", "running"):
            track.finish_run(s, name=name, status=status, summary={"val_top1": best, "nested": {"x": 1}})
        row = s.query(RunRow).filter_by(name=name).one()
        row.created_at = created
        row.started_at = created + timedelta(seconds=1) if status != "queued" else None
        return row.id


def add_epoch(session, name: str, epoch: int, *, is_best: bool = False, best: float | None = None) -> None:
    metrics = {"train_loss": 2.0 / (epoch + 1), "val_loss": 2.2 / (epoch + 1), "top1": 0.3 + 0.05 * epoch,
               "top5": 0.8, "macro_f1": 0.25 + 0.05 * epoch, "lr": 1e-3 * 0.9 ** epoch, "seconds": 1.5}
    track.record_epoch(session, name=name, epoch=epoch, phase="probe", metrics=metrics, is_best=is_best,
                       best_value=best)


def eval_result(labels: list[str], *, thumbnail: str = "data:image/png;base64,iVBORw0KGgo=") -> dict:
    """A small eval-<split>.json in the shared schema (what `snapid eval` writes)."""
    n = len(labels)
    per_class = [{"index": i, "id": f"c{i}", "name": label, "precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 5,
                  "train_count": 20 + i, "top1": 0.8} for i, label in enumerate(labels)]
    counts = [[5 if i == j else (1 if j == (i + 1) % n else 0) for j in range(n)] for i in range(n)]
    bins = [{"lo": i / 5, "hi": (i + 1) / 5, "confidence": i / 5 + 0.1, "accuracy": i / 5 + 0.05, "count": 3}
            for i in range(5)]
    return {"run": "r", "split": "test", "tta": False, "n": 5 * n, "created_at": T0.isoformat(), "top1": 0.8,
            "top5": 1.0, "macro_top1": 0.8, "macro_top5": 1.0, "macro_f1": 0.85, "balanced_accuracy": 0.8, "ece": 0.03,
            "ece_uncalibrated": 0.09, "nll": 0.4, "temperature": 1.3, "threshold": 0.2, "latency_ms": 3.2,
            "parameters": 1234,
            "per_class": per_class, "confusion": {"labels": [c["id"] for c in per_class], "counts": counts,
                                                 "normalized": [[v / sum(r) for v in r] for r in counts]},
            "reliability": bins, "reliability_uncalibrated": bins,
            "long_tail": [{"bucket": "all", "classes": n, "train_min": 20, "train_max": 20 + n, "top1": 0.8}],
            "coverage": [{"threshold": t / 10, "coverage": 1 - t / 20, "accuracy": 0.8 + t / 50} for t in range(5)],
            "mistakes": [{"position": 3, "true": "c0", "true_name": labels[0], "pred": "c1", "pred_name": labels[-1],
                          "score": 0.7, "loss": 2.1, "thumbnail": thumbnail}]}


def write_eval(engine, name: str, run_dir: Path, labels: list[str], **kw) -> dict:
    result = eval_result(labels, **kw)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "eval-test.json").write_text(json.dumps(result))
    with transaction(engine) as s:
        track.record_artifact(s, name=name, kind="eval_test", path=str(run_dir / "eval-test.json"),
                              meta={"top1": 0.8, "macro_f1": 0.85, "ece": 0.03, "n": 5 * len(labels)})
        track.record_artifact(s, name=name, kind="calibration", path="", meta={
            "temperature": 1.3, "threshold": 0.2, "target_accuracy": 0.95, "target_coverage": None,
            "val_ece_before": 0.09, "val_ece_after": 0.03})
    return result


@pytest.fixture
def client(home):
    with TestClient(create_app(Settings(home=home.home)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def runs(engine):
    """Five runs over two datasets, two models, every status, a day apart."""
    specs = [("r-old", "flowers", "mobilenet_v2", "completed", 0.70), ("r-fail", "flowers", "resnet18", "failed", None),
             ("r-run", "pills", "mobilenet_v2", "running", 0.40), ("r-best", "pills", "resnet18", "completed", 0.95),
             ("r-queue", "flowers", "mobilenet_v2", "queued", None)]
    return {name: seed_run(engine, name, dataset=d, model=m, status=st, best=b, created=T0 + timedelta(days=i),
                           epochs=0 if st == "queued" else 3)
            for i, (name, d, m, st, b) in enumerate(specs)}


def names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_list_is_newest_first_with_totals_progress_and_facets(client, runs):
    body = client.get("/api/v1/runs").json()
    assert [i["name"] for i in body["items"]] == ["r-queue", "r-best", "r-run", "r-fail", "r-old"]
    assert body["total"] == 5 and body["next_offset"] is None
    first = {i["name"]: i for i in body["items"]}
    assert first["r-run"]["epochs"] == 3 and first["r-run"]["last_epoch"] == 2 and first["r-queue"]["epochs"] == 0
    assert first["r-best"]["best_metric"] == pytest.approx(0.95) and first["r-best"]["best_epoch"] == 2
    assert first["r-queue"]["seconds"] is None and first["r-run"]["seconds"] > 0  # running: duration so far
    assert body["facets"]["datasets"] == ["flowers", "pills"]
    assert body["facets"]["models"] == ["mobilenet_v2", "resnet18"]


@pytest.mark.parametrize("query, expected", [
    ("dataset=pills", ["r-best", "r-run"]),
    ("model=resnet18", ["r-best", "r-fail"]),
    ("status=completed", ["r-best", "r-old"]),
    ("dataset=flowers&model=mobilenet_v2", ["r-queue", "r-old"]),
    ("kind=train&status=failed", ["r-fail"]),
    ("dataset=nothing", []),
])
def test_list_filters(client, runs, query, expected):
    assert names(client.get(f"/api/v1/runs?{query}")) == expected


def test_list_date_window_since_inclusive_until_exclusive(client, runs):
    since, until = (T0 + timedelta(days=1)).isoformat(), (T0 + timedelta(days=3)).isoformat()
    assert names(client.get("/api/v1/runs", params={"since": since, "until": until})) == ["r-run", "r-fail"]
    # a naive timestamp is UTC; an offset is converted
    assert names(client.get("/api/v1/runs", params={"since": "2025-03-05T11:00:00"})) == ["r-queue"]
    assert names(client.get("/api/v1/runs", params={"until": "2025-03-01T13:30:00+01:00"})) == ["r-old"]


@pytest.mark.parametrize("sort, order, expected", [
    ("name", "asc", ["r-best", "r-fail", "r-old", "r-queue", "r-run"]),
    ("name", "desc", ["r-run", "r-queue", "r-old", "r-fail", "r-best"]),
    ("best_metric", "desc", ["r-best", "r-old", "r-run", "r-queue", "r-fail"]),  # runs with no metric last
    ("best_metric", "asc", ["r-run", "r-old", "r-best", "r-fail", "r-queue"]),
    ("created_at", "asc", ["r-old", "r-fail", "r-run", "r-best", "r-queue"]),
])
def test_list_sorts_with_nulls_last(client, runs, sort, order, expected):
    assert names(client.get(f"/api/v1/runs?sort={sort}&order={order}")) == expected


def test_sort_by_duration(client, engine, runs):
    with transaction(engine) as s:  # r-old ran 10 minutes, r-best 1 minute, r-fail 5 minutes
        for name, minutes in (("r-old", 10), ("r-best", 1), ("r-fail", 5)):
            row = s.query(RunRow).filter_by(name=name).one()
            row.ended_at = row.started_at + timedelta(minutes=minutes)
    got = names(client.get("/api/v1/runs?sort=duration&order=desc&status=completed"))
    assert got == ["r-old", "r-best"]
    got = names(client.get("/api/v1/runs?sort=duration&order=asc"))
    assert got[:3] == ["r-best", "r-fail", "r-old"] and got[-1] == "r-queue"  # the queued run never started


def test_pages_through_the_list(client, runs):
    first = client.get("/api/v1/runs?limit=2").json()
    second = client.get(f"/api/v1/runs?limit=2&offset={first['next_offset']}").json()
    last = client.get("/api/v1/runs?limit=2&offset=4").json()
    assert [len(p["items"]) for p in (first, second, last)] == [2, 2, 1]
    assert first["next_offset"] == 2 and second["next_offset"] == 4 and last["next_offset"] is None
    seen = [i["name"] for p in (first, second, last) for i in p["items"]]
    assert len(set(seen)) == 5


@pytest.mark.parametrize("query", ["limit=501", "limit=0", "offset=-1", "status=done", "sort=password",
                                   "order=sideways", "since=yesterday", "dataset=" + "x" * 201, "dataset=a%00b",
                                   "since=0001-01-01T00:00:00%2B23:59"])
def test_bad_list_parameters_are_422_json(client, runs, query):
    response = client.get(f"/api/v1/runs?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"


def test_detail_by_name_or_id(client, engine, runs, tmp_path):
    by_name = client.get("/api/v1/runs/r-best").json()
    by_id = client.get(f"/api/v1/runs/{runs['r-best']}").json()
    assert by_name == by_id
    assert by_name["config"] == {"lr": 0.01} and by_name["summary"]["nested"] == {"x": 1}
    assert by_name["evaluations"] == {} and by_name["calibration"] is None and by_name["artifacts"] == []
    assert "run_dir" not in by_name and "pid" not in by_name  # no server paths or process ids


def test_an_all_digit_reference_is_an_id(client, engine, runs):
    seed_run(engine, "2024", epochs=1)
    assert client.get("/api/v1/runs/2024").status_code == 404  # no run has id 2024; the name is reached by id
    assert client.get("/api/v1/runs/99999999999999999999999").status_code == 404  # too long for an id: a name


def test_unknown_run_is_404_json(client, runs):
    for path in ("/api/v1/runs/nope", "/api/v1/runs/nope/epochs", "/api/v1/runs/12345/epochs?after=3"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
        assert path.split("/")[4] in response.json()["message"]  # the message names the reference at fault


def test_epochs_after_n_for_live_polling(client, engine, runs):
    body = client.get("/api/v1/runs/r-run/epochs").json()
    assert [e["epoch"] for e in body["epochs"]] == [0, 1, 2] and body["status"] == "running" and body["more"] is False
    assert client.get("/api/v1/runs/r-run/epochs?after=2").json()["epochs"] == []
    with transaction(engine) as s:
        add_epoch(s, "r-run", 3)
        add_epoch(s, "r-run", 4)
    new = client.get("/api/v1/runs/r-run/epochs?after=2").json()["epochs"]
    assert [e["epoch"] for e in new] == [3, 4]
    assert new[0]["top1"] == pytest.approx(0.45) and new[0]["lr"] == pytest.approx(1e-3 * 0.9 ** 3)
    paged = client.get("/api/v1/runs/r-run/epochs?after=0&limit=2").json()
    assert [e["epoch"] for e in paged["epochs"]] == [1, 2] and paged["more"] is True
    assert client.get("/api/v1/runs/r-run/epochs?after=-2").status_code == 422
    assert client.get("/api/v1/runs/r-run/epochs?limit=5001").status_code == 422


def test_hostile_names_and_labels_come_back_as_raw_strings(client, engine, tmp_path):
    run_dir = tmp_path / "runs" / "hostile"
    run_id = seed_run(engine, HOSTILE, dataset=HOSTILE_IMG, run_dir=str(run_dir))
    write_eval(engine, HOSTILE, run_dir, [HOSTILE, HOSTILE_IMG, "plain"])
    listed = client.get("/api/v1/runs").json()
    assert listed["items"][0]["name"] == HOSTILE and listed["facets"]["datasets"] == [HOSTILE_IMG]
    detail = client.get(f"/api/v1/runs/{run_id}").json()
    assert detail["name"] == HOSTILE
    assert [c["name"] for c in detail["evaluations"]["test"]["per_class"]] == [HOSTILE, HOSTILE_IMG, "plain"]
    assert client.get("/api/v1/runs", params={"dataset": HOSTILE_IMG}).json()["total"] == 1


def test_detail_carries_evaluation_calibration_and_artifact_headlines(client, engine, tmp_path):
    run_dir = tmp_path / "runs" / "evald"
    seed_run(engine, "evald", run_dir=str(run_dir))
    written = write_eval(engine, "evald", run_dir, ["rose", "tulip"])
    detail = client.get("/api/v1/runs/evald").json()
    test = detail["evaluations"]["test"]
    assert test["top1"] == written["top1"] and test["confusion"]["counts"] == written["confusion"]["counts"]
    assert test["mistakes"][0]["thumbnail"].startswith("data:image/png;base64,")
    assert detail["calibration"]["temperature"] == 1.3
    heads = {a["kind"]: a["metrics"] for a in detail["artifacts"]}
    assert heads["eval_test"]["top1"] == 0.8 and "path" not in detail["artifacts"][0]
    assert client.get("/api/v1/runs").json()["items"][0]["test_top1"] == 0.8


def test_unsafe_thumbnails_and_non_finite_numbers_are_neutralised(client, engine, tmp_path):
    run_dir = tmp_path / "runs" / "odd"
    seed_run(engine, "odd", run_dir=str(run_dir))
    write_eval(engine, "odd", run_dir, ["a", "b"], thumbnail="javascript:alert(1)")
    raw = (run_dir / "eval-test.json").read_text().replace('"ece": 0.03', '"ece": NaN')
    (run_dir / "eval-test.json").write_text(raw)
    with transaction(engine) as s:
        track.record_artifact(s, name="odd", kind="checkpoint_best", path="/x",
                              meta={"loss": float("inf"), "big": {"a": 1}})
    response = client.get("/api/v1/runs/odd")
    assert response.status_code == 200, response.text
    test = response.json()["evaluations"]["test"]
    assert test["mistakes"][0]["thumbnail"] is None and test["ece"] is None
    heads = {a["kind"]: a["metrics"] for a in response.json()["artifacts"]}
    assert heads["checkpoint_best"] == {"loss": None}  # scalar headlines only; inf is null


def test_a_broken_eval_file_is_reported_not_a_500(client, engine, tmp_path):
    run_dir = tmp_path / "runs" / "broken"
    seed_run(engine, "broken", run_dir=str(run_dir))
    write_eval(engine, "broken", run_dir, ["a"])
    (run_dir / "eval-test.json").write_text('{"top1": 0.5, ')
    test = client.get("/api/v1/runs/broken").json()["evaluations"]["test"]
    assert "cannot read" in test["error"] and "eval-test.json" in test["error"]


def test_compare_lists_found_and_missing_runs(client, runs):
    body = client.get("/api/v1/compare", params={"names": "r-best, r-old,ghost,r-best"}).json()
    assert [r["name"] for r in body["runs"]] == ["r-best", "r-old"] and body["missing"] == ["ghost"]
    assert all(isinstance(b, dict) for b in body["leaderboards"])
    assert client.get("/api/v1/compare", params={"names": " , "}).json() == {"runs": [], "missing": [],
                                                                              "leaderboards": []}


def test_pages_are_static_shells_with_a_csp(client, runs):
    for path, script in (("/runs", "runs.js"), ("/runs/r-best", "run.js"), ("/runs/compare?names=a", "compare.js")):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert f'src="/static/dashboard/{script}"' in response.text and "r-best" not in response.text
    for asset in ("dashboard.js", "charts.js", "run.js", "evaluation.js", "compare.js", "dashboard.css"):
        response = client.get(f"/static/dashboard/{asset}")
        source = response.text.replace('"http://www.w3.org/2000/svg"', "")  # the SVG namespace is a name, not a fetch
        assert response.status_code == 200 and "http://" not in source and "https://" not in source


def test_the_scripts_never_write_html_from_data():
    """A static check beside the browser test: no innerHTML/outerHTML/insertAdjacentHTML/document.write at all."""
    folder = Path(__file__).resolve().parents[2] / "snapid" / "serve" / "static" / "dashboard"
    for script in folder.glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{script.name} uses {sink}"


def test_openapi_documents_the_runs_api(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/v1/runs", "/api/v1/runs/{ref}", "/api/v1/runs/{ref}/epochs", "/api/v1/compare"):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in ok, path
    params = {p["name"] for p in schema["paths"]["/api/v1/runs"]["get"]["parameters"]}
    assert {"dataset", "model", "status", "kind", "since", "until", "sort", "order", "limit", "offset"} <= params
    assert "/runs" not in schema["paths"]  # the HTML pages are not API


def test_indexes_are_added_to_an_older_database(engine, client):
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_runs_created_at"))
    queries.ensure_indexes.cache_clear()
    assert client.get("/api/v1/runs").status_code == 200
    assert "ix_runs_created_at" in {i["name"] for i in inspect(engine).get_indexes("runs")}


def test_a_real_training_run_shows_its_epochs_and_summary(client, make_run):
    make_run("tiny")
    detail = client.get("/api/v1/runs/tiny").json()
    assert detail["status"] == "completed" and detail["epochs"] == 3 and detail["config"]["model"] == "custom_cnn"
    epochs = client.get("/api/v1/runs/tiny/epochs?after=0").json()["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["top1"] is not None for e in epochs)


DASHBOARD_OPERATIONS = ["/api/v1/runs", "/api/v1/runs/{ref}", "/api/v1/runs/{ref}/epochs", "/api/v1/compare"]


@pytest.mark.parametrize("path", DASHBOARD_OPERATIONS)
def test_api_fuzz_no_5xx_and_responses_match_the_schema(home, engine, path):
    """BAD_INPUTS.md "API fuzz": schemathesis cases from /openapi.json, valid and invalid, on a seeded workspace."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings

    seed_run(engine, "fuzz", status="running", epochs=3, best=0.5)
    seed_run(engine, "1", epochs=1)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(home=home.home)))

    @given(case=schema[path]["GET"].as_strategy())
    @hypothesis_settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call_and_validate()
        assert response.status_code < 500

    check()
