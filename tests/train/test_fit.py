"""`snapid train` end to end on tiny data: phases, tracking, checkpoints, resume, OOM back-off, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snapid.track import runs as track
from snapid.track.db import get_engine, transaction
from snapid.train.checkpoint import load_checkpoint
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.train.lbfgs import WEIGHT_DECAYS

REPO = Path(__file__).resolve().parents[2]
TINY = dict(model="custom_cnn", pretrained=False, size=32, batch_size=8, probe_epochs=3, probe_views=2,
            probe_solver="adamw", finetune_epochs=2, augment="light", patience=10, seed=0)


def test_train_runs_both_phases_and_tracks_every_epoch(shapes, engine, home):
    summary = train(shapes, TrainConfig(**TINY), workspace=home, engine=engine, name="t1")
    with transaction(engine) as s:
        run = track.get_run(s, name="t1")
        epochs = track.epochs(s, name="t1")
        arts = track.artifacts(s, name="t1")
    assert run["status"] == "completed" and run["seconds"] is not None
    assert [e["phase"] for e in epochs] == ["probe"] * 3 + ["finetune"] * 2
    assert all(e["top1"] is not None and e["lr"] > 0 and e["images_per_s"] > 0 for e in epochs)
    assert summary["val_top1"] >= 0.5 and "test_top1" in summary and summary["parameters"] > 0
    assert arts and arts[0]["kind"] == "checkpoint_best"
    weights, meta, _ = load_checkpoint(Path(run["run_dir"]), "best")
    assert meta["classes"][0]["id"] == "disc" and meta["preprocess"]["size"] == 32
    assert meta["model"]["model"] == "custom_cnn" and weights


def test_probe_only_and_finetune_only(shapes, engine, home):
    train(shapes, TrainConfig(**{**TINY, "finetune_epochs": 0}), workspace=home, engine=engine, name="probe-only")
    train(shapes, TrainConfig(**{**TINY, "probe_epochs": 0}), workspace=home, engine=engine, name="ft-only")
    with transaction(engine) as s:
        assert {e["phase"] for e in track.epochs(s, name="probe-only")} == {"probe"}
        assert {e["phase"] for e in track.epochs(s, name="ft-only")} == {"finetune"}


def test_same_seed_same_weights(shapes, engine, home):
    cfg = TrainConfig(**{**TINY, "probe_epochs": 2, "finetune_epochs": 1})
    train(shapes, cfg, workspace=home, engine=engine, name="a")
    train(shapes, cfg, workspace=home, engine=engine, name="b")
    wa, _, _ = load_checkpoint(home.runs / "a", "last")
    wb, _, _ = load_checkpoint(home.runs / "b", "last")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_out_of_memory_halves_the_batch_and_continues(shapes, engine, home, monkeypatch):
    from snapid.train import phases

    real = phases.train_epoch
    calls = []

    def flaky(*args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(phases, "train_epoch", flaky)
    notes = []

    class Notes(__import__("snapid.train.progress", fromlist=["Reporter"]).Reporter):
        def note(self, text):
            notes.append(text)

    train(shapes, TrainConfig(**{**TINY, "probe_epochs": 0}), workspace=home, engine=engine, name="oom",
          reporter=Notes())
    assert any("halved to 4" in n for n in notes)
    _, _, state = load_checkpoint(home.runs / "oom", "last", with_state=True)
    assert state["batch_size"] == 4


def test_ctrl_c_marks_the_run_stopped_and_resume_finishes_it(shapes, engine, home, monkeypatch):
    from snapid.train import phases

    real = phases.train_epoch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(phases, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(shapes, TrainConfig(**TINY), workspace=home, engine=engine, name="int")
    with transaction(engine) as s:
        run = track.get_run(s, name="int")
    assert run["status"] == "stopped" and "--resume int" in run["error"]
    monkeypatch.setattr(phases, "train_epoch", real)
    train("", TrainConfig(**TINY), workspace=home, engine=engine, resume="int")
    with transaction(engine) as s:
        assert track.get_run(s, name="int")["status"] == "completed"
        assert len(track.epochs(s, name="int")) == 5


KILL_CHILD = """
import sys
from snapid.track.db import get_engine
from snapid.train.config import TrainConfig
from snapid.train.fit import train
from snapid.workspace import Workspace
ws = Workspace.at(sys.argv[1])
cfg = TrainConfig(**{tiny})
train("shapes", cfg, workspace=ws, engine=get_engine(f"sqlite:///{{ws.database}}"), name=sys.argv[2],
      resume=sys.argv[2] if len(sys.argv) > 3 else None)
"""


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_same_weights(shapes, engine, home):  # BAD_INPUTS F3
    tiny = {**TINY, "probe_epochs": 3, "finetune_epochs": 4}
    script = KILL_CHILD.format(tiny=repr(tiny))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(home.home), "whole"], check=True, env=env, cwd=REPO, timeout=300)
    child = subprocess.Popen([sys.executable, "-c", script, str(home.home), "killed"], env=env, cwd=REPO)
    deadline = time.time() + 240
    while time.time() < deadline:
        with transaction(engine) as s:
            try:
                if len(track.epochs(s, name="killed")) >= 4:  # inside the fine-tune phase
                    break
            except Exception:
                pass
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with transaction(engine) as s:
        assert track.get_run(s, name="killed")["status"] == "running"
    subprocess.run([sys.executable, "-c", script, str(home.home), "killed", "resume"], check=True, env=env, cwd=REPO,
                   timeout=300)
    with transaction(engine) as s:
        assert track.get_run(s, name="killed")["status"] == "completed"
    whole, _, _ = load_checkpoint(home.runs / "whole", "last")
    resumed, _, _ = load_checkpoint(home.runs / "killed", "last")
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.allclose(whole[key], resumed[key], rtol=1e-6, atol=1e-7), key


def test_cli_train_and_runs(shapes, home):
    env = {**os.environ, "SNAPID_HOME": str(home.home), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "snapid", "train", shapes, "--model", "custom_cnn", "--no-pretrained", "--epochs", "1",
           "--probe-epochs", "2", "--batch-size", "8", "--name", "cli", "--json"]
    (home.home / "run.yaml").write_text("size: 32\nprobe_views: 1\naugment: none\n")
    out = subprocess.run(cmd + ["--config", str(home.home / "run.yaml")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert "val_top1" in summary and summary["name"] == "cli" and summary["run_dir"].endswith("cli")
    # every completed run is calibrated on its validation split, so it exports with a real threshold
    assert summary["calibration"]["threshold"] > 0 and summary["calibration"]["temperature"] > 0
    listed = json.loads(subprocess.run([sys.executable, "-m", "snapid", "runs", "list", "--json"], capture_output=True,
                                       text=True, env=env).stdout)
    assert listed[0]["name"] == "cli" and listed[0]["status"] == "completed"
    shown = json.loads(subprocess.run([sys.executable, "-m", "snapid", "runs", "show", "cli", "--json"],
                                      capture_output=True, text=True, env=env).stdout)
    # the default linear-probe solver: one L-BFGS fit per weight decay of its grid, then 1 fine-tune epoch
    assert len(shown["epochs"]) == len(WEIGHT_DECAYS) + 1 and shown["config"]["size"] == 32
    said = subprocess.run([sys.executable, "-m", "snapid", "train", shapes, "--model", "custom_cnn", "--no-pretrained",
                           "--epochs", "0", "--probe-epochs", "1", "--name", "told", "--config",
                           str(home.home / "run.yaml")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert said.returncode == 0, said.stderr
    assert "run told" in said.stderr and "calibrated on the validation split" in said.stderr
    assert "`snapid serve told`" in said.stderr and str(home.home / "runs" / "told") in said.stderr
    (home.home / "bad.yaml").write_text("sise: 32\n")
    bad = subprocess.run(cmd[:-1] + ["--name", "x", "--config", str(home.home / "bad.yaml")], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 1 and "sise" in bad.stderr and "bad.yaml" in bad.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes(shapes, home):
    """DistributedDataParallel with gloo: rank 0 alone tracks and checkpoints."""
    env = {**os.environ, "SNAPID_HOME": str(home.home), "OMP_NUM_THREADS": "1"}
    (home.home / "run.yaml").write_text("size: 32\nprobe_views: 2\naugment: light\nbatch_size: 8\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m",
           "snapid", "train", shapes, "--model", "custom_cnn", "--no-pretrained", "--probe-epochs", "2", "--epochs",
           "2", "--name", "ddp", "--config", str(home.home / "run.yaml")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    engine = get_engine(f"sqlite:///{home.database}")
    with transaction(engine) as s:
        run = track.get_run(s, name="ddp")
        epochs = track.epochs(s, name="ddp")
        assert len(track.list_runs(s)) == 1
    assert run["status"] == "completed"
    assert [e["phase"] for e in epochs] == ["probe"] * len(WEIGHT_DECAYS) + ["finetune", "finetune"]  # L-BFGS probe
    assert load_checkpoint(home.runs / "ddp", "best")[0]


@pytest.mark.slow
def test_two_trainings_share_one_database(shapes, home):
    env = {**os.environ, "SNAPID_HOME": str(home.home), "OMP_NUM_THREADS": "1"}
    (home.home / "run.yaml").write_text("size: 32\nprobe_views: 1\naugment: none\nbatch_size: 8\n")
    procs = [subprocess.Popen([sys.executable, "-m", "snapid", "train", shapes, "--model", "custom_cnn",
                               "--no-pretrained", "--probe-epochs", "4", "--epochs", "2", "--name", f"par{i}",
                               "--config", str(home.home / "run.yaml")],
                              env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    engine = get_engine(f"sqlite:///{home.database}")
    with transaction(engine) as s:
        for i in range(2):
            assert track.get_run(s, name=f"par{i}")["status"] == "completed"
            assert len(track.epochs(s, name=f"par{i}")) == len(WEIGHT_DECAYS) + 2


def test_cli_train_with_seeds_reports_mean_and_spread(shapes, home):
    env = {**os.environ, "SNAPID_HOME": str(home.home), "COLUMNS": "200"}
    (home.home / "run.yaml").write_text("size: 32\nprobe_views: 1\naugment: none\nbatch_size: 8\n")
    out = subprocess.run([sys.executable, "-m", "snapid", "train", shapes, "--model", "custom_cnn", "--no-pretrained",
                          "--epochs", "0", "--seeds", "2", "--name", "sd", "--json", "--config",
                          str(home.home / "run.yaml")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["runs"] == ["sd-s0", "sd-s1"] and result["seeds"] == 2
    assert len(result["top1"]["values"]) == 2 and result["top1"]["std"] >= 0
