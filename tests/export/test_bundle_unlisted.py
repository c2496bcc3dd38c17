"""A bundle folder holds only the files its manifest lists: any other file, dotfiles included, is refused
by name (ONNX Runtime would load a file beside model.onnx as the model's external data, unhashed)."""

from __future__ import annotations

import pytest

from snapid.export.bundle import BundleError, load_bundle
from tests.serve.conftest import make_bundle


@pytest.mark.parametrize("name", [".x.bin", "weights.bin", ".DS_Store"])
def test_a_file_the_manifest_does_not_list_is_refused_by_name(tmp_path, name):
    """Row "Truncated checkpoint; wrong keys or shapes; NaN weights; hash mismatch": refused."""
    bundle = make_bundle(tmp_path / "colours")
    assert load_bundle(bundle).name == "colours"
    (bundle / name).write_bytes(b"\0" * 64)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert name in err.value.message and "manifest" in err.value.message
