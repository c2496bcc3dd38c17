"""Static int8 quantisation with ONNX Runtime, and the accuracy gate that decides whether it is kept.

Static (QDQ, per-channel weights, activation ranges calibrated on a few hundred images of the run's
prepared training cache), never dynamic: dynamic quantisation leaves a CNN's activations in float
and re-quantises them at run time (ConvInteger), which issue 5 measured 25-40x slower on this machine.
u8 activations with s8 weights is the pairing x86 int8 kernels (AVX-512 VNNI on this CPU) are built for.

The int8 model is scored against the fp32 one on the whole validation split; when top-1 drops by
more than ``MAX_DROP_POINTS`` the export is refused (unless forced) and nothing is written. On a small
validation split that gate is one image: on flowers12 (72 val images) every calibration tried (MinMax,
Percentile, Entropy; 300 or all 648 training images; the head left in fp32) changed the answer for
1-4 of 312 val+test images: val top-1 moved by -2.8 to +1.4 points (one image is 1.4) and test top-1
(240 images) by 0 to +0.8, so int8 passed or failed the gate by one image's luck. MinMax is kept:
as good as the others here, and 10 s of calibration instead of 90.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from snapid.data.cached_dataset import CachedDataset
from snapid.export.onnx import (
    INPUT,
    RUN_BATCH,
    ExportError,
    make_session,
    normalized,
    run_logits,
)

MAX_DROP_POINTS = 1.0       # top-1, in percentage points, on the validation split
CALIBRATION_IMAGES = 300
CALIBRATION_BATCH = 16


class Int8Refused(ExportError):
    code = "int8_accuracy_drop"


class CacheCalibrationReader(CalibrationDataReader):
    """Normalised batches from a prepared split: a seeded random sample of at most ``limit`` images, so
    every class tends to be seen and the activation ranges are those of real photos."""

    def __init__(self, dataset: CachedDataset, preprocess: dict, *, limit: int = CALIBRATION_IMAGES,
                 batch: int = CALIBRATION_BATCH, seed: int = 0, on_batch: Callable[[int, int], None] | None = None):
        order = np.random.default_rng(seed).permutation(len(dataset))[:limit]
        self.batches = [np.sort(order[i:i + batch]) for i in range(0, len(order), batch)]
        self.dataset, self.preprocess, self.on_batch = dataset, preprocess, on_batch
        self.position = 0

    def get_next(self) -> dict | None:
        if self.position >= len(self.batches):
            return None
        images, _ = self.dataset.__getitems__(self.batches[self.position].tolist())
        self.position += 1
        if self.on_batch:
            self.on_batch(self.position, len(self.batches))
        return {INPUT: normalized(images, self.preprocess)}

    def rewind(self) -> None:
        self.position = 0


def quantize_int8(model_fp32: bytes, reader: CalibrationDataReader) -> bytes:
    """The fp32 graph as a static int8 QDQ graph (per-channel weights), calibrated with ``reader``."""
    with tempfile.TemporaryDirectory(prefix="snapid-int8-") as tmp:
        fp32, pre, int8 = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        fp32.write_bytes(model_fp32)
        # symbolic shape inference + ONNX optimisations first, as ORT's quantisation guide asks:
        # the quantiser then sees fused Conv+BN and known shapes
        # in the temporary folder: when the symbolic pass gives up, ORT saves its debug copy of the model
        # (sym_shape_infer_temp.onnx + external data) into the working directory
        with contextlib.chdir(tmp):
            try:
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
            except Exception:  # noqa: BLE001 (ORT raises a bare Exception)
                # TensorFlow-style "same" padding (EfficientNet-Lite) computes its pads from the input's shape,
                # which the symbolic pass cannot follow; ONNX's own shape inference and optimisations still run
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(int8), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return int8.read_bytes()


def top1_and_speed(session, dataset: CachedDataset, preprocess: dict) -> tuple[float, float]:
    """(top-1 on ``dataset``, ms per image at batch RUN_BATCH, timing the graph only, after one warm-up)."""
    correct, seconds = 0, 0.0
    for start in range(0, len(dataset), RUN_BATCH):
        images, labels = dataset.__getitems__(list(range(start, min(start + RUN_BATCH, len(dataset)))))
        inputs = normalized(images, preprocess)
        if start == 0:
            run_logits(session, inputs)  # warm-up: first-run allocations are not the model's speed
        began = time.perf_counter()
        logits = run_logits(session, inputs)
        seconds += time.perf_counter() - began
        correct += int((logits.argmax(1) == labels.numpy()).sum())
    n = max(1, len(dataset))
    return correct / n, 1000 * seconds / n


def compare_int8(model_fp32: bytes, model_int8: bytes, val_set: CachedDataset, preprocess: dict) -> dict:
    """Top-1 and speed of both graphs on the validation split, measured the same way."""
    top1_fp32, ms_fp32 = top1_and_speed(make_session(model_fp32), val_set, preprocess)
    top1_int8, ms_int8 = top1_and_speed(make_session(model_int8, where="int8 model.onnx"), val_set, preprocess)
    return {"n": len(val_set), "top1_fp32": top1_fp32, "top1_int8": top1_int8,
            "drop_points": round(100 * (top1_fp32 - top1_int8), 4),
            "images_lost": round((top1_fp32 - top1_int8) * len(val_set)),  # net: newly wrong minus newly right
            "ms_per_image_fp32": round(ms_fp32, 3), "ms_per_image_int8": round(ms_int8, 3),
            "speedup": round(ms_fp32 / ms_int8, 3) if ms_int8 > 0 else None, "batch": RUN_BATCH}


def check_drop(report: dict, *, where: str, max_drop_points: float = MAX_DROP_POINTS, force: bool = False) -> None:
    """Int8Refused when int8 loses more than ``max_drop_points`` of top-1 (or cannot be measured), unless forced."""
    if force:
        return
    if report["n"] == 0:
        raise Int8Refused(f"{where}: no validation images to measure the int8 accuracy on; "
                          "pass --force to export int8 unchecked, or export fp32")
    if report["drop_points"] > max_drop_points:
        raise Int8Refused(f"{where}: int8 top-1 {100 * report['top1_int8']:.2f} % against fp32 "
                          f"{100 * report['top1_fp32']:.2f} % on {report['n']} validation images: a drop of "
                          f"{report['drop_points']:.2f} points ({report['images_lost']} image(s) net) "
                          f"> {max_drop_points:g}; "
                          "nothing was written (export fp32 without --int8, or pass --force to keep it anyway)")


def int8_model(model_fp32: bytes, *, train_set: CachedDataset, val_set: CachedDataset, preprocess: dict, where: str,
               max_drop_points: float = MAX_DROP_POINTS, force: bool = False,
               on_batch: Callable[[int, int], None] | None = None) -> tuple[bytes, dict]:
    """(int8 ONNX bytes, accuracy and speed report); Int8Refused when the accuracy gate fails."""
    if len(train_set) == 0:
        raise ExportError(f"{where}: no training images in the prepared cache to calibrate int8 activation ranges on")
    reader = CacheCalibrationReader(train_set, preprocess, on_batch=on_batch)
    model = quantize_int8(model_fp32, reader)
    report = compare_int8(model_fp32, model, val_set, preprocess)
    report["calibration_images"] = min(CALIBRATION_IMAGES, len(train_set))
    check_drop(report, where=where, max_drop_points=max_drop_points, force=force)
    return model, report
