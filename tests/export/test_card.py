"""card.md carries Hugging Face model-card metadata (YAML front matter) that huggingface_hub's own parser reads:
library_name, pipeline_tag, license, tags, datasets and a model-index with the recorded figures."""

from __future__ import annotations

import pytest

from snapid.export.card import license_fields, model_card

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import ModelCard  # noqa: E402
from huggingface_hub.repocard_data import model_index_to_eval_results  # noqa: E402

RUN = {"dataset": "plants", "dataset_version": 3, "model": "mobilenet_v2", "best_epoch": 4, "monitor": "val_top1",
       "config": {"pretrained": True, "probe_epochs": 5, "finetune_epochs": 0, "augment": "light", "batch_size": 32,
                  "seed": 0}}
METRICS = {"test": {"top1": 0.91, "top5": 0.99, "macro_top1": 0.88, "macro_f1": 0.875, "balanced_accuracy": 0.88,
                    "ece": 0.031, "ece_uncalibrated": 0.09, "n": 120},
           "val": {"top1": 0.93, "macro_f1": float("nan")}}


def card(**overrides) -> str:
    args = dict(title="plants-v1", version="plants-v1-20260101", run=RUN,
                model={"model": "mobilenet_v2", "head": "linear"},
                preprocess={"size": 224, "resize": "crop", "mean": [0.5] * 3, "std": [0.5] * 3},
                classes=[{"id": "rose", "name": "rose"}, {"id": "tulip", "name": "Tulipa"}],
                split_sizes={"train": 80, "val": 10, "test": 10}, metrics=METRICS,
                calibration={"temperature": 1.3, "threshold": 0.4},
                export={"format": "onnx", "parity": {"images": 8, "max_abs_diff": 1e-6, "tolerance": 1e-4},
                        "int8": None})
    args.update(overrides)
    return model_card(**args)


def test_the_hub_parser_reads_the_metadata_and_the_results():
    text = card(license="apache-2.0")
    parsed = ModelCard(text)
    data = parsed.data
    assert data.library_name == "snapid" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0" and data.datasets == ["plants"]
    assert {"snapid", "image-classification", "onnx", "mobilenet_v2"} <= set(data.tags)
    results = data.eval_results
    test = {r.metric_name: r for r in results if r.dataset_split == "test"}
    assert test["top-1 accuracy"].metric_type == "accuracy" and test["top-1 accuracy"].metric_value == 0.91
    assert test["macro F1"].metric_type == "f1" and test["macro F1"].metric_args == {"average": "macro"}
    assert test["expected calibration error (calibrated)"].metric_value == 0.031
    assert all(r.task_type == "image-classification" and r.dataset_type == "plants" and r.dataset_revision == "3"
               for r in results)
    val = [r for r in results if r.dataset_split == "val"]
    assert [r.metric_name for r in val] == ["top-1 accuracy"]   # NaN figures are left out
    assert "images" not in {r.metric_name for r in results}     # a count, not a metric
    # the same through the lower-level converter, and the Markdown body is still the card
    name, again = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "plants-v1" and len(again) == len(results)
    assert parsed.text.lstrip().startswith("# Model card") and "## Intended use and limits" in parsed.text


def test_a_bundle_with_a_detector_is_an_object_detector():
    text = card(export={"format": "onnx", "parity": {}, "int8": None, "detector": True},
                detector_metrics={"test": {"map50": 0.8, "map": 0.55}})
    data = ModelCard(text).data
    assert data.pipeline_tag == "object-detection" and "object-detection" in data.tags
    found = {(r.task_type, r.dataset_split, r.metric_name): r.metric_value for r in data.eval_results}
    assert found[("object-detection", "test", "mAP@0.5")] == 0.8
    assert found[("object-detection", "test", "mAP@0.5:0.95")] == 0.55
    assert found[("image-classification", "test", "top-1 accuracy")] == 0.91


@pytest.mark.parametrize("given, expected", [
    (None, {"license": "unknown"}), ("", {"license": "unknown"}), ("MIT", {"license": "mit"}),
    ("cc-by-nc-4.0", {"license": "cc-by-nc-4.0"}),
    ("Our research licence", {"license": "other", "license_name": "Our research licence"}),
])
def test_license(given, expected):
    assert license_fields(given) == expected
    data = ModelCard(card(license=given)).data
    assert data.license == expected["license"] and getattr(data, "license_name", None) == expected.get("license_name")


def test_no_name_breaks_out_of_the_front_matter():
    hostile = "x\n---\nlicense: mit\npipeline_tag: text-generation\n# Title"
    text = card(title=hostile, run={**RUN, "dataset": hostile}, license="evil\n---\nlibrary_name: other")
    data = ModelCard(text).data
    assert data.library_name == "snapid" and data.pipeline_tag == "image-classification"
    assert data.license == "other" and "\n" not in data.license_name
    assert text.count("\n---\n") == 1   # the closing line of the front matter, and no other


def test_without_recorded_figures_there_is_no_model_index():
    data = ModelCard(card(metrics={})).data
    assert data.eval_results is None and data.library_name == "snapid"


def test_an_exported_bundle_card_parses(make_run, home, engine):
    from snapid.export.bundle import load_bundle
    from snapid.export.from_run import export_run

    make_run("a", probe_epochs=1)
    bundle = load_bundle(export_run("a", workspace=home, engine=engine, license="cc-by-4.0").path)
    data = ModelCard(bundle.file("card.md").read_text()).data
    assert data.library_name == "snapid" and data.pipeline_tag == "image-classification"
    assert data.license == "cc-by-4.0" and data.datasets == ["shapes"] and "custom_cnn" in data.tags
    assert data.eval_results and {r.dataset_split for r in data.eval_results} <= {"test", "val"}
    assert all(0.0 <= r.metric_value <= 1.0 for r in data.eval_results)
