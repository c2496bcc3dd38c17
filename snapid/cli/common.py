"""Shared CLI plumbing: settings, the database engine, progress bars and output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from snapid.config import Settings, get_settings
from snapid.workspace import Workspace

console = Console(stderr=True)


# Options with a fixed set of values: --help lists the choices and any other value is refused by listing them.
class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


class ImportFormat(str, Enum):
    auto = "auto"
    folder = "folder"
    csv = "csv"
    json = "json"
    plantnet = "plantnet"
    coco = "coco"
    voc = "voc"
    yolo = "yolo"
    aihub = "aihub"


class Resize(str, Enum):
    crop = "crop"
    letterbox = "letterbox"


DATASET_VERSION = "--dataset-version"  # a dataset version, never snapid's own (`snapid --version`)


def settings() -> Settings:
    return get_settings()


def workspace() -> Workspace:
    return Workspace.at(settings().home)


def engine():
    from snapid.track.db import get_engine

    s = settings()
    Workspace.at(s.home)
    return get_engine(s.resolved_db_url())


@contextmanager
def progress_bar(description: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Yields a callback(done, total) that drives a rich progress bar on stderr."""
    if quiet or not console.is_terminal:
        # not a terminal (CI, pipes): no animation, a line at the end is enough
        yield lambda done, total: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=1, default=str) + "\n")


def train_config(config: Path | None, **overrides):
    """The recipe from a YAML file (if given) with the command's options over it (None: not given)."""
    from snapid.train.config import TrainConfig

    return TrainConfig.load(config, overrides)


def number(value, fmt: str) -> str:
    """A figure for a table: '-' where there is none."""
    return "-" if value is None else format(value, fmt)
