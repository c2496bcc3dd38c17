"""Run tracking: epochs written live, stale runs reaped, two writers at once."""

from __future__ import annotations

import math
import threading

import pytest

from snapid.errors import NotFound, SnapidError
from snapid.track import runs as track
from snapid.track.db import transaction


def _new(engine, name="r1", dataset="pets"):
    with transaction(engine) as s:
        return track.create_run(s, name=name, dataset=dataset, dataset_version=1, model="custom_cnn",
                                config={"seed": 0}, run_dir="/tmp/x", monitor="val_top1")


def test_lifecycle_and_epochs(engine):
    _new(engine)
    with transaction(engine) as s:
        assert track.get_run(s, name="r1")["status"] == "queued"
        track.start_run(s, name="r1", host="h", pid=1)
        track.record_epoch(s, name="r1", epoch=0, phase="probe", metrics={"train_loss": 1.0, "top1": 0.5}, is_best=True,
                           best_value=0.5)
        track.record_epoch(s, name="r1", epoch=0, phase="probe", metrics={"train_loss": 0.9, "top1": 0.6}, is_best=True,
                           best_value=0.6)
        track.record_epoch(s, name="r1", epoch=1, phase="probe", metrics={"train_loss": math.nan, "top1": 0.4},
                           is_best=False, best_value=0.6)
    with transaction(engine) as s:
        epochs = track.epochs(s, name="r1")
        run = track.get_run(s, name="r1")
    assert [e["epoch"] for e in epochs] == [0, 1] and epochs[0]["train_loss"] == 0.9
    assert epochs[1]["train_loss"] is None                  # NaN stored as NULL
    assert run["status"] == "running" and run["best_metric"] == 0.6 and run["best_epoch"] == 0
    with transaction(engine) as s:
        track.finish_run(s, name="r1", status="completed", summary={"test_top1": 0.9})
        assert track.get_run(s, name="r1")["summary"] == {"test_top1": 0.9}


def test_names_are_unique_and_errors_are_clear(engine):
    _new(engine, "pets-custom_cnn")
    with transaction(engine) as s:
        assert track.unique_name(s, "pets-custom_cnn") == "pets-custom_cnn-2"
    with pytest.raises(SnapidError) as err:
        _new(engine, "pets-custom_cnn")
    assert "--resume" in err.value.message
    with pytest.raises(NotFound):
        with transaction(engine) as s:
            track.get_run(s, name="nope")


def test_a_killed_run_is_reaped_not_left_running(engine):
    _new(engine, "dead")
    _new(engine, "alive")
    with transaction(engine) as s:
        track.start_run(s, name="dead", host="me", pid=111)
        track.start_run(s, name="alive", host="me", pid=222)
    with transaction(engine) as s:
        reaped = track.reap_stale_runs(s, host="me", is_alive=lambda pid: pid == 222)
    assert reaped == ["dead"]
    with transaction(engine) as s:
        dead = track.get_run(s, name="dead")
        assert dead["status"] == "failed" and "--resume dead" in dead["error"]
        assert track.get_run(s, name="alive")["status"] == "running"


def test_two_writers_at_once_both_succeed(engine):
    _new(engine, "a")
    _new(engine, "b")
    errors = []

    def write(name):
        try:
            for epoch in range(40):
                with transaction(engine) as s:
                    track.record_epoch(s, name=name, epoch=epoch, phase="probe", metrics={"top1": epoch / 40},
                                       is_best=True, best_value=epoch / 40)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with transaction(engine) as s:
        assert len(track.epochs(s, name="a")) == len(track.epochs(s, name="b")) == 40
