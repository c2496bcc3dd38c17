"""snapid keeps the import contracts in pyproject.toml ([tool.importlinter], issue 18): packages import only
from the layers below them, snapid.serve imports neither torch nor the training code, and there are no import
cycles between modules or between packages, at any depth. import-linter's graph (grimp) reads every import
statement, those inside functions included: an import deferred to dodge a cycle or a layer still counts."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`lint-imports` in this interpreter, so the test needs no console script on PATH."""
    command = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; "
               "sys.exit(c())", "--no-cache", "--no-logo", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_snapid_keeps_its_import_contracts():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    result = lint_imports(ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Contracts: {len(contracts)} kept, 0 broken." in output, output


def test_the_contracts_catch_an_import_inside_a_function(tmp_path):
    """The same kinds of contract on a two-module package whose lower layer imports the upper one inside a
    function: both the layer and the cycle are found."""
    package = tmp_path / "layered"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "high.py").write_text("from layered import low\n")
    (package / "low.py").write_text("def late():\n    from layered import high\n    return high\n")
    (tmp_path / "contracts.toml").write_text("""
[tool.importlinter]
root_package = "layered"

[[tool.importlinter.contracts]]
name = "layers"
type = "layers"
containers = ["layered"]
layers = ["high", "low"]

[[tool.importlinter.contracts]]
name = "acyclic"
type = "acyclic_siblings"
ancestors = ["layered"]
""")
    result = lint_imports(tmp_path, "contracts.toml")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "layered.low is not allowed to import layered.high" in output, output
    assert "No cycles are allowed in layered" in output, output
