"""A tiny box dataset: the demo's multi-pill photos (2-4 pills each) with a few single-pill ones."""

from __future__ import annotations

import pytest


@pytest.fixture
def pills(tmp_path, engine) -> str:
    from snapid.data.demo import generate_demo
    from snapid.importer import import_dataset

    info = generate_demo(tmp_path / "demo", per_class=2, multi=12, size=(160, 120))
    import_dataset(info.root, name="pills", engine=engine, fmt="aihub")
    return "pills"
