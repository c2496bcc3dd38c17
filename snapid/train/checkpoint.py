"""Checkpoints: weights in safetensors, training state via torch.save (loaded with weights_only=True),
metadata in JSON written LAST with the sha256 of both files. Every file is written to a temp file,
fsynced and renamed, so a kill (or a full disk) at any point leaves the previous checkpoint intact."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from snapid.errors import SnapidError
from snapid.workspace import atomic_write_bytes, atomic_write_json


class CheckpointError(SnapidError):
    code = "bad_checkpoint"
    status = 422


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(folder: Path, tag: str, *, weights: dict[str, torch.Tensor], meta: dict,
                    state: dict | None = None) -> str:
    """Write new {tag}-{n}.safetensors / -state.pt files, then {tag}.json naming them, then drop the old
    files. The JSON only ever names complete files, so a kill at any moment leaves a loadable checkpoint."""
    serial = _next_serial(folder, tag)
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    blob = save_safetensors(tensors)
    record = dict(meta, weights_file=f"{tag}-{serial}.safetensors", weights_sha256=_sha(blob))
    atomic_write_bytes(folder / record["weights_file"], blob)
    if state is not None:
        buf = io.BytesIO()
        torch.save(state, buf)
        record.update(state_file=f"{tag}-{serial}-state.pt", state_sha256=_sha(buf.getvalue()))
        atomic_write_bytes(folder / record["state_file"], buf.getvalue())
    atomic_write_json(folder / f"{tag}.json", record)
    keep = {record["weights_file"], record.get("state_file")}
    for old in folder.glob(f"{tag}-*"):
        if old.name not in keep and not old.name.startswith("."):
            old.unlink(missing_ok=True)
    return record["weights_sha256"]


def _next_serial(folder: Path, tag: str) -> int:
    serials = [int(p.stem.split("-")[1]) for p in folder.glob(f"{tag}-*.safetensors") if p.stem.split("-")[1].isdigit()]
    return max(serials, default=0) + 1


def weights_file(folder: Path, tag: str) -> Path:
    """The weights file a checkpoint's JSON names (e.g. for export)."""
    return folder / json.loads((folder / f"{tag}.json").read_text())["weights_file"]


def load_checkpoint(folder: Path, tag: str, *,
                    with_state: bool = False) -> tuple[dict[str, torch.Tensor], dict, dict | None]:
    """(weights, meta, state). Refuses a checkpoint whose files do not match their recorded hashes."""
    meta_file = folder / f"{tag}.json"
    try:
        meta = json.loads(meta_file.read_text())
        path = folder / Path(meta["weights_file"]).name
        blob = path.read_bytes()
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{meta_file}: no readable checkpoint ({exc})") from None
    if _sha(blob) != meta.get("weights_sha256"):
        raise CheckpointError(f"{path}: sha256 does not match {meta_file.name}; the file is damaged")
    try:
        weights = load_safetensors(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
    state = None
    if with_state:
        state_path = folder / Path(meta.get("state_file", f"{tag}-missing")).name
        data = state_path.read_bytes() if state_path.exists() else b""
        if _sha(data) != meta.get("state_sha256"):
            raise CheckpointError(f"{state_path}: missing or damaged training state")
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return weights, meta, state
