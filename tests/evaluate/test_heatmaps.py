"""Heatmaps over the mistakes gallery (issue 19): exact CAM for a linear head, Grad-CAM for an MLP head, drawn in
the run report beside each mistake's thumbnail."""

from __future__ import annotations

import base64
import io

from PIL import Image

from snapid.evaluate.heatmaps import add_heatmaps
from snapid.evaluate.loaded import load_trained, split_dataset


def _rows(trained, n: int = 3) -> list[dict]:
    ids = [c["id"] for c in trained.classes]
    return [{"position": i, "pred": ids[(i + 1) % len(ids)], "pred_name": ids[(i + 1) % len(ids)]} for i in range(n)]


def test_mistakes_get_cam_heatmaps_for_a_linear_head_and_grad_cam_for_an_mlp(make_run, home, engine):
    make_run("lin", probe_epochs=1, size=48)
    make_run("mlp", probe_epochs=1, size=48, head="mlp", head_dims=[8])
    for name, method in (("lin", "cam"), ("mlp", "grad-cam")):
        trained = load_trained(name, engine=engine)
        rows = _rows(trained)
        add_heatmaps(trained, split_dataset(trained, "test", workspace=home, engine=engine), rows, trained.classes)
        for row in rows:
            assert row["heatmap_method"] == method
            image = Image.open(io.BytesIO(base64.b64decode(row["heatmap"].split(",", 1)[1])))
            assert image.format == "JPEG" and max(image.size) <= 96


def test_the_report_shows_the_heatmap_beside_the_thumbnail():
    from snapid.run_report import _mistakes

    thumb = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0jpeg").decode()
    html = _mistakes({"mistakes": [{"position": 0, "true_name": "disc", "pred_name": "square", "score": 0.9,
                                    "loss": 2.0, "thumbnail": thumb, "heatmap": thumb, "heatmap_method": "cam"}]}, "r0")
    assert html.count("<img") == 2 and 'alt="where the model looked for square (cam)"' in html
    hostile = _mistakes({"mistakes": [{"position": 0, "true_name": "a", "pred_name": "b", "score": 0.9, "loss": 2.0,
                                       "thumbnail": thumb, "heatmap": "javascript:alert(1)"}]}, "r0")
    assert hostile.count("<img") == 1 and "javascript" not in hostile
