"""snapid.images: the one decoder. Rows cited are from ../shared/BAD_INPUTS.md ("Bad inputs")."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from snapid import images
from snapid.errors import CorruptImage, EmptyFile, ImageError, ImageTooSmall, TooManyPixels, UnsupportedImage
from tests.conftest import encode, photo, png_chunk, png_header, rss_mb, zeros_deflated

JPEG = encode(photo((120, 80)), "JPEG", quality=90)


def test_jpeg_decodes_to_rgb():
    im = images.decode(JPEG)
    assert im.mode == "RGB" and im.size == (120, 80)


def test_zero_byte_file_is_empty_file():  # row: 0-byte file
    with pytest.raises(EmptyFile) as err:
        images.decode(b"")
    assert err.value.status == 400 and err.value.code == "empty_file"


@pytest.mark.parametrize("payload", [b"hello world, not a picture" * 10, b"<html><body>hi</body></html>" * 5])
def test_text_or_html_is_unsupported(payload):  # row: text or HTML bytes sent as image/jpeg
    with pytest.raises(UnsupportedImage) as err:
        images.decode(payload, name="photo.jpg")
    assert err.value.status == 415 and "photo.jpg" in err.value.message


def test_png_named_jpg_is_detected_by_magic_bytes():  # row: PNG named .jpg
    im = images.decode(encode(photo(), "PNG"), name="really-a-png.jpg")
    assert im.size == (96, 64)


def test_truncated_jpeg_is_corrupt():  # row: truncated JPEG
    with pytest.raises(CorruptImage) as err:
        images.decode(JPEG[: len(JPEG) // 2])
    assert err.value.status == 400


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(JPEG) * 8 - 1), min_size=1, max_size=8))
def test_bit_flips_raise_only_typed_errors(bits):  # row: random bit flips; decode fuzz property
    data = bytearray(JPEG)
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    try:
        im = images.decode(bytes(data))
    except ImageError:
        return
    assert im.mode == "RGB"


@pytest.mark.parametrize("side", [1, 8, 31])
def test_tiny_images_are_refused(side):  # row: 1x1 or 8x8 image
    with pytest.raises(ImageTooSmall) as err:
        images.decode(encode(Image.new("RGB", (side, side)), "PNG"))
    assert err.value.status == 400 and err.value.code == "image_too_small"


def test_png_bomb_refused_before_decoding():  # row: 30000x30000 PNG, a few KB on disk
    side = 30000
    bomb = png_header(side, side) + png_chunk(b"IDAT", zeros_deflated((side // 8 + 1) * side)) + png_chunk(b"IEND", b"")
    assert len(bomb) < 300_000
    before = rss_mb()
    started = time.perf_counter()
    with pytest.raises(TooManyPixels) as err:
        images.decode(bomb)
    assert time.perf_counter() - started < 0.2
    assert rss_mb() - before < 50
    assert err.value.status == 413


def test_100_megapixel_jpeg_header_refused():  # row: valid 100 MP photo above the 40 MP cap
    data = bytearray(encode(Image.new("RGB", (64, 64), "red"), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (10000).to_bytes(2, "big") + (10000).to_bytes(2, "big")
    with pytest.raises(TooManyPixels):
        images.decode(bytes(data))


def test_png_with_huge_ztxt_chunk_is_refused_without_memory_spike():  # row: 100 MB zTXt chunk
    body = encode(Image.new("RGB", (64, 64), "blue"), "PNG")
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + zeros_deflated(100 * 1024 * 1024))
    data = body[:33] + ztxt + body[33:]  # right after IHDR
    before = rss_mb()
    with pytest.raises(ImageError) as err:
        images.decode(data)
    assert err.value.status == 400
    assert rss_mb() - before < 50


def test_animated_gif_gives_frame_zero_quickly():  # row: animated GIF with 1000 frames
    frames = [Image.new("P", (40, 40), i % 256) for i in range(1000)]
    for f in frames:
        f.putpalette([v for c in range(256) for v in ((c * 7) % 256, c, 255 - c)])
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10)
    started = time.perf_counter()
    im = images.decode(buf.getvalue())
    assert time.perf_counter() - started < 0.2
    assert im.getpixel((5, 5)) == (0, 0, 255)


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("P", "PNG"),
                                       ("RGBA", "WEBP"), ("L", "JPEG")])
def test_every_mode_becomes_rgb(mode, fmt):  # row: CMYK JPEG; L, LA, P with transparency, RGBA
    im = images.decode(encode(photo().convert(mode), fmt))
    assert im.mode == "RGB" and im.size == (96, 64)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 20, 40))
    im = images.decode(encode(rgba, "PNG"))
    assert im.getpixel((30, 5)) == (255, 255, 255)
    assert im.getpixel((5, 5)) == (255, 0, 0)
    palette = rgba.convert("P")
    palette.info["transparency"] = palette.getpixel((30, 5))
    decoded = images.decode(encode(palette, "PNG", transparency=palette.getpixel((30, 5))))
    assert decoded.getpixel((30, 5)) == (255, 255, 255)


def test_16_bit_png_scales_instead_of_clipping():  # row: 16-bit PNG
    arr = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    im = images.decode(encode(Image.fromarray(arr), "PNG"))
    rgb = np.asarray(im)
    assert rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 100 < rgb[32, 0, 0] < 160


@pytest.mark.parametrize("head, kind", [
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "AVIF"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n", "EPS"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
    (b"II*\x00\x08\x00\x00\x00" + bytes(64), "TIFF"),
    (b"SIMPLE  =                    T" + bytes(64), "FITS"),
    (b"\x00\x00\x01\x00\x01\x00\x20\x20" + bytes(64), "ICO"),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
])
def test_refused_formats_say_send_jpeg_or_png(head, kind):  # rows: HEIC/AVIF; EPS, PDF, TIFF, FITS, ICO, SVG
    with pytest.raises(UnsupportedImage) as err:
        images.decode(head)
    assert err.value.status == 415 and kind in err.value.message and "JPEG or PNG" in err.value.message


def test_real_tiff_is_refused():
    with pytest.raises(UnsupportedImage):
        images.decode(encode(photo(), "TIFF"))


def _with_orientation(upright: Image.Image, orientation: int) -> bytes:
    """Store the picture rotated, with the EXIF tag that makes a viewer show it upright."""
    stored = {3: upright.rotate(180), 6: upright.rotate(90, expand=True),
              8: upright.rotate(-90, expand=True)}[orientation]
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = orientation
    return encode(stored, "PNG", exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation):  # row: EXIF orientation 3, 6 or 8
    upright = photo((90, 60))
    im = images.decode(_with_orientation(upright, orientation))
    assert im.size == (90, 60)
    assert np.abs(np.asarray(im, dtype=int) - np.asarray(upright, dtype=int)).max() == 0


def test_fast_path_decodes_a_smaller_draft_that_still_covers_the_target():
    big = encode(photo((1600, 1200)), "JPEG", quality=92)
    small = images.decode(big, min_size=(200, 150))
    assert small.size == (200, 150)  # 1/8 scale
    full = images.decode(big).resize((200, 150), Image.Resampling.BICUBIC)
    assert np.abs(np.asarray(small, dtype=int) - np.asarray(full, dtype=int)).mean() < 6
    assert images.decode(big, min_size=(300, 200)).size == (400, 300)  # 1/4 scale keeps >= 300x200


def test_fast_path_respects_exif_rotation():
    upright = photo((800, 400))
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = 6
    data = encode(upright.rotate(90, expand=True), "JPEG", exif=exif.tobytes(), quality=95)
    im = images.decode(data, min_size=(200, 100))
    assert im.size == (200, 100)


def test_read_file_refuses_large_files(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(bytes(2048))
    with pytest.raises(ImageError) as err:
        images.read_file(path, max_bytes=1024)
    assert err.value.status == 413 and "big.jpg" in err.value.message


def test_images_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, snapid.images; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
