"""Packaging (issue 22): what snapid[serve] may install, the version and license written once, and a command
whose extra is missing naming that extra. The install itself, in fresh environments, is checked by
scripts/ci_lean_install.sh (CI, after the tests)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import snapid

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
TRAIN_ONLY = {"torch", "torchvision", "timm", "kornia", "matplotlib", "scipy", "imagehash", "cleanlab", "optuna",
              "scikit-learn", "onnx", "onnxscript", "torchmetrics", "pycocotools"}


def _name(requirement: str) -> str:
    return re.split(r"[ <>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_base_install_and_the_serve_extra_name_nothing_only_training_uses():
    project = PYPROJECT["project"]
    lean = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    assert not {_name(r) for r in lean} & TRAIN_ONLY, lean
    assert {"imagehash", "matplotlib"} <= {_name(r) for r in project["optional-dependencies"]["train"]}
    assert "prometheus-client" in {_name(r) for r in project["optional-dependencies"]["serve"]}
    for requirement in lean:  # every direct dependency has a lower bound (CI installs the lowest ones)
        assert ">=" in requirement or "==" in requirement, requirement


def test_version_and_license_are_written_once():
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "snapid.__version__"}
    assert importlib.metadata.version("snapid") == snapid.__version__
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639: the expression only


def test_a_command_whose_extra_is_missing_names_the_extra(tmp_path):
    """As on `pip install snapid[serve]`: importing a dataset needs imagehash, from the train extra."""
    photos = tmp_path / "photos" / "red"
    photos.mkdir(parents=True)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["imagehash"] = None  # as if not installed: importing it raises ModuleNotFoundError
        sys.argv = ["snapid", "data", "import", {str(photos.parent)!r}]
        from snapid.cli import main
        main()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SNAPID_HOME": str(tmp_path / "home")})
    assert out.returncode == 1, out.stdout + out.stderr
    said = out.stdout + out.stderr
    assert "needs imagehash" in said and "snapid[train]" in said and "Traceback" not in said, said
