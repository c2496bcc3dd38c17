"""snapid.images: bounded decoding work (a time bound every format's reads go through) and one decode
per photo (the EXIF orientation is read without decoding the pixels). Rows cited are from
../shared/BAD_INPUTS.md."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from snapid import images
from snapid.errors import CorruptImage, DecodeTimeout
from snapid.serve.services.preprocess import PreprocessSpec, decode_for_model
from tests.conftest import encode, photo
from tests.crafted import many_scan_jpeg, png_with_exif_after_pixels

ROOT = Path(__file__).resolve().parents[1]
SPEC = PreprocessSpec(size=224, resize="crop", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


# --- item 11: a decode time bound ----------------------------------------------------------------------
@pytest.mark.parametrize("min_size", [None, (224, 224)])
def test_a_jpeg_with_thousands_of_scans_is_stopped_at_the_bound(min_size):
    """"Configuration under test: ... decode timeout 5 s" (here 0.5 s). 30 KB of empty progressive scans
    make libjpeg pass over all 560,000 blocks of a 36 MP picture 3000 times (about 10 s of CPU); the
    bound stops that work itself: the decoding thread used about the bound's CPU time, not 10 s, and the
    error is the 422 decode_timeout."""
    data = many_scan_jpeg()
    limits = images.DecodeLimits(timeout_s=0.5)
    wall, cpu = time.perf_counter(), time.thread_time()
    with pytest.raises(DecodeTimeout) as err:
        images.decode(data, limits=limits, min_size=min_size, name="many-scans.jpg")
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    assert err.value.status == 422 and err.value.code == "decode_timeout"
    assert "many-scans.jpg" in err.value.message and "0.5" in err.value.message
    assert 0.5 <= cpu < 1.5, f"the decoder used {cpu:.2f} s of CPU: not stopped at the 0.5 s bound"
    assert wall < 5.0


def test_the_bound_counts_cpu_not_waiting():
    """A photo decoded slowly because the machine is busy is not refused: only the decoding thread's own
    CPU time counts, so a decode that waited past the bound (here: a bound already passed on the wall
    clock before a normal photo's pixels are read) still succeeds."""
    data = encode(photo((640, 480)), "JPEG", quality=90)
    im = images.open_image(data, images.DecodeLimits(timeout_s=0.05), "slow-machine.jpg")
    time.sleep(0.1)  # wall clock past the bound, no CPU used
    im.load()
    assert im.size == (640, 480)


def test_an_image_opened_on_one_thread_and_decoded_on_another_is_timed_on_the_decoding_thread():
    """Thread CPU clocks are per thread: the bound must not compare one thread's clock with another's (a
    busy main thread would make a photo opened on a fresh thread look as if it had used seconds)."""
    data = encode(photo((640, 480)), "JPEG", quality=90)
    opened = []
    limits = images.DecodeLimits(timeout_s=0.05)
    worker = threading.Thread(target=lambda: opened.append(images.open_image(data, limits)))
    worker.start()
    worker.join()
    sum(range(3_000_000))  # this thread has used CPU time of its own
    time.sleep(0.1)
    opened[0].load()
    assert opened[0].size == (640, 480)


def test_normal_photos_of_every_format_decode_under_the_default_bound():
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP"):
        assert images.decode(encode(photo((300, 200)), fmt), limits=images.DecodeLimits()).size == (300, 200)
    progressive = encode(photo((300, 200)), "JPEG", progressive=True, quality=90)
    assert images.decode(progressive, min_size=(150, 100)).size == (150, 100)


def test_zero_means_no_bound():
    assert images.DecodeLimits(timeout_s=0).timeout_s == 0
    assert images.decode(encode(photo((64, 64)), "JPEG"), limits=images.DecodeLimits(timeout_s=0)).size == (64, 64)


# --- item 12: one decode per photo -------------------------------------------------------------------
@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every load() that decodes pixels (an image with tiles left to read), by format."""
    seen: list[str] = []
    real = ImageFile.ImageFile.load

    def counting(self):
        if self.tile:
            seen.append(self.format)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return seen


def _png(size=(400, 300), **kw) -> bytes:
    return encode(photo(size), "PNG", **kw)


def test_a_png_is_decoded_once_for_the_model(decodes):
    """A PNG with no EXIF before its pixels used to be decoded in full just to look for its orientation,
    then again for the model: 120 MB more per decode thread for a 40 MP photo."""
    decode_for_model(_png(), SPEC, images.DEFAULT_LIMITS, "photo.png")
    assert decodes == ["PNG"]


def test_the_upright_size_of_a_header_decodes_nothing(decodes):
    assert images.upright_size(images.open_image(_png(), images.DEFAULT_LIMITS)) == (400, 300)
    assert decodes == []


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_after_the_pixels_still_turns_the_photo(decodes, orientation):
    """Row "EXIF orientation 3, 6 or 8": same picture as the upright copy, also when the eXIf chunk
    follows the image data; the header's upright size already knows it, without decoding."""
    upright = photo((120, 80))
    stored = {3: upright.rotate(180), 6: upright.rotate(90, expand=True),
              8: upright.rotate(-90, expand=True)}[orientation]
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = orientation
    data = png_with_exif_after_pixels(stored, exif.tobytes())
    header = images.open_image(data)
    assert "exif" not in header.info  # really after the pixels: the header has not seen it
    assert images.upright_size(header) == (120, 80)
    assert decodes == []
    assert images.decode(data).tobytes() == upright.tobytes()
    assert decodes == ["PNG"]


PEAK = """
import json, sys
from snapid import images
from snapid.serve.services.preprocess import PreprocessSpec, decode_for_model
data = open(sys.argv[1], "rb").read()
spec = PreprocessSpec(size=224, resize="crop", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
import io
from PIL import Image
small = io.BytesIO()
Image.new("RGB", (64, 64)).save(small, "PNG")
decode_for_model(small.getvalue(), spec, images.DEFAULT_LIMITS)  # plug-ins and code paths loaded first
def peak_kb():  # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
before = peak_kb()
decode_for_model(data, spec, images.DEFAULT_LIMITS, "big.png")
after = peak_kb()
print(json.dumps({"before_kb": before, "after_kb": after}))
"""


def test_peak_memory_of_a_big_png_is_one_picture(tmp_path):
    """A 24 MP RGB PNG is 92 MiB of pixels in Pillow (4 bytes a pixel): preparing it for the model must
    raise the process's peak RSS by about one picture, not two (measured in a fresh process: Pillow's buffers are C
    memory, which tracemalloc does not see)."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs Linux's /proc/self/status (VmHWM)")
    size = (6000, 4000)
    gradient = Image.linear_gradient("L").resize(size)
    big = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient))
    path = tmp_path / "big.png"
    big.save(path, "PNG", compress_level=1)
    del big, gradient
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    peak = json.loads(out.strip().splitlines()[-1])
    grew_mb = (peak["after_kb"] - peak["before_kb"]) / 1024
    picture_mb = size[0] * size[1] * 4 / 2**20
    assert grew_mb < 1.5 * picture_mb, f"peak RSS grew {grew_mb:.0f} MB for a {picture_mb:.0f} MB picture"


def test_a_single_scan_jpeg_with_more_scans_is_refused_at_once():
    """A baseline JPEG whose one scan holds every component is a single pass over its blocks: libjpeg
    refuses a second scan (that is why only multi-scan JPEGs are read scan by scan)."""
    buf = io.BytesIO()
    Image.new("L", (6000, 6000), 128).save(buf, "JPEG", quality=50)
    data = buf.getvalue()
    eoi = data.rindex(b"\xff\xd9")
    crafted = data[:eoi] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * 3000 + data[eoi:]
    cpu = time.thread_time()
    with pytest.raises(CorruptImage):
        images.decode(crafted, limits=images.DecodeLimits(timeout_s=5.0))
    assert time.thread_time() - cpu < 1.0
