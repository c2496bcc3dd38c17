"""A new class from a few photos, no retraining (issue 20): `snapid add-class BUNDLE NAME PHOTO...`.

The bundle's graph ends in a linear head on its pooled features: logits = W · embedding + b (one Gemm, or a
MatMul then an Add, whose weights are initializers). The new class is appended as a prototype, the weight
imprinting of Qi et al. (2018): its row is the mean of the unit-length embeddings of the photos and of their
mirror images, centred and scaled as `prototype_row` says; its bias is the mean existing bias. So the new logit is
on the scale of the others (the same row norm, the same offset), and a photo wins the new class when its
embedding points nearer the new prototype than the trained rows would pull it elsewhere. When the bundle carries
held-out photos (the validation slice of its reference index), the row's scale is then chosen for the best
expected accuracy over all classes, each counted once (`balance_factor`). Calibration (temperature, threshold)
stays as it is. The "cam" output, when the graph has one, reads the same weight initializer, so its maps gain the
new class too.

The photos are embedded by the bundle's own graph (its "embedding" output) after the preprocessing serving
applies (`snapid.images.decode_fitted`, then `snapid.geometry.normalise`: the functions
`snapid/serve/services/preprocess.py` calls). The result is a new bundle version written atomically over the
old one (`write_bundle`: staged beside it, swapped in), so a server watching the folder hot-swaps to it;
manifest.json and card.md say the class was added this way and from which photos (their sha256). A bundle
whose graph has no "embedding" output, whose head is not a float linear layer on it (an MLP head, an int8
graph whose head is quantised) or that is an ensemble is refused, saying why.

The graph is edited with the `onnx` package (the train extra); no torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from snapid import geometry, images
from snapid.errors import SnapidError
from snapid.export.bundle import OPTIONAL, REQUIRED, Bundle, load_bundle, write_bundle
from snapid.knowledge.cards import Card
from snapid.workspace import exclusive_lock

MIN_PHOTOS, MAX_PHOTOS = 5, 20
REF_JSON, REF_NPY, REF_JPG = "references.json", "references.npy", "references.jpg"  # snapid/export/references.py
REF_HELD_OUT = "references_held_out.npy"
SCALE_RANGE, SCALE_STEPS = (0.25, 4.0), 97  # factors of the level-matched row tried (geometric grid)
THUMB_PX, THUMB_QUALITY, BATCH = 112, 80, 32
INPUT, LOGITS, EMBEDDING = "images", "logits", "embedding"
METHOD = "prototype (class-mean embedding of the photos and their mirror images, imprinted as a linear-head row)"


class AddClassError(SnapidError):
    code = "add_class_refused"
    status = 422


def _usage(message: str) -> AddClassError:
    return AddClassError(message, code="usage")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_") or "class"


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _embeddings(session, inputs: np.ndarray) -> np.ndarray:
    parts = [session.run([EMBEDDING], {INPUT: inputs[i:i + BATCH]})[0] for i in range(0, len(inputs), BATCH)]
    return np.concatenate(parts).reshape(len(inputs), -1).astype(np.float32)


def _thumbnail(image_hwc: np.ndarray) -> bytes:
    im = Image.fromarray(np.ascontiguousarray(image_hwc), "RGB")
    im.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


# --- the graph ---------------------------------------------------------------------------------------
def _head(model) -> tuple[str, str | None, bool]:
    """(weight initializer, bias initializer or None, weight stored C x D) of the linear layer giving
    "logits" from "embedding"; AddClassError naming why when the graph is not that."""
    producers = {out: node for node in model.graph.node for out in node.output}
    inits = {i.name for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    if EMBEDDING not in outputs:
        raise AddClassError(f"the bundle's graph has no {EMBEDDING!r} output (pooled features), so a new class has "
                            "no embedding to be built from; export the run again with a current snapid")
    node = producers.get(LOGITS)
    why = "its head is not one linear layer on the embedding (an MLP head, or an int8 graph whose head is quantised)"
    if node is None:
        raise AddClassError(f"the graph has no {LOGITS!r} output")
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        if node.input[0] != EMBEDDING or node.input[1] not in inits or attrs.get("transA", None) and attrs["transA"].i:
            raise AddClassError(f"cannot add a class: {why}")
        if any(attrs[k].f != 1.0 for k in ("alpha", "beta") if k in attrs):
            raise AddClassError(f"cannot add a class: {why} (a scaled Gemm)")
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if bias is not None and bias not in inits:
            raise AddClassError(f"cannot add a class: {why}")
        return node.input[1], bias, bool(attrs["transB"].i) if "transB" in attrs else False
    if node.op_type == "Add":
        matmul = next((producers.get(i) for i in node.input if i not in inits), None)
        bias = next((i for i in node.input if i in inits), None)
        if matmul is not None and matmul.op_type == "MatMul" and matmul.input[0] == EMBEDDING \
                and matmul.input[1] in inits and bias is not None:
            return matmul.input[1], bias, False
    if node.op_type == "MatMul" and node.input[0] == EMBEDDING and node.input[1] in inits:
        return node.input[1], None, False
    raise AddClassError(f"cannot add a class: {why}; the logits come from a {node.op_type} node")


def prototype_row(rows: np.ndarray, bias: np.ndarray, embeddings: np.ndarray,
                  references: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, float, dict]:
    """The new class's head row and bias from its photos' raw ``embeddings`` (N x D), given the head (``rows``
    C x D, ``bias`` C) and, when the bundle has one, its reference index (unit embeddings R x D, class of each).

    With references (centred): direction u = unit(p - mu), p the mean unit embedding of the photos, mu the mean
    of the reference embeddings (the training photos' mean: pooled features after a ReLU all share a large
    positive component, which a raw prototype would turn into a vote for the new class on every photo); bias the
    mean existing bias; scale s such that the new class's mean logit on its own photos equals the mean logit the
    existing classes give their own reference photos (taken at the photos' mean embedding norm). Without
    references (uncentred): u = unit(p), s the mean norm of the existing rows."""
    p = _unit(embeddings).mean(axis=0)
    new_bias = float(bias.mean())
    if references is None or len(references[0]) == 0:
        u = _unit(p[None])[0]
        scale = float(np.linalg.norm(rows, axis=1).mean())
        return (scale * u).astype(np.float32), new_bias, {"centred": False, "scale": scale}
    ref, ref_class = references
    u = _unit((p - ref.mean(axis=0))[None])[0]
    norm = float(np.linalg.norm(embeddings, axis=1).mean())
    own_level = float(np.mean(norm * np.einsum("rd,rd->r", ref, rows[ref_class]) + bias[ref_class]))
    reach = float(np.mean(embeddings @ u))
    scale = (own_level - new_bias) / reach if reach > 0 and own_level > new_bias else \
        float(np.linalg.norm(rows, axis=1).mean())
    return (scale * u).astype(np.float32), new_bias, {"centred": True, "scale": scale, "own_logit_level": own_level}


def _with_new_class(z: np.ndarray, new: np.ndarray, pick: np.ndarray | None = None) -> np.ndarray:
    """Softmax over [z, new] (logits N x C, one more column), stably: the probability of class ``pick`` of each
    row, or of the new class when ``pick`` is None."""
    top = np.maximum(z.max(axis=1), new)
    total = np.exp(z - top[:, None]).sum(axis=1) + np.exp(new - top)
    chosen = new if pick is None else z[np.arange(len(z)), pick]
    return np.exp(chosen - top) / total


def balance_factor(rows: np.ndarray, bias: np.ndarray, row: np.ndarray, row_bias: float, held_out: np.ndarray,
                   held_out_class: np.ndarray, left_out_rows: np.ndarray, left_out: np.ndarray,
                   temperature: float) -> tuple[float, dict]:
    """The factor k for the new row that maximises the expected accuracy over all classes, each counted once: the
    mean probability (as served: softmax of logits / temperature) given to the right class, on held-out photos of
    the existing classes (photos the head was not fitted on) and, for the new class, on each of its photos left
    out of its own prototype (``left_out_rows[i]``: the row made without photo i; ``left_out[i]``: that photo's
    embeddings, itself and mirrored). k is searched on a geometric grid over SCALE_RANGE.

    The level-matched row is right on the class's own photos but blind to everyone else's: a class that looks
    like others needs a quieter row, a distinctive one can be louder. Each side is measured on photos its row did
    not see, so neither is flattered (docs/decisions.md, docs/benchmarks.md §19)."""
    classes, factors = len(rows), np.geomspace(*SCALE_RANGE, SCALE_STEPS)
    z = (held_out @ rows.T + bias) / temperature
    reach = held_out @ row
    xs = left_out.reshape(-1, left_out.shape[-1])                       # (photo, view) pairs, in photo order
    zx = (xs @ rows.T + bias) / temperature
    reach_x = np.einsum("pvd,pd->pv", left_out, left_out_rows).reshape(-1)
    scores = []
    for k in factors:
        kept = _with_new_class(z, (k * reach + row_bias) / temperature, held_out_class).mean()
        new = _with_new_class(zx, (k * reach_x + row_bias) / temperature).mean()
        scores.append(float((classes * kept + new) / (classes + 1)))
    best = int(np.argmax(scores))
    return float(factors[best]), {"balance_factor": float(factors[best]), "held_out_photos": int(len(held_out)),
                                  "expected_accuracy": scores[best], "expected_accuracy_unscaled":
                                      scores[int(np.argmin(np.abs(np.log(factors))))]}


def _edit_graph(model_bytes: bytes, vectors: np.ndarray, mirrored: np.ndarray, classes: int,
                references: tuple[np.ndarray, np.ndarray] | None = None,
                held_out: tuple[np.ndarray, np.ndarray] | None = None, temperature: float = 1.0) -> tuple[bytes, dict]:
    """model.onnx with one more class: the prototype row (from the photos' embeddings ``vectors`` and their mirror
    images' ``mirrored``) appended to the head's weights and bias."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    weight_name, bias_name, rows_first = _head(model)
    inits = {i.name: i for i in model.graph.initializer}
    weight = numpy_helper.to_array(inits[weight_name])
    rows = weight if rows_first else weight.T          # C x D
    if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[0] != classes:
        raise AddClassError(f"cannot add a class: the head's weights are {rows.dtype} {list(rows.shape)}, not a "
                            f"float32 {classes} x D matrix (an int8 head, or labels that do not match the graph)")
    if rows.shape[1] != vectors.shape[1]:
        raise AddClassError(f"the head reads {rows.shape[1]} features but the embedding has {vectors.shape[1]}")
    bias = numpy_helper.to_array(inits[bias_name]).astype(np.float32) if bias_name else np.zeros(classes, np.float32)
    if bias.shape != (classes,):
        raise AddClassError(f"cannot add a class: the head's bias has shape {list(bias.shape)}, not [{classes}]")
    row, new_bias, fit = prototype_row(rows, bias, np.concatenate([vectors, mirrored]), references)
    if held_out is not None and len(held_out[0]) and held_out[0].shape[1] == rows.shape[1] and fit["centred"]:
        keep = [np.arange(len(vectors)) != i for i in range(len(vectors))]
        left_out_rows = np.stack([prototype_row(rows, bias, np.concatenate([vectors[m], mirrored[m]]), references)[0]
                                  for m in keep])
        factor, balance = balance_factor(rows, bias, row, new_bias, *held_out, left_out_rows,
                                         np.stack([vectors, mirrored], axis=1), temperature)
        row, fit = (factor * row).astype(np.float32), {**fit, **balance}
    new_rows = np.concatenate([rows, row[None]])
    inits[weight_name].CopyFrom(numpy_helper.from_array(new_rows if rows_first else np.ascontiguousarray(new_rows.T),
                                                        weight_name))
    if bias_name:
        inits[bias_name].CopyFrom(numpy_helper.from_array(np.append(bias, new_bias).astype(np.float32), bias_name))
    # shapes recorded for the class axis no longer hold: drop intermediate hints, fix the outputs' class axis
    del model.graph.value_info[:]
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name != EMBEDDING and len(dims) > 1 and dims[1].HasField("dim_value") and dims[1].dim_value == classes:
            dims[1].dim_value = classes + 1
    onnx.checker.check_model(model)
    head = {"weight": weight_name, "bias": bias_name, **fit, "bias_value": new_bias,
            "row_norm": float(np.linalg.norm(row))}
    return model.SerializeToString(), head


# --- the photos --------------------------------------------------------------------------------------
def _photos(paths: list[Path], preprocess: dict) -> tuple[np.ndarray, list[dict]]:
    """N x S x S x 3 uint8 items, as serving makes them, and [{"file", "sha256"}]; bad photos named."""
    if not MIN_PHOTOS <= len(paths) <= MAX_PHOTOS:
        raise _usage(f"{len(paths)} photos: a new class needs {MIN_PHOTOS} to {MAX_PHOTOS}")
    size, resize = int(preprocess["size"]), str(preprocess.get("resize", "crop"))
    limits = images.DEFAULT_LIMITS
    items, facts, bad, seen = [], [], [], set()
    for path in paths:
        try:
            data = images.read_file(Path(path), limits.max_bytes)
            items.append(images.decode_fitted(data, size, resize, limits=limits, name=str(path)))
        except (SnapidError, OSError) as exc:
            bad.append(f"{path}: {exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            bad.append(f"{path}: the same photo twice")
            continue
        seen.add(digest)
        facts.append({"file": Path(path).name, "sha256": digest})
    if bad:
        raise AddClassError("photos refused, nothing was written:\n  " + "\n  ".join(bad), code="bad_photo")
    return np.stack(items), facts


# --- the bundle --------------------------------------------------------------------------------------
def _reference_doc(bundle: Bundle) -> dict | None:
    """references.json, or None when the bundle has no reference index."""
    return json.loads(bundle.file(REF_JSON).read_bytes()) if REF_JSON in bundle.manifest["files"] else None


def _references(bundle: Bundle, doc: dict | None, class_index: int, label_id: str, uint8: np.ndarray,
                vectors: np.ndarray) -> dict:
    """references.* with the new photos appended (when the bundle has an index, ``doc`` its references.json)."""
    if doc is None:
        return {}
    matrix = np.load(bundle.file(REF_NPY), allow_pickle=False)
    blob = bundle.file(REF_JPG).read_bytes()
    offset, thumbs, new_items = len(blob), [], []
    for image in uint8[:doc.get("per_class", 20)]:
        jpeg = _thumbnail(image)
        ident = hashlib.sha256(f"{label_id}\0".encode() + jpeg).hexdigest()[:24]
        new_items.append({"id": ident, "class": class_index, "offset": offset, "bytes": len(jpeg)})
        thumbs.append(jpeg)
        offset += len(jpeg)
    doc = {**doc, "items": doc["items"] + new_items}
    matrix = np.concatenate([matrix, _unit(vectors[:len(new_items)]).astype(np.float16)])
    buf = io.BytesIO()
    np.save(buf, matrix, allow_pickle=False)
    return {REF_JSON: json.dumps(doc, separators=(",", ":")).encode(), REF_NPY: buf.getvalue(),
            REF_JPG: blob + b"".join(thumbs)}


def _index(bundle: Bundle, doc: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference index's unit embeddings and the class of each, or None when the bundle has none."""
    if doc is None:
        return None
    items = doc["items"]
    vectors = _unit(np.load(bundle.file(REF_NPY), allow_pickle=False).astype(np.float32))
    return vectors, np.asarray([int(i["class"]) for i in items], dtype=np.int64)


def _held_out(bundle: Bundle, doc: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The held-out slice's raw embeddings and classes, or None when the bundle has none (an older export, or a
    dataset without validation photos)."""
    if doc is None or REF_HELD_OUT not in bundle.manifest["files"]:
        return None
    classes = doc.get("held_out", {}).get("classes", [])
    vectors = np.load(bundle.file(REF_HELD_OUT), allow_pickle=False).astype(np.float32)
    if len(classes) != len(vectors):
        raise AddClassError(f"{REF_HELD_OUT}: {len(vectors)} embeddings but {len(classes)} classes in {REF_JSON}")
    return vectors, np.asarray(classes, dtype=np.int64)


def _card(card: str, name: str, version: str, facts: list[dict], head: dict, wins: int) -> str:
    how = "centred on the reference photos' mean" if head["centred"] else "uncentred (no reference photos)"
    if "balance_factor" in head:
        how += (f", its scale (x{head['balance_factor']:.3g}) chosen for the best expected accuracy over all classes "
                f"on {head['held_out_photos']} held-out photos of the others and its own photos left out in turn")
    lines = [f"\n## Class added without retraining: {name}\n",
             f"`{name}` was added to version {version} by `snapid add-class` from {len(facts)} photos, as a "
             f"prototype: {METHOD}, {how}, row norm {head['row_norm']:.4g}, bias {head['bias_value']:.4g}. It was not "
             f"trained, and the figures above do not include it; it wins {wins} of its {len(facts)} photos. "
             "Photos (sha256):\n"]
    lines += [f"- {f['file']}: `{f['sha256']}`" for f in facts]
    return card.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


def add_class(bundle_path: Path | str, name: str, photos: list[Path], *, out: Path | None = None) -> Bundle:
    """Append class ``name``, made from ``photos`` (5-20), to the bundle at ``bundle_path``; write the new version
    at ``out`` (default: in place, atomically) and return it. Two add-class runs on one bundle (two review-page
    workers, two terminals) take turns, so neither loses the other's class."""
    folder = Path(out or bundle_path)  # the folder written, whose parent holds its staging copy too
    with exclusive_lock(folder.parent / f".{folder.name}.add-class.lock"):
        return _add_class(bundle_path, name, photos, out=out)


def _add_class(bundle_path: Path | str, name: str, photos: list[Path], *, out: Path | None) -> Bundle:
    bundle = load_bundle(bundle_path)
    if bundle.path != Path(bundle_path):
        raise _usage(f"{bundle_path}: add-class edits a bundle folder; unpack the .snapid file first")
    name = name.strip()
    if not name:
        raise _usage("the class name is empty")
    taken = {str(v).casefold() for c in bundle.labels for v in (c.get("name"), c.get("id"))}
    label_id = _slug(name)
    if name.casefold() in taken or label_id.casefold() in taken:
        raise _usage(f"{name!r}: the bundle already has a class of that name or id")
    if bundle.manifest.get("members"):
        raise AddClassError("cannot add a class to an ensemble: its members' embeddings live in different spaces")
    uint8, facts = _photos(list(photos), bundle.preprocess)
    inputs = geometry.normalise(uint8, bundle.preprocess["mean"], bundle.preprocess["std"])
    session = ort.InferenceSession(str(bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
    if EMBEDDING not in {o.name for o in session.get_outputs()}:
        raise AddClassError(f"the bundle's graph has no {EMBEDDING!r} output (pooled features), so a new class has "
                            "no embedding to be built from; export the run again with a current snapid")
    vectors = _embeddings(session, inputs)
    # each photo mirrored too: a bird or a landmark seen from the other side is the same class, and 5 photos
    # make a noisy mean (measured on birds100: 0.551 -> 0.568 top-1 on added species, the same drop; benchmarks.md)
    mirrored = _embeddings(session, np.ascontiguousarray(inputs[..., ::-1]))
    classes, doc = len(bundle.labels), _reference_doc(bundle)
    model_bytes, head = _edit_graph(bundle.file("model.onnx").read_bytes(), vectors, mirrored,
                                    classes, _index(bundle, doc), _held_out(bundle, doc),
                                    float(bundle.calibration.get("temperature", 1.0)))
    new_session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    logits = new_session.run([LOGITS], {INPUT: inputs})[0]
    if logits.shape[1] != classes + 1:
        raise AddClassError(f"the edited graph gives {logits.shape[1]} classes, expected {classes + 1}")
    wins = int((logits.argmax(axis=1) == classes).sum())

    files = {n: bundle.file(n).read_bytes() for n in REQUIRED + OPTIONAL if n in bundle.manifest["files"]}
    files["model.onnx"] = model_bytes
    labels = [*bundle.labels, {"index": classes, "id": label_id, "name": name, "display_names": {}}]
    files["labels.json"] = json.dumps({"classes": labels}, ensure_ascii=False, indent=1).encode()
    files.update(_references(bundle, doc, classes, label_id, uint8, vectors))
    if bundle.knowledge is not None and isinstance(bundle.knowledge.get("cards"), dict):
        note = f"from {len(facts)} photos with snapid add-class (not trained)"
        card = {**Card(class_id=label_id, fields={"added": note}).as_dict(), "name": name, "wikipedia": {},
                "taxonomy": []}
        snapshot = {**bundle.knowledge, "cards": {**bundle.knowledge["cards"], label_id: card}}
        files["knowledge.json"] = json.dumps(snapshot, ensure_ascii=False, indent=1).encode()
    stamp = datetime.now(UTC)
    version = f"{bundle.name}-{stamp:%Y%m%d%H%M%S}+{label_id}"
    entry = {"name": name, "id": label_id, "index": classes, "method": METHOD,
             "at": stamp.isoformat(timespec="seconds"), "photos": facts, "wins_own_photos": wins, "head": head,
             "from_version": bundle.version, "from_manifest_sha256": bundle.sha256}
    files["card.md"] = _card(files["card.md"].decode(), name, version, facts, head, wins).encode()
    keep = {k: v for k, v in bundle.manifest.items()
            if k not in ("format", "format_version", "snapid_version", "created_at", "files")}
    info = {**keep, "version": version, "classes": classes + 1,
            "added_classes": [*keep.get("added_classes", []), entry]}
    if REF_JSON in files:
        doc = json.loads(files[REF_JSON])
        info["references"] = {**info.get("references", {}), "photos": len(doc["items"]),
                              "classes": len({i["class"] for i in doc["items"]}),
                              "bytes": sum(len(files[k]) for k in (REF_JSON, REF_NPY, REF_JPG))}
    return write_bundle(Path(out) if out else bundle.path, files, info=info)

