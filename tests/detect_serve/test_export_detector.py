"""Detector export: the ONNX graph matches torch on real photos, a drifting graph is refused, and
`snapid export RUN --detector DET` refuses a detector that is not a detect run of the same dataset."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from snapid.export import detector as det_export
from snapid.export.onnx import ExportError, ParityError, make_session
from tests.detect_serve.conftest import SIZE, spread_heads, squares_photo

META = {"size": SIZE, "score_threshold": 0.3, "nms_iou": 0.5, "class_agnostic": True, "classes": ["object"], "pad": 0.1}


@pytest.fixture(scope="module")
def photos():
    return [det_export.letterboxed(squares_photo(size=(200 - 20 * i, 120 + 10 * i)), SIZE) for i in range(3)]


def test_exported_detector_matches_torch(torch_detector, photos):
    onnx_bytes, spec = det_export.build_files(torch_detector, META, photos, run="det", pad=0.15)
    assert {k: spec[k] for k in ("size", "letterbox", "score_threshold", "class_agnostic", "classes", "pad",
                                 "max_objects", "run")} == {"size": SIZE, "letterbox": True, "score_threshold": 0.3,
                                                            "class_agnostic": True, "classes": ["object"], "pad": 0.15,
                                                            "max_objects": 20, "run": "det"}
    parity = spec["parity"]
    assert parity["images"] == 3 and parity["detections"] > 0  # the check compared real detections
    assert parity["max_box_diff"] <= 1e-3 * SIZE and parity["max_score_diff"] <= 1e-4
    session = make_session(onnx_bytes)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels"]
    boxes, scores, labels = session.run(None, {"image": photos[0]})
    assert boxes.shape[1] == 4 and len(boxes) == len(scores) == len(labels) and labels.dtype == np.int64
    assert (boxes >= -1e-3).all() and (boxes <= SIZE + 1e-3).all()


def test_a_graph_that_drifts_from_torch_is_refused(torch_detector, photos):
    session = make_session(det_export.to_onnx(torch_detector, SIZE))
    drifted = spread_heads(copy.deepcopy(torch_detector), seed=7)  # what the graph should have computed
    with pytest.raises(ParityError, match="does not match torch on parity photo 0"):
        det_export.check_parity(session, drifted, photos, floor=0.3)
    with pytest.raises(ParityError, match="no photos"):
        det_export.check_parity(session, torch_detector, [], floor=0.3)


def test_detector_json_rejects_out_of_range_values():
    with pytest.raises(ExportError, match="score_threshold 1.5"):
        det_export.detector_json({**META, "score_threshold": 1.5}, run="det", pad=0.1)


def test_export_refuses_a_classifier_as_detector_and_another_datasets_detector(make_run, home, engine):
    from snapid.export.from_run import export_run
    from snapid.track import runs as track
    from snapid.track.db import transaction

    make_run("clf")
    with pytest.raises(ExportError, match="a train run on dataset 'shapes'; expected a detect run"):
        export_run("clf", workspace=home, engine=engine, detector="clf")
    with transaction(engine) as s:
        track.create_run(s, name="det-other", dataset="fruits", dataset_version=1, model="fasterrcnn_mobilenet_v2",
                         config={}, run_dir=str(home.runs / "det-other"), monitor="map50", kind="detect")
    with pytest.raises(ExportError, match="on dataset 'fruits'; expected a detect run on 'shapes'"):
        export_run("clf", workspace=home, engine=engine, detector="det-other")
    assert not (home.bundles / "clf").exists()  # refused before anything was written
    with pytest.raises(ExportError, match="not a detector"):
        det_export.export_detector("clf", workspace=home, engine=engine)


@pytest.mark.parametrize("arch", ["fasterrcnn_mobilenet_v2_s16", "ssdlite_mobilenet_v2", "retinanet_mobilenet_v2",
                                  "fcos_mobilenet_v2"])
def test_the_other_architectures_export_with_parity(photos, arch):
    """Every architecture besides the default (tested above) goes through the same export."""
    import torch

    from snapid.detect.models import build_detector

    torch.manual_seed(0)
    model = build_detector(arch, 2, pretrained_backbone=True, size=SIZE)
    model = spread_heads(model) if arch.startswith("fasterrcnn") else model.eval()
    if arch.startswith("retinanet"):  # its prior (scores near 0.01) is under the model's own 0.05 floor
        torch.nn.init.zeros_(model.head.classification_head.cls_logits.bias)
    _, spec = det_export.build_files(model, dict(META, score_threshold=0.01), photos, run=arch, pad=0.15)
    assert spec["parity"]["detections"] > 0 and spec["parity"]["max_score_diff"] <= 1e-4
