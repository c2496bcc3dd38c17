"""torch → ONNX, an ONNX Runtime session tuned for the CPU, and the parity check that proves the exported
graph computes what the torch model computes on real images.

Which exporter (torch 2.15, onnx 1.23, onnxruntime 1.31; MobileNetV2 at 224 px on this 2-core CPU):
the TorchScript-based exporter (``dynamo=False``) took 0.4-2 s and gave a graph that ONNX Runtime ran
at 4.2-6.5 ms/image at batch 1; the torch.export-based one (``dynamo=True``) took about 8 s and its
graph ran at 5.9-9.3 ms (it lowers global pooling to ReduceMean + Reshape instead of
GlobalAveragePool). At batch 32 both ran 4.1-4.5 ms/image, and both matched torch within 2e-8. So the
TorchScript exporter comes first and the dynamo one is the fallback for a model it cannot trace (or
for the day it is removed). Either way the plain eval-mode model is exported: the exporter's constant
folding and ONNX Runtime's optimiser fold every BatchNorm into its convolution, so the fx-fused copy
used for training-time inference would add nothing.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from snapid import geometry
from snapid.errors import SnapidError
from snapid.metrics import softmax

INPUT, OUTPUT = "images", "logits"
EMBEDDING = "embedding"      # optional second output: the pooled N x D features (reference photos, issue 20)
OPSET = 20                   # the newest opset the TorchScript exporter documents; ORT 1.31 runs up to 23
PARITY_TOLERANCE = 1e-4      # max |p_onnx - p_torch| over every class of every parity image
PARITY_IMAGES = 64
RUN_BATCH = 32               # images per ONNX Runtime call when scoring a split
MAX_EXPORT_BATCH = 4096      # upper bound of the dynamic batch axis (the dynamo exporter wants one)


class ExportError(SnapidError):
    code = "export_failed"
    status = 422


class ParityError(ExportError):
    code = "parity_failed"


# --- export ------------------------------------------------------------------------------------------
def to_onnx(module: nn.Module, size: int, *, where: str = "model", outputs: tuple[str, ...] = (OUTPUT,)) -> bytes:
    """The eval-mode ``module`` (N x 3 x size x size normalised float32 → N x C) as ONNX bytes with input
    "images", output "logits" and a dynamic batch axis. ``where`` names the model in errors. ``outputs``: the
    names of what ``module`` returns, in order (a module returning (logits, embedding) gives two outputs)."""
    module = module.eval()
    example = torch.zeros(2, 3, size, size)  # batch 2, so no exporter can specialise the batch axis to 1
    errors = []
    for export in (_export_torchscript, _export_dynamo):
        try:
            with torch.no_grad():
                return export(module, example, outputs)
        except Exception as exc:  # exporters raise many types; the next exporter gets its chance
            errors.append(f"{export.__name__.removeprefix('_export_')}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]}")
    raise ExportError(f"{where}: could not be exported to ONNX ({'; '.join(errors)})")


def _export_torchscript(module: nn.Module, example: torch.Tensor, outputs: tuple[str, ...] = (OUTPUT,)) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose, see above
        torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=list(outputs), dynamic_axes={n: {0: "batch"} for n in (INPUT, *outputs)},
                          do_constant_folding=True)
    return buf.getvalue()


def _export_dynamo(module: nn.Module, example: torch.Tensor, outputs: tuple[str, ...] = (OUTPUT,)) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    program = torch.onnx.export(module, (example,), None, dynamo=True, opset_version=OPSET, input_names=[INPUT],
                                output_names=list(outputs), dynamic_shapes=({0: batch},), verbose=False)
    return program.model_proto.SerializeToString()


def to_torchscript(module: nn.Module, size: int) -> bytes:
    """A traced TorchScript archive (``--format torchscript``): for torch users; the server runs ONNX only."""
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in torch 2.15; still the usual .pt hand-off
        torch.jit.save(torch.jit.trace(module.eval(), torch.zeros(2, 3, size, size)), buf)
    return buf.getvalue()


# --- running -----------------------------------------------------------------------------------------
def cpu_threads() -> int:
    """Cores this process may use (respects taskset / cgroup CPU sets, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Every graph optimisation (Conv+BN+activation fusion, constant folding, layout), one intra-op thread
    per core, sequential execution: a classifier is a chain, so inter-op parallelism would only contend."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only; our own errors say what went wrong
    return options


def make_session(model: bytes | Path, *, threads: int | None = None, where: str = "model.onnx") -> ort.InferenceSession:
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / InvalidGraph / ... types
        raise ExportError(f"{where}: ONNX Runtime cannot load the exported graph "
                          f"({str(exc).splitlines()[0][:300]})") from None


def run_logits(session: ort.InferenceSession, inputs: np.ndarray, *, batch: int = RUN_BATCH) -> np.ndarray:
    """Logits for N x 3 x S x S normalised float32 inputs, ``batch`` images per call."""
    parts = [session.run([OUTPUT], {INPUT: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, session.get_outputs()[0].shape[1]), np.float32)


def normalized(images: torch.Tensor, preprocess: dict) -> np.ndarray:
    """uint8 N x 3 x S x S (as the prepared cache holds them) → the float32 input the graph takes, made by
    `geometry.normalise` as serving makes it."""
    return geometry.normalise(images.permute(0, 2, 3, 1).numpy(), preprocess["mean"], preprocess["std"])


def first_images(dataset, limit: int = PARITY_IMAGES) -> torch.Tensor:
    """The first ``limit`` uint8 images of a prepared split (a fixed, reproducible sample)."""
    count = min(limit, len(dataset))
    if count == 0:
        return torch.zeros((0, 3, dataset.params["size"], dataset.params["size"]), dtype=torch.uint8)
    images, _ = dataset.__getitems__(list(range(count)))
    return images


@torch.no_grad()
def torch_probabilities(module: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """softmax of the eager torch module's output: the reference the exported graph must match."""
    logits = module.eval()(torch.from_numpy(inputs)).double().numpy()
    return softmax(logits)


# --- parity ------------------------------------------------------------------------------------------
def check_parity(run_graph, inputs: np.ndarray, reference: np.ndarray, *, tolerance: float = PARITY_TOLERANCE,
                 where: str = "model") -> dict:
    """Compare softmax(run_graph(inputs)) with the reference probabilities; ParityError when the largest
    absolute difference exceeds ``tolerance``. ``run_graph``: an ORT session or any inputs → logits callable.
    Returns {"images", "max_abs_diff", "tolerance", "argmax_agreement"} for the manifest."""
    if len(inputs) == 0:
        raise ParityError(f"{where}: no images to check the export against (the run's prepared cache is empty)")
    logits = run_logits(run_graph, inputs) if isinstance(run_graph, ort.InferenceSession) else run_graph(inputs)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    if probs.shape != reference.shape:
        raise ParityError(f"{where}: the exported graph gives {probs.shape} probabilities, torch {reference.shape}")
    diff = np.abs(probs - reference)
    worst = float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf")
    if not worst <= tolerance:
        image = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf).max(axis=1)))
        raise ParityError(f"{where}: the export does not match torch: max |probability difference| {worst:.3g} "
                          f"(on parity image {image} of {len(inputs)}) > tolerance {tolerance:g}; nothing was written")
    agreement = float((probs.argmax(1) == reference.argmax(1)).mean())
    return {"images": len(inputs), "max_abs_diff": worst, "tolerance": tolerance, "argmax_agreement": agreement}
