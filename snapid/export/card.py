"""The model card (card.md in every bundle): what the model was trained on, how, how well it does, how
its scores are calibrated, and what it is for. Pure: facts in, Markdown out.

Nothing is escaped (it is read as text, and the dashboard renders it escaped), but every string a user
chose (run, dataset and class names) is flattened to one bounded line and placed on a line that starts
with a list marker of ours, so a name can never open a heading, a table or a code block that
swallows the rest of the card.

The card opens with Hugging Face model-card metadata (YAML front matter, written with yaml.safe_dump so no
name can break out of it): library_name, pipeline_tag (image-classification, or object-detection for a bundle
with a detector), license, tags, datasets and a model-index with the recorded figures per split, so the bundle
folder can be pushed to a model hub as it is (pushing stays the user's step).
"""

from __future__ import annotations

import math
import re

import yaml

MAX_NAME_CHARS = 200
MAX_CLASSES_LISTED = 200
METRIC_ROWS = (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy"), ("macro_top1", "macro top-1 (mean per class)"),
               ("macro_f1", "macro F1"), ("balanced_accuracy", "balanced accuracy"),
               ("ece", "expected calibration error (calibrated)"), ("ece_uncalibrated", "ECE before calibration"),
               ("n", "images"))


def user_line(value) -> str:
    """A user-chosen string as one line of at most MAX_NAME_CHARS characters."""
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS - 1] + "…"


def _number(value) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4f}"
    return "-"


def model_card(*, title: str, version: str, run: dict, model: dict, preprocess: dict, classes: list[dict],
               split_sizes: dict[str, int], metrics: dict[str, dict], calibration: dict, export: dict,
               members: list[dict] | None = None, license: str | None = None,
               detector_metrics: dict[str, dict] | None = None) -> str:
    """The card. ``metrics``: {source label: {headline figures}} (evaluation artifacts, or the run summary);
    ``export``: format, int8 report, parity, and ``detector`` (True for a bundle with a detector); ``members``:
    for an ensemble, [{name, model, weight, temperature}]; ``license``: a Hub license id (default unknown);
    ``detector_metrics``: {split: {map50, map}} of the bundle's detector."""
    meta = front_matter(title=title, run=run, model=model, metrics=metrics, export=export, members=members,
                        license=license, detector_metrics=detector_metrics)
    parts = [meta + f"# Model card\n\n- bundle: {user_line(title)}\n- version: {user_line(version)}\n",
             _data(run, classes, split_sizes), _training(run, model, preprocess, members),
             _metrics(metrics), _calibration(calibration), _export(export), _use()]
    return "\n".join(parts)


# --- Hugging Face metadata ----------------------------------------------------------------------------
# The Hub's license identifiers (https://huggingface.co/docs/hub/repositories-licenses). "unknown" when none was
# given; any other value is written as "other" with license_name, as the Hub asks.
HUB_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib
pddl lgpl-lr deepfloyd-if-license llama2 gemma unknown other
""".split())
# recorded figure → (metric type, display name, args) in the model-index; types are the Hub's metric ids
INDEX_METRICS = (("top1", "accuracy", "top-1 accuracy", None),
                 ("top5", "top_k_accuracy", "top-5 accuracy", {"k": 5}),
                 ("macro_top1", "accuracy", "macro top-1 (mean per class)", {"average": "macro"}),
                 ("macro_f1", "f1", "macro F1", {"average": "macro"}),
                 ("balanced_accuracy", "balanced_accuracy", "balanced accuracy", None),
                 ("ece", "ece", "expected calibration error (calibrated)", {"calibrated": True}),
                 ("ece_uncalibrated", "ece", "ECE before calibration", {"calibrated": False}))
DETECTOR_METRICS = (("map50", "map", "mAP@0.5", {"iou": 0.5}), ("map", "map", "mAP@0.5:0.95", {"iou": "0.5:0.95"}))


def license_fields(license: str | None) -> dict:
    """license (and license_name for one the Hub does not list) for the front matter."""
    given = user_line(license or "").strip()
    if not given:
        return {"license": "unknown"}
    if given.lower() in HUB_LICENSES:
        return {"license": given.lower()}
    return {"license": "other", "license_name": given}


def front_matter(*, title: str, run: dict, model: dict, metrics: dict[str, dict], export: dict,
                 members: list[dict] | None = None, license: str | None = None,
                 detector_metrics: dict[str, dict] | None = None) -> str:
    """The YAML front matter (between --- lines) a model hub reads: what the model is and how well it does."""
    detector = bool(export.get("detector"))
    dataset = user_line(run.get("dataset", "")) or "unnamed"
    version = int(run.get("dataset_version") or 0)
    named = str(model.get("model") or run.get("model") or "")
    backbones = [m["model"] for m in members] if members else named.split("+")
    tags = ["snapid", "image-classification", *(["object-detection"] if detector else []), str(export["format"]),
            *(["int8"] if export.get("int8") else []), *(["ensemble"] if members else []),
            *(user_line(b) for b in backbones if b)]
    results = _results(metrics, INDEX_METRICS, "image-classification", "Image Classification", dataset, version)
    results += _results(detector_metrics or {}, DETECTOR_METRICS, "object-detection", "Object Detection", dataset,
                        version)
    data = {"library_name": "snapid", "pipeline_tag": "object-detection" if detector else "image-classification",
            **license_fields(license), "tags": list(dict.fromkeys(tags)), "datasets": [dataset]}
    types = list(dict.fromkeys(m["type"] for r in results for m in r["metrics"]))
    if types:
        data["metrics"] = types
    if results:
        data["model-index"] = [{"name": user_line(title), "results": results}]
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=float("inf"), default_flow_style=False)
    return f"---\n{text}---\n\n"


def _results(metrics: dict[str, dict], table: tuple, task: str, task_name: str, dataset: str, version: int) -> list:
    """One model-index result per source of figures (test, val, or a training summary) that has any."""
    out = []
    for source, figures in metrics.items():
        split = str(source).split()[0] if str(source).split() else "test"
        rows = []
        for key, kind, name, args in table:
            value = figures.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                row = {"type": kind, "value": round(float(value), 6), "name": name}
                rows.append({**row, "args": args} if args else row)
        if rows:
            out.append({"task": {"type": task, "name": task_name},
                        "dataset": {"name": user_line(f"{dataset} version {version}, {source}"), "type": dataset,
                                    "split": split, "revision": str(version)},
                        "metrics": rows})
    return out


def _data(run: dict, classes: list[dict], split_sizes: dict[str, int]) -> str:
    lines = ["## Data", "", f"- dataset: {user_line(run.get('dataset', ''))}", "",
             f"Dataset version {int(run.get('dataset_version') or 0)}; "
             + ", ".join(f"{split} {split_sizes.get(split, 0)} images" for split in ("train", "val", "test")) + ".", "",
             f"{len(classes)} classes (index, id, name):", ""]
    for i, cls in enumerate(classes[:MAX_CLASSES_LISTED]):
        name = cls.get("name") if cls.get("name") and cls.get("name") != cls.get("id") else None
        lines.append(f"- {i}: {user_line(cls.get('id', ''))}" + (f" — {user_line(name)}" if name else ""))
    if len(classes) > MAX_CLASSES_LISTED:
        lines.append(f"- … and {len(classes) - MAX_CLASSES_LISTED} more (labels.json lists them all)")
    return "\n".join(lines) + "\n"


def _training(run: dict, model: dict, preprocess: dict, members: list[dict] | None) -> str:
    config = run.get("config") or {}
    lines = ["## Training", ""]
    if members:
        lines += [f"An ensemble ({config.get('method', 'soft')} voting) of {len(members)} runs; its output is the "
                  "log of the weighted average of the members' temperature-scaled probabilities. "
                  "Members (name, backbone, weight, temperature):", ""]
        for m in members:
            lines.append(f"- weight {m['weight']:.4f}, temperature {m['temperature']:.4f}, backbone {m['model']}: "
                         f"{user_line(m['name'])}")
    else:
        weights = "pretrained ImageNet weights" if config.get("pretrained") else "trained from scratch"
        if config.get("weights"):
            weights = "weights from a local file"
        lines += [f"- backbone: {model.get('model', run.get('model'))} ({weights}); head {model.get('head', '-')}",
                  f"- recipe: {config.get('probe_epochs', '-')} probe epochs (frozen backbone), "
                  f"{config.get('finetune_epochs', '-')} fine-tune epochs; augmentation {config.get('augment', '-')}; "
                  f"batch {config.get('batch_size', '-')}; seed {config.get('seed', '-')}",
                  f"- best epoch {run.get('best_epoch', '-')} by {run.get('monitor', '-')}"]
    lines += [f"- input: {preprocess['size']} x {preprocess['size']} px, resize mode {preprocess['resize']}, "
              f"mean {list(preprocess['mean'])}, std {list(preprocess['std'])}"]
    return "\n".join(lines) + "\n"


def _metrics(metrics: dict[str, dict]) -> str:
    lines = ["## Metrics", ""]
    if not metrics:
        return "\n".join(lines + ["No evaluation recorded (run `snapid eval RUN`).", ""])
    sources = list(metrics)
    lines += ["| metric | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for key, label in METRIC_ROWS:
        if any(key in metrics[s] for s in sources):
            lines.append(f"| {label} | " + " | ".join(_number(metrics[s].get(key)) for s in sources) + " |")
    return "\n".join(lines) + "\n"


def _calibration(calibration: dict) -> str:
    lines = ["## Calibration", "",
             f"Probabilities are softmax(logits / {calibration['temperature']:.4f}) (temperature scaling fitted on "
             "the validation split; 1 means not calibrated).",
             f"Answers whose top probability is below {calibration['threshold']:.4f} are returned as \"unknown\"."]
    if calibration.get("target_accuracy") is not None:
        lines.append(f"The threshold targets {100 * calibration['target_accuracy']:.1f} % accuracy "
                     "on the accepted answers.")
    if calibration.get("val_ece_before") is not None and calibration.get("val_ece_after") is not None:
        lines.append(f"Validation ECE {calibration['val_ece_before']:.4f} before, "
                     f"{calibration['val_ece_after']:.4f} after.")
    return "\n".join(lines) + "\n"


def _export(export: dict) -> str:
    parity = export.get("parity") or {}
    lines = ["## Export", "", f"- format: {export['format']}",
             f"- parity with torch on {parity.get('images', 0)} validation images: max |probability difference| "
             f"{parity.get('max_abs_diff', float('nan')):.2g} (tolerance {parity.get('tolerance', float('nan')):g})"]
    int8 = export.get("int8")
    if int8:
        lines.append(f"- int8 (static, per-channel): top-1 {100 * int8['top1_int8']:.2f} % against fp32 "
                     f"{100 * int8['top1_fp32']:.2f} % on {int8['n']} validation images "
                     f"({int8['drop_points']:+.2f} points lost); {int8['ms_per_image_int8']} ms/image against "
                     f"{int8['ms_per_image_fp32']} ms at batch {int8['batch']} on the exporting machine")
    return "\n".join(lines) + "\n"


def _use() -> str:
    return "\n".join([
        "## Intended use and limits", "",
        "- Identifies photos as one of the classes listed above. It knows no other class: a photo of anything "
        "else gets the closest listed class, or \"unknown\" when its score is under the threshold.",
        "- The figures above hold for photos like those in the dataset (camera, lighting, framing, region). "
        "Expect lower accuracy on photos that differ, and check a sample of your own before relying on it.",
        "- Small classes (see the per-class figures in the evaluation report) are the least reliable.",
        "- It is an aid for a person, not an authority: do not use it alone where a wrong answer causes harm "
        "(for example, deciding whether something is safe to eat or take).", ""])
