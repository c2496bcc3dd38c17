"""One consistent command line (issue 16): --json is a flag that prints to standard output everywhere,
options with a fixed set of values list their choices and refuse others, a dataset version is
`--dataset-version`, `snapid --version`, --help in pipeline order, and shell completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from enum import Enum

from typer.testing import CliRunner

from snapid import __version__
from snapid.cli import PANELS, app, command

FIXED_CHOICES = {"--split", "--format", "--resize", "--method", "--mode"}


def walk(group, path: tuple[str, ...] = ()):
    """(command path, command) for every leaf command (Typer's own Click classes: duck-typed)."""
    if hasattr(group, "commands"):
        for name, sub in group.commands.items():
            yield from walk(sub, (*path, name))
    else:
        yield path, group


def options(cmd):
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "option"]


def flat(text: str) -> str:
    """The console's boxes and line wrapping removed."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", text)


def test_json_is_a_flag_everywhere():
    commands = list(walk(command()))
    with_json = [(path, o) for path, cmd in commands for o in options(cmd) if "--json" in o.opts]
    assert len(with_json) >= 20
    not_flags = [" ".join(path) for path, o in with_json if not o.is_flag]
    assert not not_flags, f"--json takes a value in: {not_flags} (print to stdout; write files with --out)"


def test_fixed_value_options_list_their_choices():
    loose, checked = [], 0
    for path, cmd in walk(command()):
        for o in options(cmd):
            if not set(o.opts) & FIXED_CHOICES:
                continue
            checked += 1
            annotation = o.type_descriptor.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, Enum)):
                loose.append(f"{' '.join(path)} {o.opts[0]}")
    assert checked >= 9
    assert not loose, f"free-text options that have a fixed set of values: {loose}"


def test_a_dataset_version_is_named_so_and_only_the_root_has_version():
    for path, cmd in walk(command()):
        names = [name for o in options(cmd) for name in o.opts]
        assert "--version" not in names, f"snapid {' '.join(path)}: --version would read as snapid's own version"


def test_version_and_help_in_pipeline_order():
    version = subprocess.run([sys.executable, "-m", "snapid", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == __version__
    done = subprocess.run([sys.executable, "-m", "snapid", "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0
    shown = [panel for panel in PANELS if re.search(rf"─ {re.escape(panel)} ─", done.stdout)]
    assert shown == list(PANELS)
    positions = [done.stdout.index(f"─ {panel} ─") for panel in PANELS]
    assert positions == sorted(positions)
    assert done.stdout.index("│ up ") < done.stdout.index("│ data ") < done.stdout.index("│ train ") < \
        done.stdout.index("│ eval ") < done.stdout.index("│ export ") < done.stdout.index("│ serve ")


def test_a_value_outside_the_choices_is_refused_with_the_list():
    runner = CliRunner()
    done = runner.invoke(app, ["eval", "x", "--split", "holdout"])
    assert done.exit_code == 2 and "'holdout' is not one of 'train', 'val', 'test'" in flat(done.output)
    done = runner.invoke(app, ["export", "x", "--format", "tflite"])
    assert done.exit_code == 2 and "'onnx', 'torchscript'" in flat(done.output)


def test_shell_completion():
    done = subprocess.run([sys.executable, "-m", "snapid", "--show-completion", "bash"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "_SNAPID_COMPLETE" in done.stdout
    env = {**os.environ, "_SNAPID_COMPLETE": "complete_bash", "COMP_WORDS": "snapid da", "COMP_CWORD": "1"}
    completed = subprocess.run([sys.executable, "-m", "snapid"], capture_output=True, text=True, env=env, timeout=120)
    assert "data" in completed.stdout.split()


def test_data_import_names_the_dataset_after_the_folder(tmp_path):
    from tests.helpers import shapes_dataset

    shapes_dataset(tmp_path / "garden-shapes", per_class=3)
    env = {**os.environ, "SNAPID_HOME": str(tmp_path / "home")}
    env.pop("SNAPID_DB_URL", None)
    done = subprocess.run([sys.executable, "-m", "snapid", "data", "import", str(tmp_path / "garden-shapes"), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"name": "garden-shapes"' in done.stdout
