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


def save_checkpoint(folder: Path, tag: str, *, weights: dict[str, torch.Tensor], meta: dict, state: dict | None = None) -> str:
    """Write {tag}.safetensors, {tag}-state.pt and {tag}.json; returns the weights' sha256."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    blob = save_safetensors(tensors)
    record = dict(meta, weights_sha256=_sha(blob))
    atomic_write_bytes(folder / f"{tag}.safetensors", blob)
    if state is not None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(folder / f"{tag}-state.pt", buf.getvalue())
        record["state_sha256"] = _sha(buf.getvalue())
    atomic_write_json(folder / f"{tag}.json", record)
    return record["weights_sha256"]


def load_checkpoint(folder: Path, tag: str, *, with_state: bool = False) -> tuple[dict[str, torch.Tensor], dict, dict | None]:
    """(weights, meta, state). Refuses a checkpoint whose files do not match their recorded hashes."""
    meta_file = folder / f"{tag}.json"
    try:
        meta = json.loads(meta_file.read_text())
        blob = (folder / f"{tag}.safetensors").read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta_file}: no readable checkpoint ({exc})") from None
    if _sha(blob) != meta.get("weights_sha256"):
        raise CheckpointError(f"{folder / f'{tag}.safetensors'}: sha256 does not match {meta_file.name}; the file is damaged")
    try:
        weights = load_safetensors(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{folder / f'{tag}.safetensors'}: unreadable ({exc})") from None
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{folder / f'{tag}.safetensors'}: tensor {key} holds NaN or infinite values")
    state = None
    if with_state:
        data = (folder / f"{tag}-state.pt").read_bytes() if (folder / f"{tag}-state.pt").exists() else b""
        if _sha(data) != meta.get("state_sha256"):
            raise CheckpointError(f"{folder / f'{tag}-state.pt'}: missing or damaged training state")
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return weights, meta, state
