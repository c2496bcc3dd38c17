"""snapid.geometry, the one place the decode size, box padding, crop, fit and normalisation rules live
(issue 18): the expected numbers were written from the code that prepare, serving and the detector each
held before they were moved here, so the move changed nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from snapid import geometry
from snapid.errors import ImageError
from tests.conftest import photo

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
STATS = [IMAGENET, ((0.5,) * 3, (0.5,) * 3), ((0.5,) * 3, (0.25,) * 3), ((0.1, 0.2, 0.3), (0.7, 0.05, 1.3))]


@pytest.mark.parametrize("width, height, box, size, resize, expected", [
    (4000, 3000, None, 224, "crop", (298, 224)),
    (4000, 3000, None, 224, "letterbox", (224, 168)),
    (4000, 3000, None, 96, "crop", (128, 96)),
    (4000, 3000, (10.0, 20.0, 110.0, 70.0), 224, "crop", (4000, 3000)),
    (4000, 3000, (0.0, 0.0, 1.0, 1.0), 224, "letterbox", (4000, 3000)),
    (4000, 3000, (12.5, 7.25, 400.75, 390.5), 224, "crop", (2337, 1753)),
    (4000, 3000, (12.5, 7.25, 400.75, 390.5), 224, "letterbox", (2307, 1730)),
    (4000, 3000, (12.5, 7.25, 400.75, 390.5), 96, "crop", (1001, 751)),
    (3000, 4000, None, 224, "crop", (224, 298)),
    (3000, 4000, None, 224, "letterbox", (168, 224)),
    (3000, 4000, (12.5, 7.25, 400.75, 390.5), 224, "letterbox", (1730, 2307)),
    (100, 50, None, 224, "crop", (100, 50)),
    (100, 50, (12.5, 7.25, 400.75, 390.5), 224, "crop", (58, 29)),
    (100, 50, (12.5, 7.25, 400.75, 390.5), 224, "letterbox", (57, 28)),
    (100, 50, (12.5, 7.25, 400.75, 390.5), 96, "crop", (25, 12)),
    (5000, 200, None, 224, "crop", (5000, 200)),
    (5000, 200, None, 224, "letterbox", (224, 8)),
    (5000, 200, None, 96, "crop", (2400, 96)),
    (5000, 200, (12.5, 7.25, 400.75, 390.5), 224, "letterbox", (2884, 115)),
    (33, 1000, None, 224, "letterbox", (7, 224)),
    (33, 1000, (12.5, 7.25, 400.75, 390.5), 224, "crop", (19, 584)),
    (33, 1000, (12.5, 7.25, 400.75, 390.5), 96, "crop", (8, 250)),
])
def test_decode_size(width, height, box, size, resize, expected):
    assert geometry.decode_size(width, height, box, size, resize) == expected


@pytest.mark.parametrize("box, pad, expected", [
    ((10, 20, 110, 70), 0.0, (10.0, 20.0, 110.0, 70.0)),
    ((10, 20, 110, 70), 0.1, (0.0, 10.0, 120.0, 80.0)),
    ((10, 20, 110, 70), 0.25, (0.0, 0.0, 135.0, 95.0)),
    ((10, 20, 110, 70), 2.0, (0.0, 0.0, 310.0, 270.0)),
    ((0.0, 0.0, 640.0, 480.0), 0.1, (0.0, 0.0, 640.0, 480.0)),
    ((600.5, 400.25, 639.0, 479.5), 0.0, (600.5, 400.25, 639.0, 479.5)),
    ((600.5, 400.25, 639.0, 479.5), 0.1, (592.575, 392.325, 640.0, 480.0)),
    ((600.5, 400.25, 639.0, 479.5), 0.25, (580.6875, 380.4375, 640.0, 480.0)),
    ((600.5, 400.25, 639.0, 479.5), 2.0, (442.0, 241.75, 640.0, 480.0)),
    ((100.3, 50.7, 100.9, 51.1), 0.1, (100.24, 50.64, 100.96000000000001, 51.160000000000004)),
    ((100.3, 50.7, 100.9, 51.1), 2.0, (99.09999999999998, 49.499999999999986, 102.10000000000002, 52.30000000000002)),
])
def test_padded_box(box, pad, expected):
    assert geometry.padded_box(box, pad, 640, 480) == expected
    assert geometry.padded_box(np.asarray(box, np.float64), pad, 640, 480) == expected


@pytest.mark.parametrize("region, sx, sy, expected", [
    ((10.0, 20.0, 110.0, 70.0), 1.0, 1.0, (10, 20, 110, 70)),
    ((10.0, 20.0, 110.0, 70.0), 0.25, 0.25, (2, 5, 28, 18)),
    ((33.3, 44.4, 255.5, 466.6), 0.5, 0.5, (17, 22, 128, 233)),
    ((0.0, 0.0, 0.4, 0.4), 1.0, 1.0, (0, 0, 1, 1)),
    ((592.575, 392.325, 640.0, 480.0), 0.125, 0.125, (74, 49, 80, 60)),
    ((100.24, 50.64, 100.96, 51.16), 0.5, 0.5, (50, 25, 51, 26)),
    ((79.0, 99.0, 281.0, 351.0), 0.25, 0.2503, (20, 25, 70, 88)),
])
def test_crop_rect(region, sx, sy, expected):
    assert geometry.crop_rect(region, sx, sy) == expected


@settings(max_examples=200, deadline=None)
@given(pad=st.floats(0, 2), fx=st.tuples(*[st.floats(0, 1)] * 4))
def test_a_padded_box_stays_inside_the_photo_and_crops_at_least_a_pixel(pad, fx):
    x1, x2 = sorted((fx[0] * 640, fx[1] * 640))
    y1, y2 = sorted((fx[2] * 480, fx[3] * 480))
    region = geometry.padded_box((x1, y1, x2, y2), pad, 640, 480)
    assert 0 <= region[0] <= x1 and 0 <= region[1] <= y1 and x2 <= region[2] <= 640 and y2 <= region[3] <= 480
    left, top, right, bottom = geometry.crop_rect(region)
    assert right > left and bottom > top


@pytest.mark.parametrize("w, h, size, expected", [
    (640, 480, 320, (0.5, (320, 240), (0, 40))),
    (480, 640, 320, (0.5, (240, 320), (40, 0))),
    (300, 200, 128, (0.4266666666666667, (128, 85), (0, 21))),
    (5000, 7, 224, (0.0448, (224, 1), (0, 111))),
    (100, 100, 64, (0.64, (64, 64), (0, 0))),
    (33, 1000, 97, (0.097, (3, 97), (47, 0))),
    (3, 2, 640, (213.33333333333334, (640, 427), (0, 106))),
])
def test_letterbox_layout(w, h, size, expected):
    assert geometry.letterbox_layout(w, h, size) == expected
    canvas = np.asarray(geometry.letterbox(Image.new("RGB", (w, h), (255, 255, 255)), size))
    (iw, ih), (left, top) = expected[1:]
    assert canvas.shape == (size, size, 3) and canvas[top:top + ih, left:left + iw].min() == 255
    assert canvas.sum() == 255 * 3 * iw * ih


def test_letterbox_of_a_draft_decode_uses_the_photo_s_layout():
    """A smaller decode of a 300 x 200 photo lands where the full-size photo's letterbox would."""
    draft = photo((150, 100), seed=2)
    canvas = np.asarray(geometry.letterbox(draft, 128, original=(300, 200)))
    assert canvas[:21].max() == 0 and canvas[21 + 85:].max() == 0 and canvas[21:21 + 85].max() > 0


def test_cut_and_fit_crops_the_box_at_the_draft_scale_then_fits():
    full = photo((640, 480), seed=1)
    draft = full.resize((160, 120))
    region = geometry.padded_box((10, 20, 110, 70), 0.1, 640, 480)
    for picture in (full, draft):
        scale = picture.size[0] / 640
        expected = np.asarray(geometry.fit(picture.crop(geometry.crop_rect(region, scale, scale)), 48, "crop"))
        got = geometry.cut_and_fit(picture, 640, 480, region, 48, "crop", where="p")
        assert got.dtype == np.uint8 and np.array_equal(got, expected)
    whole = geometry.cut_and_fit(draft, 640, 480, None, 32, "letterbox", where="p")
    assert np.array_equal(whole, np.asarray(geometry.letterbox(draft, 32)))


@pytest.mark.parametrize("decoded", [(320, 200), (1280, 960)])
def test_cut_and_fit_refuses_a_decode_that_is_not_of_the_imported_photo(decoded):
    with pytest.raises(ImageError, match="changed since import"):
        geometry.cut_and_fit(photo(decoded), 640, 480, None, 32, "crop", where="p.jpg")


@pytest.mark.parametrize("mode", ["crop", "letterbox"])
def test_fit_gives_a_square(mode):
    assert geometry.fit(photo((120, 60)), 64, mode).size == (64, 64)
    with pytest.raises(ValueError, match="resize mode"):
        geometry.fit(photo((120, 60)), 64, "stretch")


@pytest.mark.parametrize("shape, size", [((484, 324), 224), ((324, 484), 224), ((3000, 2000), 160), ((100, 60), 224),
                                         ((224, 300), 224), ((225, 224), 224), ((1000, 1000), 64)])
def test_short_side_crop_matches_resizing_the_whole_photo_then_cropping(shape, size):
    """Only the kept region is resampled, with the filter centres of the whole-photo resize: the same
    picture up to fixed-point rounding: on a 2:3 portrait a quarter of the values move by one level of
    255 and a few by up to five, with no shift either way."""
    im = photo(shape, seed=5)
    w, h = im.size
    scale = size / min(w, h)
    whole = im.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (whole.width - size) // 2, (whole.height - size) // 2
    expected = np.asarray(whole.crop((left, top, left + size, top + size)), dtype=np.int16)
    got = np.asarray(geometry.fit(im, size, "crop"), dtype=np.int16)
    assert got.shape == expected.shape == (size, size, 3)
    diff = np.abs(got - expected)
    assert diff.max() <= 8 and diff.mean() < 0.5 and abs(float((got - expected).mean())) < 0.05


# --- normalisation ---------------------------------------------------------------------------------------
def reference(items: np.ndarray, mean, std) -> np.ndarray:
    """(x / 255 - mean) / std as training has always computed it: float32, x * (1 / 255), - mean, / std."""
    x = items.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return x


@pytest.mark.parametrize("mean, std", STATS)
def test_normalise_is_the_float32_arithmetic_bit_for_bit(mean, std):
    items = (np.arange(4 * 16 * 16 * 3) % 256).astype(np.uint8).reshape(4, 16, 16, 3)
    out = geometry.normalise(items, mean, std)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"] and out.shape == (4, 3, 16, 16)
    assert np.array_equal(out, reference(items, mean, std).transpose(0, 3, 1, 2))
    assert np.array_equal(geometry.normalise(items[2], list(mean), np.asarray(std))[0], out[2])
    table = geometry.normalise_table(mean, std)
    assert table.shape == (3, 256) and not table.flags.writeable
    assert np.array_equal(table, reference(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1), mean, std).T)


def test_normalise_known_values():
    table = geometry.normalise_table(*IMAGENET)
    assert table[0, 0] == np.float32(-0.485) / np.float32(0.229)
    assert table[:, 255].tolist() == pytest.approx([2.2489082, 2.4285715, 2.64], abs=1e-6)
    assert geometry.normalise_table((0.5,) * 3, (0.5,) * 3)[1, [0, 255]].tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("mean, std", STATS)
def test_training_evaluation_and_export_normalise_as_serving_does(mean, std):
    """train.augment.Normalize (training, evaluation), data.cached_dataset.normalize and
    export.onnx.normalized (the parity inputs) give the bits serving's lookup gives."""
    torch = pytest.importorskip("torch")
    from snapid.data.cached_dataset import normalize
    from snapid.export.onnx import normalized
    from snapid.train.augment import Normalize

    items = np.random.default_rng(3).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    served = geometry.normalise(items, mean, std)
    batch = torch.from_numpy(items).permute(0, 3, 1, 2)  # as the cached dataset hands batches over
    module = Normalize(mean, std)
    assert np.array_equal(module(batch).numpy(), served)
    assert np.array_equal(module(batch.contiguous()).numpy(), served)
    assert np.array_equal(normalize(batch, mean, std).numpy(), served)
    assert np.array_equal(normalized(batch, {"mean": list(mean), "std": list(std)}), served)
    unit = batch.float() / 255.0  # an augmented batch arrives as [0, 1] floats
    expected = (unit - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(module(unit), expected)


def test_normalise_keeps_the_memory_format_training_hands_over():
    """A channels-last batch stays channels-last (the model is run channels-last)."""
    torch = pytest.importorskip("torch")
    from snapid.train.augment import Normalize

    batch = torch.from_numpy(np.zeros((2, 8, 8, 3), np.uint8)).permute(0, 3, 1, 2)
    assert Normalize(*IMAGENET)(batch).is_contiguous(memory_format=torch.channels_last)


def test_geometry_imports_neither_torch_nor_the_rest_of_snapid():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(geometry.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {n for n in names if n.startswith("snapid")} <= {"snapid.errors"}
    assert not {n for n in names if n.split(".")[0] in ("torch", "torchvision", "kornia")}
