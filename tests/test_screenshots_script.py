"""`scripts/screenshots.py` (`make screenshots`): its help runs without a browser or a workspace, and every
picture the README shows from docs/images/ is in the repository, as are the ones the script says it makes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "screenshots.py"
# docs/images/NAME in Markdown links, <img src="...">, reference definitions; stops at quotes, brackets, space, #, ?
IMAGE_PATH = re.compile(r"""(?<![\w/.-])(?:\./)?(docs/images/[^\s"'()<>\[\]#?]+)""")


def test_the_script_explains_itself():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout and "--home" in done.stdout and "identify-warning.png" in done.stdout


def test_every_image_the_readme_references_exists():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = sorted({path for path in IMAGE_PATH.findall(readme) if not (REPO / path).is_file()})
    assert not missing, f"README.md references images that are not in the repository: {missing}"


def test_every_image_the_script_makes_is_committed():
    named = set(re.findall(r"^\s+([a-z0-9-]+\.png)\s", SCRIPT.read_text(encoding="utf-8"), flags=re.M))
    assert named, "the script's docstring lists no images"
    missing = sorted(name for name in named if not (REPO / "docs" / "images" / name).is_file())
    assert not missing, f"run `make screenshots`: docs/images/ lacks {missing}"
