"""Benchmark companion to add_class.py: other ways to make the new class's head row, on the same trained bundle.

`benchmarks/add_class.py --home HOME` trains on 90 birds100 species and exports HOME/bundle0. This script embeds,
with that bundle's graph and serving's preprocessing, the 90 species' test photos and the 10 held-out species'
train and test photos (each also mirrored), then adds all 10 classes at once in NumPy by each variant below, for
3 seeded draws of 5 photos a species, and prints the drop on the 90 and the top-1 on the added 10 (mean of draws).

    .venv/bin/python benchmarks/add_class.py --home /tmp/ac --json add_class.json
    .venv/bin/python benchmarks/add_class_variants.py --home /tmp/ac          # about 10 minutes on 2 cores

Variants: "level" is what `snapid add-class` does (export/add_class.py prototype_row), times a factor k; "+mirror"
adds the mirrored photos to the 5; "logistic" fits only the new row (weights and bias, the trained rows fixed) by
softmax cross-entropy on the 5 photos against the bundle's reference photos, from the level row, by gradient
descent (steps, learning rate); "LOO" scales the row so that its mean logit on each photo left out of its own
prototype matches the trained classes' mean logit on their own test photos (which a bundle does not carry).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from add_class import DATASETS  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)


def unit(rows):
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def embed(bundle: Path, species_dirs: dict[str, list[Path]]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    from snapid.export.bundle import load_bundle
    from snapid.images import DEFAULT_LIMITS
    from snapid.serve.services.preprocess import PreprocessSpec, prepare_photo

    spec = PreprocessSpec.from_bundle(load_bundle(bundle).preprocess)
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    out = {}
    for key, paths in species_dirs.items():
        x = np.stack([prepare_photo(p.read_bytes(), spec, DEFAULT_LIMITS) for p in paths])
        for suffix, batch in (("", x), ("/mirror", np.ascontiguousarray(x[..., ::-1]))):
            out[key + suffix] = np.concatenate([session.run(["embedding"], {"images": batch[i:i + 32]})[0]
                                                for i in range(0, len(batch), 32)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="the --home of a finished add_class.py run")
    parser.add_argument("--set", default="birds100")
    args = parser.parse_args()
    import onnx
    from onnx import numpy_helper

    from snapid.export.add_class import prototype_row

    bundle = args.home / "bundle0"
    labels = json.loads((bundle / "labels.json").read_text())["classes"]
    names = [c["name"] for c in labels]
    source = DATASETS / args.set
    added = sorted(set(p.name for p in (source / "train").iterdir() if p.is_dir()) - set(names))
    model = onnx.load(str(bundle / "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    gemm = next(n for n in model.graph.node if "logits" in n.output)
    W, bias = inits[gemm.input[1]], inits[gemm.input[2]]
    refs = np.load(bundle / "references.npy").astype(np.float32)
    ref_class = np.array([i["class"] for i in json.loads((bundle / "references.json").read_text())["items"]])
    print(f"embedding the test photos of {len(names)} species and the photos of {len(added)} held out ...", flush=True)
    e = embed(bundle, {**{f"kept/{n}": sorted((source / "test" / n).glob("*.jpg")) for n in names},
                       **{f"train/{n}": sorted((source / "train" / n).glob("*.jpg")) for n in added},
                       **{f"test/{n}": sorted((source / "test" / n).glob("*.jpg")) for n in added}})
    C, mu, mean_bias = len(names), refs.mean(0), float(bias.mean())
    K = np.concatenate([e[f"kept/{n}"] for n in names])
    Ky = np.concatenate([np.full(len(e[f"kept/{n}"]), i) for i, n in enumerate(names)])
    T = np.concatenate([e[f"test/{n}"] for n in added])
    Ty = np.concatenate([np.full(len(e[f"test/{n}"]), C + j) for j, n in enumerate(added)])
    base = float((np.argmax(K @ W.T + bias, 1) == Ky).mean())
    own_test = float(np.mean([(e[f"kept/{n}"] @ W[i] + bias[i]).mean() for i, n in enumerate(names)]))

    def direction(E):
        return unit((unit(E).mean(0) - mu)[None])[0]

    def level_row(E, k=1.0):  # what `snapid add-class` computes, times k
        row, row_bias, _ = prototype_row(W, bias, E, (unit(refs), ref_class))
        return k * row, row_bias

    def logistic_row(E, steps, lr):
        w, b = level_row(E)
        X = np.concatenate([E, refs * np.linalg.norm(E, axis=1).mean()])
        y = np.concatenate([np.full(len(E), C), ref_class])
        weights = np.concatenate([np.full(len(E), len(refs) / len(E) / C), np.ones(len(refs))])  # one class's worth
        weights /= weights.sum()
        fixed = X @ W.T + bias
        for _ in range(steps):
            z = np.concatenate([fixed, (X @ w + b)[:, None]], 1)
            p = np.exp(z - z.max(1, keepdims=True))
            g = weights * (p[:, C] / p.sum(1) - (y == C))
            w, b = w - lr * (g @ X), b - lr * float(g.sum())
        return w, b

    def loo_row(E):
        u = direction(E)  # prototype_row's direction
        reach = np.mean([E[i] @ direction(np.delete(E, i, 0)) for i in range(len(E))])
        return (own_test - mean_bias) / reach * u, mean_bias

    variants = {"level (snapid add-class)": lambda E, M: level_row(E),
                "level +mirror": lambda E, M: level_row(np.concatenate([E, M])),
                **{f"level x{k}": (lambda E, M, k=k: level_row(E, k)) for k in (1.1, 1.2)},
                "logistic 300 steps, lr 0.05, +mirror": lambda E, M: logistic_row(np.concatenate([E, M]), 300, 0.05),
                "logistic 1000 steps, lr 0.2, +mirror": lambda E, M: logistic_row(np.concatenate([E, M]), 1000, 0.2),
                "LOO to the test-photo level": lambda E, M: loo_row(E)}
    rng = np.random.default_rng(0)
    draws = [[rng.choice(len(e[f"train/{n}"]), 5, replace=False) for n in added] for _ in range(3)]
    print(f"the {C} trained species' top-1 before: {base:.4f}")
    print(f"{'variant':40s} {'drop (points)':>14s} {'added top-1':>12s}  per draw")
    for name, make in variants.items():
        scores = []
        for draw in draws:
            made = [make(e[f"train/{n}"][d], e[f"train/{n}/mirror"][d]) for n, d in zip(added, draw, strict=True)]
            rows, biases = zip(*made, strict=True)
            W2, b2 = np.concatenate([W, np.stack(rows)]), np.concatenate([bias, np.array(biases, np.float32)])
            kept = float((np.argmax(K @ W2.T + b2, 1) == Ky).mean())
            scores.append((100 * (base - kept), float((np.argmax(T @ W2.T + b2, 1) == Ty).mean())))
        s = np.array(scores)
        print(f"{name:40s} {s[:, 0].mean():14.2f} {s[:, 1].mean():12.3f}  {' '.join(f'{a:.3f}' for a in s[:, 1])}",
              flush=True)


if __name__ == "__main__":
    main()
