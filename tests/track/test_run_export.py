"""`snapid runs export` (issue 22): a real tiny run, evaluated and exported as a bundle, written as TensorBoard
event files and read back with TensorBoard's own reader, and logged to a local MLflow file store and read back
with MLflow's client; exporting again replaces the earlier export instead of duplicating it."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from snapid.run_export import EPOCH_SCALARS, RunExportError, RunRecord, _folders, flat_config, to_mlflow, to_tensorboard
from snapid.track import runs as track
from snapid.track.db import transaction

NAME = "shapes-cnn"


@pytest.fixture
def run(make_run, home, engine) -> str:
    """A tiny run on the shapes, evaluated on its test split, with an exported bundle."""
    from snapid.evaluate.evaluation import evaluate_run
    from snapid.export.from_run import export_run

    make_run(NAME)
    evaluate_run(NAME, workspace=home, engine=engine, split="test")
    export_run(NAME, workspace=home, engine=engine)
    return NAME


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    reader.Reload()
    return reader


def _recorded(engine, name: str) -> tuple[dict, list[dict], dict]:
    with transaction(engine) as s:
        return track.get_run(s, name=name), track.epochs(s, name=name), track.artifacts(s, name=name)


def test_tensorboard_event_files_read_back_with_tensorboards_reader(run, engine, tmp_path):
    info, epochs, artifacts = _recorded(engine, run)
    evaluation = json.loads(Path(next(a["path"] for a in artifacts if a["kind"] == "eval_test")).read_text())
    out = tmp_path / "tb"
    [report] = to_tensorboard([run, run], out, engine=engine)          # a name given twice is written once
    folder = out / run
    assert report["folder"] == str(folder) and not report["replaced"] and report["images"] == 1
    reader = _events(folder)
    tags = reader.Tags()

    # every recorded epoch figure, at its epoch
    for column, tag in EPOCH_SCALARS:
        expected = [(e["epoch"], e[column]) for e in epochs if e[column] is not None]
        got = [(event.step, event.value) for event in reader.Scalars(tag)] if expected else []
        assert [step for step, _ in got] == [step for step, _ in expected], tag
        assert all(value == pytest.approx(want, rel=1e-6) for (_, value), (_, want) in zip(got, expected, strict=True))
    assert len(reader.Scalars("val/top1")) == len(epochs) == TINY_EPOCHS
    # the evaluation's headline figures, at the best epoch (the weights that were evaluated)
    [top1] = reader.Scalars("test/top1")
    assert top1.step == info["best_epoch"] and top1.value == pytest.approx(evaluation["top1"])
    assert reader.Scalars("test/macro_f1")[0].value == pytest.approx(evaluation["macro_f1"])

    # the config as text, and the run's summary
    config = reader.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "model: custom_cnn" in config and "size: 32" in config
    summary = reader.Tensors("run/text_summary")[0].tensor_proto.string_val[0].decode()
    assert NAME in summary and "completed" in summary

    # the confusion matrix as an image (a real PNG of the drawn heatmap)
    assert tags["images"] == ["test/confusion"]
    [image] = reader.Images("test/confusion")
    assert image.encoded_image_string.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(image.encoded_image_string)) as picture:
        assert picture.size == (image.width, image.height) and min(picture.size) > 100

    # exporting again replaces snapid's event files: one file, each scalar once
    [again] = to_tensorboard([run], out, engine=engine)
    assert again["replaced"]
    assert len([p for p in folder.iterdir() if "tfevents" in p.name]) == 1
    assert len(_events(folder).Scalars("val/top1")) == TINY_EPOCHS

    # event files snapid did not write are never touched
    foreign = folder / "events.out.tfevents.123.host"
    foreign.write_bytes(b"")
    with pytest.raises(RunExportError, match="did not write"):
        to_tensorboard([run], out, engine=engine)
    assert foreign.exists()


TINY_EPOCHS = 3  # tests/helpers.py TINY_TRAIN: probe_epochs=3, finetune_epochs=0


def test_mlflow_logs_params_metrics_evaluation_and_bundle_to_a_file_store(run, engine, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 asks for this opt-in to use a file store
    uri = (tmp_path / "mlruns").as_uri()
    info, epochs, artifacts = _recorded(engine, run)
    [report] = to_mlflow([run], uri, engine=engine)
    assert report["experiment"] == "shapes" and report["replaced"] == [] and report["bundle"]

    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(report["mlflow_run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == NAME
    assert logged.data.tags["snapid.run"] == NAME and logged.data.tags["snapid.model"] == "custom_cnn"
    params = logged.data.params
    assert params["model"] == "custom_cnn" and params["dataset"] == "shapes"
    assert params["size"] == "32" and params["probe_epochs"] == "3"
    history = client.get_metric_history(logged.info.run_id, "val/top1")
    assert sorted((m.step, m.value) for m in history) == [(e["epoch"], pytest.approx(e["top1"])) for e in epochs]
    assert len(client.get_metric_history(logged.info.run_id, "train/loss")) == TINY_EPOCHS
    evaluation = json.loads(Path(next(a["path"] for a in artifacts if a["kind"] == "eval_test")).read_text())
    assert logged.data.metrics["test/top1"] == pytest.approx(evaluation["top1"])

    files = {f.path for folder in ("", "evaluation", "bundle", "snapid")
             for f in client.list_artifacts(logged.info.run_id, folder or None)}
    assert {"evaluation/eval-test.json", "evaluation/confusion-test.png", "snapid/config.json"} <= files
    bundle = Path(next(a["path"] for a in artifacts if a["kind"] == "bundle"))
    assert {f"bundle/{p.name}" for p in bundle.iterdir() if p.is_file()} <= files
    assert "bundle/manifest.json" in files

    # exporting again replaces the MLflow run (found by its snapid.run tag) instead of adding a second one
    [again] = to_mlflow([run], uri, engine=engine)
    assert again["replaced"] == [report["mlflow_run_id"]] and again["mlflow_run_id"] != report["mlflow_run_id"]
    experiment = client.get_experiment_by_name("shapes")
    active = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in active] == [again["mlflow_run_id"]]

    # another experiment name, on request
    [elsewhere] = to_mlflow([run], uri, engine=engine, experiment="snapid-runs")
    assert elsewhere["experiment"] == "snapid-runs" and elsewhere["replaced"] == []


def test_the_command_line(run, engine, home, tmp_path, monkeypatch):
    from snapid.cli import app

    runner = CliRunner()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out, uri = tmp_path / "tb", (tmp_path / "mlruns").as_uri()
    args = ["runs", "export", run, "--tensorboard", str(out)]
    if "mlflow" in sys.modules or _has("mlflow"):
        args += ["--mlflow", uri]
    done = runner.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    written = json.loads(done.stdout)
    assert written["tensorboard"][0]["run"] == run and (out / run).is_dir()
    if "--mlflow" in args:
        assert written["mlflow"][0]["experiment"] == "shapes"
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "replaced" in again.output and "tensorboard --logdir" in again.output

    nowhere = runner.invoke(app, ["runs", "export", run])
    assert nowhere.exit_code != 0 and "--tensorboard DIR, --mlflow URI" in str(nowhere.exception)
    missing = runner.invoke(app, ["runs", "export", "ghost", "--tensorboard", str(out)])
    assert missing.exit_code != 0 and "no run named 'ghost'" in str(missing.exception)

    monkeypatch.setitem(sys.modules, "mlflow", None)           # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    absent = runner.invoke(app, ["runs", "export", run, "--mlflow", uri])
    assert isinstance(absent.exception, RunExportError) and "pip install 'snapid[mlflow]'" in str(absent.exception)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_a_run_without_epochs_or_evaluation_and_hostile_names(tmp_path):
    folders = _folders(["plain-run_1.2", "../up", "a/b", "종-run"], tmp_path)
    assert folders["plain-run_1.2"] == tmp_path / "plain-run_1.2"
    assert folders["종-run"] == tmp_path / "종-run"
    for name in ("../up", "a/b"):
        assert folders[name].parent == tmp_path and not folders[name].name.startswith(".")
    record = RunRecord(name="e", run={"dataset": "d", "dataset_version": 2, "model": "m", "kind": "ensemble",
                                      "config": {"members": ["a", "b"], "nested": {"x": 1, "y": None}}}, epochs=[])
    assert flat_config(record) == {"dataset": "d", "dataset_version": "2", "model": "m", "kind": "ensemble",
                                   "members": '["a", "b"]', "nested.x": "1", "nested.y": "null"}
    assert record.step == 0
