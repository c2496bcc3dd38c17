"""The `snapid` command as a user runs it: help, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_image
from tests.data.test_importer import make_folder


def snapid(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SNAPID_HOME": str(home), "COLUMNS": "200"}
    env.pop("SNAPID_DB_URL", None)
    result = subprocess.run([sys.executable, "-m", "snapid", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"snapid {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def test_help_lists_the_commands(tmp_path):
    out = snapid("--help", home=tmp_path).stdout
    assert "data" in out and "demo" in out
    data_help = snapid("data", "import", "--help", home=tmp_path).stdout
    for option in ("--format", "--columns", "--max-per-class", "--clip-boxes", "--json"):
        assert option in data_help


def test_import_list_inspect_prepare_round_trip(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=6)
    home = tmp_path / "home"
    report = json.loads(snapid("data", "import", str(root), "--name", "pets", "--json", home=home).stdout)
    assert report["images"] == 12 and report["format"] == "folder"
    listed = json.loads(snapid("data", "list", "--json", home=home).stdout)
    assert listed[0]["name"] == "pets" and listed[0]["version"] == 1
    html = tmp_path / "r.html"
    snapid("data", "inspect", "pets", "--html", str(html), "--out", str(tmp_path / "r.json"), home=home)
    assert html.read_text().startswith("<!DOCTYPE html>") or "<html" in html.read_text()[:200]
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["samples"] == 12
    prepared = json.loads(snapid("data", "prepare", "pets", "--size", "32", "--json", home=home).stdout)
    assert prepared["items"] == 12 and prepared["processed"] == 12


def test_errors_are_one_line_and_name_the_culprit(tmp_path):
    missing = snapid("data", "import", str(tmp_path / "nowhere"), "--name", "x", home=tmp_path / "h", check=False)
    assert missing.returncode == 1
    assert "nowhere" in missing.stderr and "Traceback" not in missing.stderr
    unknown = snapid("data", "inspect", "nothing-here", home=tmp_path / "h", check=False)
    assert unknown.returncode == 1 and "nothing-here" in unknown.stderr
    root = make_folder(tmp_path / "pets", per_class=2)
    bad = snapid("data", "import", str(root), "--name", "pets", "--format", "parquet", home=tmp_path / "h", check=False)
    # a value outside a fixed set is a usage error (status 2) that lists the choices
    assert bad.returncode == 2 and "parquet" in bad.stderr and "'folder'" in bad.stderr and "'aihub'" in bad.stderr


def test_inspect_strict_fails_on_train_test_leakage(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=6)
    (root / "test" / "cat").mkdir(parents=True)
    for split in ("train",):
        (root / split).mkdir()
        for label in ("cat", "dog"):
            (root / label).rename(root / split / label)
    write_image(root / "test" / "cat" / "copy.jpg", (80, 60), seed=0)  # the same bytes as train/cat/0.jpg
    write_image(root / "test" / "dog" / "x.jpg", (80, 60), seed=555)
    home = tmp_path / "home"
    snapid("data", "import", str(root), "--name", "leaky", home=home)
    lenient = snapid("data", "inspect", "leaky", home=home, check=False)
    assert lenient.returncode == 0
    strict = snapid("data", "inspect", "leaky", "--strict", home=home, check=False)
    assert strict.returncode == 1 and "leak" in strict.stderr.lower()


def test_python_m_snapid_and_console_script_agree(tmp_path):
    version = snapid("version", home=tmp_path).stdout.strip()
    script = Path(sys.executable).with_name("snapid")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    assert subprocess.run([str(script), "version"], capture_output=True, text=True).stdout.strip() == version
