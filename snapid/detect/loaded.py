"""A finished detector run, loaded back from its best checkpoint."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from snapid.errors import NotFound, SnapidError
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.train.checkpoint import load_checkpoint


def detector_run(name: str, *, engine: Engine) -> dict:
    """The runs row of a detector run; any other kind is refused with a clear message."""
    with transaction(engine) as s:
        run = track.get_run(s, name=name)
    if run["kind"] != "detect":
        raise SnapidError(f"run {name!r} is a {run['kind']} run, not a detector (train one with `snapid detect train`)",
                          code="bad_run", status=422)
    return run


def load_detector(name: str, *, engine: Engine, tag: str = "best"):
    """(model in eval mode on the CPU, checkpoint meta) of a detector run."""
    from snapid.detect.models import detector_from_config

    run = detector_run(name, engine=engine)
    folder = Path(run["run_dir"])
    if not (folder / f"{tag}.json").exists():
        raise NotFound(f"detector run {name!r} has no {tag} checkpoint yet (status {run['status']}); "
                       f"continue it with `snapid detect train --resume {name}`")
    weights, meta, _ = load_checkpoint(folder, tag)
    model = detector_from_config(meta["detector"])
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise SnapidError(f"{folder / meta['weights_file']}: weights do not fit {meta['detector']['arch']} "
                          f"({str(exc).splitlines()[0]})", code="bad_checkpoint", status=422) from None
    return model.eval(), meta
