"""A bundle opened for serving: verified files, an ONNX Runtime session, labels and calibration.

`load_model` verifies everything before anything is served: every sha256 (load_bundle), the ONNX
graph (parsed by ONNX Runtime, which reads protobuf only and never unpickles), the input/output
names and shapes against labels.json and preprocess.json, and one test batch that must give finite
numbers. A model that fails any check raises BundleError, and the caller keeps the old one.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from snapid.export.bundle import Bundle, BundleError, load_bundle
from snapid.serve.services.detector import LoadedDetector, load_detector
from snapid.serve.services.preprocess import PreprocessSpec
from snapid.serve.services.references import ReferenceIndex, load_index

log = logging.getLogger("snapid.serve")
INPUT, OUTPUT = "images", "logits"
EMBEDDING = "embedding"  # optional: the pooled features, for reference photos (services/references.py)
CAM = "cam"   # optional: N x C x h x w class activation maps (manifest "explain"; services/explain.py)


@dataclass(eq=False)
class LoadedModel:
    bundle: Bundle
    session: ort.InferenceSession
    spec: PreprocessSpec
    temperature: float
    threshold: float
    labels: list[dict] = field(repr=False)
    detector: LoadedDetector | None = None   # detector.onnx: detect → crop → classify (services/detector.py)
    references: ReferenceIndex | None = None  # reference photos per class (services/references.py)
    explain: bool = False                     # the graph gives "cam": explain=true answers heatmaps

    @property
    def info(self) -> dict:
        return {"name": self.bundle.name, "version": self.bundle.version, "sha256": self.bundle.sha256}

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """N x 3 x S x S float32 → N x C calibrated probabilities: softmax(logits / temperature)."""
        return self._calibrated(self.session.run([OUTPUT], {INPUT: batch})[0])

    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The calibrated probabilities and, when the bundle has reference photos, the N x D embeddings
        (one run of the graph)."""
        if self.references is None:
            return self.probabilities(batch), None
        logits, embedding = self.session.run([OUTPUT, EMBEDDING], {INPUT: batch})
        return self._calibrated(logits), embedding.reshape(len(batch), -1)

    def explained(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """scores() plus the N x C x h x w class activation maps, from one run (explain=true only)."""
        names = [OUTPUT, EMBEDDING, CAM] if self.references is not None else [OUTPUT, CAM]
        out = self.session.run(names, {INPUT: batch})
        embedding = out[1].reshape(len(batch), -1) if self.references is not None else None
        return self._calibrated(out[0]), embedding, out[-1].astype(np.float32)

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        logits = logits.astype(np.float64) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.astype(np.float32)


def _session(model_file: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: a refused model is reported by us, once
    # no busy-waiting between runs: a served model runs in bursts while the decode threads need the same
    # cores; spinning ORT threads took 30 ms of CPU per request at 1 client instead of 19 (benchmarks §9)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise BundleError(f"{model_file}: not a loadable ONNX model ({str(exc).splitlines()[0][:300]})") from None


def _calibration(bundle: Bundle) -> tuple[float, float]:
    cal = bundle.calibration if isinstance(bundle.calibration, dict) else {}
    try:
        temperature = float(cal.get("temperature", 1.0))
        threshold = float(cal.get("threshold", 0.0))
    except (TypeError, ValueError):
        raise BundleError(f"{bundle.path / 'calibration.json'}: temperature and threshold must be numbers") from None
    if not (np.isfinite(temperature) and temperature > 0 and 0.0 <= threshold <= 1.0):
        raise BundleError(f"{bundle.path / 'calibration.json'}: temperature {temperature} must be > 0 and "
                          f"threshold {threshold} within 0..1")
    return temperature, threshold


def _check_labels(bundle: Bundle) -> list[dict]:
    labels = []
    for i, entry in enumerate(bundle.labels):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise BundleError(f"{bundle.path / 'labels.json'}: class {i} has no string id")
        names = entry.get("display_names") if isinstance(entry.get("display_names"), dict) else {}
        labels.append({"index": i, "id": entry["id"], "name": str(entry.get("name") or entry["id"]),
                       "display_names": {str(k): str(v) for k, v in names.items()}})
    return labels


def _check_graph(session: ort.InferenceSession, spec: PreprocessSpec, n_classes: int, where: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if INPUT not in inputs or OUTPUT not in outputs:
        raise BundleError(f"{where}: the graph must take {INPUT!r} and give {OUTPUT!r} "
                          f"(has {sorted(inputs)} → {sorted(outputs)})")
    shape = inputs[INPUT].shape
    fixed = [d for d in shape[1:] if isinstance(d, int)]
    if len(shape) != 4 or fixed and fixed != [3, spec.size, spec.size][-len(fixed):]:
        raise BundleError(f"{where}: input shape {shape} does not match preprocess size {spec.size}")
    probe = np.zeros((2, 3, spec.size, spec.size), dtype=np.float32)  # batch of 2: the batch axis must be free
    try:
        out = session.run([OUTPUT], {INPUT: probe})[0]
    except Exception as exc:
        raise BundleError(f"{where}: a test batch failed ({str(exc).splitlines()[0][:300]})") from None
    if out.shape != (2, n_classes) or not np.all(np.isfinite(out)):
        raise BundleError(f"{where}: a test batch gave shape {out.shape} (expected (2, {n_classes})) "
                          "or non-finite values")


def _check_explain(bundle: Bundle, session: ort.InferenceSession, spec: PreprocessSpec, n_classes: int) -> bool:
    """True when the manifest says explain is available and the graph's "cam" output gives 2 x C x h x w maps."""
    entry = bundle.manifest.get("explain")
    if not (isinstance(entry, dict) and entry.get("available") is True):
        return False
    where = bundle.file("model.onnx")
    if CAM not in {o.name for o in session.get_outputs()}:
        raise BundleError(f"{where}: the manifest says explain is available but the graph has no {CAM!r} output")
    maps = session.run([CAM], {INPUT: np.zeros((2, 3, spec.size, spec.size), dtype=np.float32)})[0]
    if maps.ndim != 4 or maps.shape[:2] != (2, n_classes) or not np.all(np.isfinite(maps)):
        raise BundleError(f"{where}: the {CAM!r} output gave shape {maps.shape} (expected (2, {n_classes}, h, w)) "
                          "or non-finite values")
    return True


def load_model(path: Path, *, threads: int = 0) -> LoadedModel:
    """Open, verify and warm up the bundle at ``path`` (a folder or a .snapid file)."""
    path = Path(path)
    bundle = load_bundle(path)
    try:
        spec = PreprocessSpec.from_bundle(bundle.preprocess)
        temperature, threshold = _calibration(bundle)
        labels = _check_labels(bundle)
        session = _session(bundle.file("model.onnx"), threads)
        _check_graph(session, spec, len(labels), bundle.file("model.onnx"))
        detector = load_detector(bundle, lambda file: _session(file, threads))
        explain = _check_explain(bundle, session, spec, len(labels))
        references = load_index(bundle, len(labels))
        if references is not None and EMBEDDING not in {o.name for o in session.get_outputs()}:
            raise BundleError(f"{bundle.path}: reference photos need model.onnx's {EMBEDDING!r} output")
    finally:
        if path.is_file():  # a .snapid was unpacked to a temporary folder: the session holds the model now
            shutil.rmtree(bundle.path, ignore_errors=True)
    log.info("model %s version %s (sha256 %s) loaded from %s", bundle.name, bundle.version, bundle.sha256[:12], path)
    return LoadedModel(bundle=bundle, session=session, spec=spec, temperature=temperature, threshold=threshold,
                       labels=labels, detector=detector, references=references, explain=explain)
