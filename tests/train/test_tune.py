"""`snapid tune` (Optuna sweeps, pruning, best.yaml) and `snapid compare` (one recipe, a leaderboard), on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
import typer
from typer.testing import CliRunner

from snapid.errors import SnapidError
from snapid.importer import import_dataset
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train import compare as compare_mod
from snapid.train.compare import compare
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.train.tune import PRUNED, load_space, parse_space, run_trial, tune
from tests.helpers import shapes_dataset
from tests.train.test_fit import TINY

FAST = {**TINY, "probe_epochs": 2, "finetune_epochs": 1, "probe_views": 1}


@pytest.fixture
def shapes(tmp_path, engine):
    import_dataset(shapes_dataset(tmp_path / "shapes"), name="shapes", engine=engine)
    return "shapes"


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """Short speed timing, and one CPU thread: on tiny tensors a thread pool only adds synchronisation, and on a
    busy machine (other jobs on every core) waiting for descheduled threads made these tests ~10x slower."""
    monkeypatch.setattr(compare_mod, "SPEED_SECONDS", 0.1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _runs(engine, parent: str) -> list[dict]:
    with transaction(engine) as s:
        return sorted(track.list_runs(s, parent=parent), key=lambda r: r["name"])


# --- tune ------------------------------------------------------------------------------------------
def test_two_trials_are_tracked_and_best_yaml_trains(shapes, engine, home):
    space = {"method": "tpe",
             "params": {"probe_lr": {"low": "1e-3", "high": "3e-2", "log": True}, "dropout": [0.0, 0.3]}}
    result = tune(shapes, TrainConfig(**FAST), space, trials=2, workspace=home, engine=engine, name="sw")
    runs = _runs(engine, "sw")
    assert [r["name"] for r in runs] == ["sw-t1", "sw-t2"]
    assert all(r["kind"] == "tune-trial" and r["status"] == "completed" for r in runs)
    assert [t["status"] for t in result["trials"]] == ["completed", "completed"]
    best = next(t for t in result["trials"] if t["run"] == result["best_trial"])
    pick = min if TrainConfig(**FAST).monitor == "val_loss" else max   # the best is the lowest loss
    assert result["best_value"] == pick(t["value"] for t in result["trials"]) == best["value"]
    path = Path(result["best_config"])
    assert path == home.runs / "sw" / "best.yaml"
    assert json.loads((home.runs / "sw" / "sweep.json").read_text())["sweep"] == "sw"
    cfg = TrainConfig.load(path, {})
    assert cfg.probe_lr == pytest.approx(best["params"]["probe_lr"]) and cfg.dropout == best["params"]["dropout"]
    assert cfg.size == 32 and cfg.model == "custom_cnn"
    summary = train(shapes, cfg, workspace=home, engine=engine, name="from-best")
    assert summary["val_top1"] > 0
    with pytest.raises(SnapidError, match="already used"):  # an explicit name is never silently reused
        tune(shapes, TrainConfig(**FAST), space, trials=1, workspace=home, engine=engine, name="sw")


def test_grid_enumerates_every_point_once(shapes, engine, home):
    space = {"method": "grid", "params": {"augment": ["none", "light"]}, "prune": False}
    result = tune(shapes, TrainConfig(**{**FAST, "finetune_epochs": 0}), space, trials=10, workspace=home,
                  engine=engine, name=None)
    assert result["sweep"] == "shapes-tune" and result["method"] == "grid"
    assert sorted(t["params"]["augment"] for t in result["trials"]) == ["light", "none"]
    assert len(_runs(engine, "shapes-tune")) == 2


def test_grid_ranges_need_a_step_and_expand():
    base = TrainConfig(**FAST)
    space = parse_space({"method": "grid", "params": {"dropout": {"low": 0, "high": 0.4, "step": 0.2},
                                                      "batch_size": [8, 16]}}, base)
    assert space.params["dropout"].grid() == [0.0, 0.2, 0.4] and space.grid_size == 6
    with pytest.raises(SnapidError, match="step"):
        parse_space({"method": "grid", "params": {"dropout": {"low": 0, "high": 0.4}}}, base)


@pytest.mark.parametrize("text, key", [
    ("params:\n  sise: [32, 64]\n", "sise"),
    ("probe_lr: {low: 1e-4, high: 1e-2}\n", "probe_lr"),
    ("params:\n  dropout: {low: 0.0, high: 1.5}\n", "dropout"),
    ("params:\n  augment: [light, extreme]\n", "augment"),
    ("params:\n  augment: {low: 0, high: 1}\n", "augment"),
    ("method: random\nparams:\n  dropout: [0.1]\n", "method"),
])
def test_bad_space_file_names_the_file_and_key(tmp_path, text, key):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SnapidError) as err:
        load_space(path, TrainConfig(**FAST))
    assert err.value.code == "bad_config" and str(path) in err.value.message and key in err.value.message


def test_default_space_and_yaml_numbers(tmp_path):
    base = TrainConfig(**FAST)
    params = load_space(None, base)["params"]
    assert set(params) == {"probe_lr", "weight_decay", "dropout", "label_smoothing", "augment"}
    assert "lr" in load_space(None, TrainConfig(**{**FAST, "probe_epochs": 0}))["params"]
    path = tmp_path / "space.yaml"
    path.write_text("method: tpe\nparams:\n  probe_lr: {low: 1e-4, high: 1e-2, log: true}\n  "
                    "batch_size: [16, 32, 64]\n")
    space = parse_space(load_space(path, base), base)  # PyYAML reads 1e-4 as a string: it must still work
    assert space.params["probe_lr"].low == pytest.approx(1e-4) and space.params["batch_size"].choices == (16, 32, 64)


class FakeTrial:
    def __init__(self):
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return True


def test_pruned_trial_run_ends_stopped_with_the_reason(shapes, engine, home):
    trial = FakeTrial()
    out = run_trial(shapes, TrainConfig(**FAST), trial, run_name="p-t1", sweep="p", workspace=home, engine=engine)
    assert out["status"] == "pruned" and trial.reports[0][0] == 0
    with transaction(engine) as s:
        run = track.get_run(s, name="p-t1")
        epochs = track.epochs(s, name="p-t1")
    assert run["status"] == "stopped" and PRUNED in run["error"] and len(epochs) == 1


def test_median_rule_prunes_a_trial_below_earlier_ones(shapes, engine, home):
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    # an earlier trial that was perfect at every epoch: any real trial is below the median
    study.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values={e: 1.0 for e in range(5)}))
    out = run_trial(shapes, TrainConfig(**{**FAST, "probe_lr": 1e-7, "monitor": "val_top1"}), study.ask(),
                    run_name="m-t2", sweep="m", workspace=home, engine=engine)
    assert out["status"] == "pruned" and "epoch 0" in out["error"]
    with transaction(engine) as s:
        assert track.get_run(s, name="m-t2")["status"] == "stopped"


def test_sweep_prunes_the_worse_trial_and_keeps_the_better(shapes, engine, home):
    space = {"method": "grid", "params": {"probe_lr": [0.03, 1e-7]}, "prune": {"startup_trials": 1, "warmup_epochs": 0}}
    result = tune(shapes, TrainConfig(**{**FAST, "probe_epochs": 3}), space, trials=None, workspace=home, engine=engine,
                  name="pr", seed=1)
    assert [t["params"]["probe_lr"] for t in result["trials"]] == [0.03, 1e-7]  # seed 1: the grid's good point first
    assert [t["status"] for t in result["trials"]] == ["completed", "pruned"] and result["best_trial"] == "pr-t1"
    with transaction(engine) as s:
        pruned = track.get_run(s, name="pr-t2")
    assert pruned["status"] == "stopped" and PRUNED in pruned["error"]


def test_failing_trials_do_not_stop_the_sweep_and_all_failing_is_an_error(shapes, engine, home, tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPID_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    base = TrainConfig(**{**FAST, "model": "resnet18", "pretrained": True})  # no weights offline: every trial fails
    with pytest.raises(SnapidError) as err:
        tune(shapes, base, {"params": {"dropout": [0.1, 0.2]}}, trials=2, workspace=home, engine=engine, name="f")
    assert err.value.code == "tune_failed" and "resnet18" in err.value.message
    assert [r["status"] for r in _runs(engine, "f")] == ["failed", "failed"]
    assert len(json.loads((home.runs / "f" / "sweep.json").read_text())["trials"]) == 2


# --- compare ---------------------------------------------------------------------------------------
def test_compare_two_backbones_one_recipe(shapes, engine, home):
    # batch 12: 33 training images leave no 1-image batch, which BatchNorm refuses (mobilenet_v2 is 1×1 at 32 px)
    base = TrainConfig(**{**FAST, "head": "mlp", "head_dims": (32,), "batch_size": 12})
    result = compare(shapes, ["custom_cnn", "mobilenet_v2"], base, workspace=home, engine=engine, name="cmp")
    board = result["leaderboard"]
    assert {r["model"] for r in board} == {"custom_cnn", "mobilenet_v2"} and result["size"] == 32
    assert all(r["status"] == "completed" and r["images_per_s"] > 0 and r["train_seconds"] > 0 for r in board)
    assert board[0]["top1"] >= board[1]["top1"] and board[0]["split"] == "test"
    assert board[0]["parameters"] != board[1]["parameters"]
    runs = _runs(engine, "cmp")
    assert all(r["kind"] == "compare" for r in runs) and len(runs) == 2
    recipes = [{k: v for k, v in r["config"].items() if k != "model"} for r in runs]
    assert recipes[0] == recipes[1] and recipes[0]["size"] == 32 and recipes[0]["head_dims"] == [32]
    assert json.loads(Path(result["path"]).read_text())["comparison"] == "cmp"


def test_compare_forces_the_first_models_size(shapes, engine, home, monkeypatch):
    seen = []

    def fake_train(dataset, config, **kw):
        seen.append((config.model, config.size))
        raise RuntimeError("not training in this test")

    monkeypatch.setattr(compare_mod, "train", fake_train)
    result = compare(shapes, ["custom_cnn", "efficientnet_b2"], TrainConfig(**{**FAST, "size": None}), workspace=home,
                     engine=engine, name=None)
    assert seen == [("custom_cnn", 224), ("efficientnet_b2", 224)]
    assert [r["status"] for r in result["leaderboard"]] == ["failed", "failed"]
    assert "not training" in result["leaderboard"][0]["error"]


def test_a_failing_model_does_not_stop_the_others(shapes, engine, home, tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPID_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    base = TrainConfig(**{**FAST, "pretrained": True})
    result = compare(shapes, ["resnet18", "custom_cnn"], base, workspace=home, engine=engine, name="cmpf")
    first, last = result["leaderboard"]
    assert first["model"] == "custom_cnn" and first["status"] == "completed"
    assert last["model"] == "resnet18" and last["status"] == "failed" and last["error"]
    with transaction(engine) as s:
        failed = track.get_run(s, name="cmpf-resnet18")
    assert failed["status"] == "failed" and failed["error"] == last["error"]


def test_compare_refuses_unknown_models_before_training(shapes, engine, home):
    with pytest.raises(SnapidError, match="resnet5O"):
        compare(shapes, ["custom_cnn", "resnet5O"], TrainConfig(**FAST), workspace=home, engine=engine, name=None)
    assert _runs(engine, "shapes-compare") == []


# --- CLI -------------------------------------------------------------------------------------------
def _cli():
    from snapid.cli.compare import compare as compare_cmd
    from snapid.cli.tune import tune as tune_cmd

    app = typer.Typer()
    app.command("tune")(tune_cmd)
    app.command("compare")(compare_cmd)
    return app


def test_cli_tune(shapes, home, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: custom_cnn\nsize: 32\nprobe_views: 1\naugment: none\nbatch_size: 12\n")
    space = tmp_path / "space.yaml"
    space.write_text("method: grid\nparams:\n  dropout: [0.1]\n")
    common = ["--probe-epochs", "2", "--epochs", "0", "--no-pretrained", "--config", str(cfg)]
    out = CliRunner().invoke(_cli(), ["tune", shapes, "--space", str(space), "--name", "cli-sweep", "--json", *common])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout)["trials"]) == 1 and (home.runs / "cli-sweep" / "best.yaml").exists()
    space.write_text("params:\n  sise: [1]\n")
    out = CliRunner().invoke(_cli(), ["tune", shapes, "--space", str(space), *common])
    assert out.exit_code != 0 and "sise" in str(out.exception) and "space.yaml" in str(out.exception)


def test_cli_compare_prints_the_leaderboard(home, monkeypatch):
    rows = [{"model": "custom_cnn", "run": "c-custom_cnn", "status": "completed", "top1": 0.9, "macro_f1": 0.88,
             "split": "test", "parameters": 397283, "images_per_s": 2100.0, "train_seconds": 2.5, "error": ""},
            {"model": "resnet18", "run": "c-resnet18", "status": "failed", "top1": None, "macro_f1": None,
             "split": "val", "parameters": None, "images_per_s": None, "train_seconds": None,
             "error": "weights unavailable"}]
    seen = {}

    def fake_compare(dataset, models, base, **kw):
        seen.update(models=models, size=base.size)
        return {"comparison": "c", "size": 32, "device": "cpu", "leaderboard": rows, "path": "/x/leaderboard.json"}

    monkeypatch.setattr(compare_mod, "compare", fake_compare)
    out = CliRunner().invoke(_cli(), ["compare", "shapes", "--models", "custom_cnn,resnet18", "--size", "32"])
    assert out.exit_code == 0, out.output
    assert seen == {"models": ["custom_cnn", "resnet18"], "size": 32}
    assert "custom_cnn" in out.output and "0.9000" in out.output and "weights unavailable" in out.output
    rows[0]["status"] = "failed"
    assert CliRunner().invoke(_cli(), ["compare", "shapes", "--models", "custom_cnn,resnet18"]).exit_code != 0


def test_docs_options_table_matches_train_config():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    for name, f in TrainConfig.model_fields.items():
        assert f"| `{name}` |" in doc and f.description.replace("|", "\\|") in doc, name


def test_a_model_without_pretrained_weights_is_trained_from_scratch_in_a_comparison(shapes, home, engine):
    """The model-comparison project's fair table: custom_cnn trains all its layers with its own schedule (a probe of
    random convolutions means nothing), a pretrained backbone keeps the probe; the rows say which recipe each got."""
    from snapid.track import runs as track
    from snapid.track.db import transaction

    base = TrainConfig(**{**FAST, "pretrained": True, "finetune_epochs": 0, "scratch_epochs": 2, "scratch_lr": 2e-3,
                          "size": 32})
    result = compare(shapes, ["custom_cnn", "efficientnet_lite0"], base, workspace=home, engine=engine, name="fair")
    rows = {r["model"]: r for r in result["leaderboard"]}
    assert rows["custom_cnn"]["recipe"].startswith("from scratch (no pretrained weights): all layers, 2 epochs")
    assert rows["efficientnet_lite0"]["recipe"].startswith("pretrained: frozen-feature probe")
    with transaction(engine) as s:
        scratch = [e["phase"] for e in track.epochs(s, name="fair-custom_cnn")]
        probe = [e["phase"] for e in track.epochs(s, name="fair-efficientnet_lite0")]
    assert scratch == ["finetune", "finetune"] and set(probe) == {"probe"}
    assert all(r["status"] == "completed" for r in rows.values())


def test_compare_with_seeds_reports_the_spread(shapes, home, engine):
    base = TrainConfig(**{**FAST, "finetune_epochs": 0})
    result = compare(shapes, ["custom_cnn", "mobilenet_v2"], TrainConfig(**{**base.public(), "scratch_epochs": 1}),
                     workspace=home, engine=engine, name="spread", seeds=2)
    for row in result["leaderboard"]:
        assert row["seeds"] == 2 and len(row["runs"]) == 2 and row["top1_std"] is not None and row["top1_std"] >= 0
        assert row["runs"][0].endswith("-s0") and row["runs"][1].endswith("-s1")
