"""One table of every setting: docs/configuration.md equals the table generated from Settings, and every
SNAPID_ variable the code names is a setting in it."""

from __future__ import annotations

import re
from pathlib import Path

import snapid
from snapid.config import Settings, settings_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_configuration_page_holds_the_generated_table():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert settings_table() in page, "regenerate the table: python -c 'from snapid.config import settings_table; " \
                                     "print(settings_table())'"


def test_every_variable_the_code_reads_is_a_documented_setting():
    named = set()
    for path in Path(snapid.__file__).parent.rglob("*.py"):
        named |= set(re.findall(r"SNAPID_([A-Z][A-Z0-9_]*)", path.read_text(encoding="utf-8")))
    fields = {name.upper() for name in Settings.model_fields}
    assert named - fields == set(), "add these to Settings (snapid/config.py) so they are documented"
    assert len(named) >= 10
