"""`snapid export --subset NAME=FILE` (issue 20): named candidate subsets in the bundle, unknown names refused."""

from __future__ import annotations

import json

import pytest

from snapid.export.from_run import export_run
from snapid.export.onnx import ExportError
from snapid.export.subsets import parse_option


def test_subsets_are_written_resolved_to_class_ids(make_run, home, engine, tmp_path):
    make_run("a")
    (tmp_path / "round.txt").write_text("# round things\ndisc\n\nSTRIPES  # by name, any case\ndisc\n")
    bundle = export_run("a", workspace=home, engine=engine, references=0,
                        subsets=parse_option([f"round ones={tmp_path / 'round.txt'}"]))
    assert "subsets.json" in bundle.manifest["files"]  # hashed like every file
    assert json.loads(bundle.file("subsets.json").read_bytes()) == {"subsets": {"round ones": ["disc", "stripes"]}}
    assert bundle.subsets == {"subsets": {"round ones": ["disc", "stripes"]}}


def test_unknown_names_refuse_the_export_naming_them(make_run, home, engine, tmp_path):
    make_run("a")
    (tmp_path / "bad.txt").write_text("disc\ntriangle\n")
    with pytest.raises(ExportError, match="'triangle'"):
        export_run("a", workspace=home, engine=engine, subsets={"bad": tmp_path / "bad.txt"})
    assert not (home.bundles / "a").exists()
    for value in ("noequals", "=x.txt", "a/b=x.txt"):
        with pytest.raises(ExportError, match="NAME=FILE"):
            parse_option([value])
