"""Every upload/prediction row of ../shared/BAD_INPUTS.md ("Bad inputs"), through the real app.

Each rejection must be JSON {"error", "message"} with the row's status, and leave readiness at 200."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from snapid import images
from snapid.serve.services.preprocess import PreprocessSpec, decode_for_model
from snapid.track.db import transaction
from snapid.track.predictions import count_predictions
from tests.conftest import encode, photo, png_chunk, png_header, rss_mb, zeros_deflated
from tests.serve.conftest import MEAN, RED, SIZE, STD, coloured, files

PREDICT = "/api/v1/predict"


def rejected(client, response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["message"]
    if code:
        assert body["error"] == code
    assert client.get("/health/ready").status_code == 200
    return body


# --- Empty body, no multipart, wrong field name: 422 naming the expected field ------------------
def test_empty_body_is_422_naming_the_field(client):
    assert "'files'" in rejected(client, client.post(PREDICT), 422, "invalid_request")["message"]


def test_json_instead_of_multipart_is_422(client):
    assert "'files'" in rejected(client, client.post(PREDICT, json={"files": "x"}), 422)["message"]


def test_wrong_field_name_is_422_naming_the_field(client):
    r = client.post(PREDICT, files=files(coloured(RED), field="image"))
    assert "'files'" in rejected(client, r, 422, "invalid_request")["message"]


def test_text_part_in_the_files_field_is_422(client):
    r = client.post(PREDICT, data={"files": "not a file"}, files=[("other", ("a.jpg", b"x", "image/jpeg"))])
    rejected(client, r, 422, "invalid_request")


# --- 0-byte file; text or HTML sent as image/jpeg; PNG named .jpg ---------------------------------
def test_zero_byte_file_is_400_empty_file(client):
    rejected(client, client.post(PREDICT, files=files(b"")), 400, "empty_file")


def test_html_sent_as_jpeg_is_415(client):
    r = client.post(PREDICT, files=files(b"<html><body>" + b"hello " * 50 + b"</body></html>"))
    rejected(client, r, 415, "unsupported_image")


def test_png_named_jpg_with_wrong_content_type_is_accepted(client):
    r = client.post(PREDICT, files=[("files", ("photo.jpg", coloured(RED, fmt="PNG"), "application/pdf"))])
    assert r.status_code == 200 and r.json()["predictions"][0]["id"] == "red"


@pytest.mark.parametrize("head", [b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
                                  b"%PDF-1.7\n" + bytes(64), b"%!PS-Adobe-3.0 EPSF-3.0\n" + bytes(64)])
def test_heic_pdf_eps_are_415(client, head):  # rows: HEIC or AVIF; EPS, PDF, TIFF...
    rejected(client, client.post(PREDICT, files=files(head)), 415, "unsupported_image")


# --- Truncated JPEG; random bit flips: 400 corrupt_image --------------------------------------
def test_truncated_jpeg_is_400_corrupt_image(client):
    data = coloured(RED, size=(200, 150))
    rejected(client, client.post(PREDICT, files=files(data[: len(data) // 2])), 400, "corrupt_image")


def test_bit_flips_never_give_5xx(client):
    data = bytearray(coloured(RED, size=(120, 90)))
    rng = np.random.default_rng(1)
    for _ in range(12):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), 6):
            flipped[pos] ^= 0xFF
        r = client.post(PREDICT, files=files(bytes(flipped)))
        assert r.status_code in (200, 400, 413, 415), r.text
    assert client.get("/health/ready").status_code == 200


# --- 1x1 or 8x8: 400 image_too_small --------------------------------------------------------------
@pytest.mark.parametrize("side", [1, 8])
def test_tiny_image_is_400(client, side):
    rejected(client, client.post(PREDICT, files=files(encode(Image.new("RGB", (side, side)), "PNG"))),
             400, "image_too_small")


# --- 30000x30000 PNG; 100 MP photo: 413 before decoding -------------------------------------------
def test_30000_squared_png_is_413_fast_without_memory(client):
    side = 30000
    bomb = png_header(side, side) + png_chunk(b"IDAT", zeros_deflated((side // 8 + 1) * side)) + png_chunk(b"IEND", b"")
    client.post(PREDICT, files=files(coloured(RED)))  # warm up
    before, started = rss_mb(), time.perf_counter()
    r = client.post(PREDICT, files=files(bomb))
    elapsed = time.perf_counter() - started
    rejected(client, r, 413, "too_many_pixels")
    assert elapsed < 0.2, f"{elapsed:.3f} s"
    assert rss_mb() - before < 50


def test_100_megapixel_photo_is_413(client):
    data = bytearray(encode(Image.new("RGB", (64, 64), "red"), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (10000).to_bytes(2, "big") + (10000).to_bytes(2, "big")
    rejected(client, client.post(PREDICT, files=files(bytes(data))), 413, "too_many_pixels")


def test_png_with_100_mb_ztxt_is_refused(client, settings):
    # The body cap (10 MB) stops it first; a compressed 100 MB chunk is ~100 KB, so build it that way
    body = encode(Image.new("RGB", (64, 64), "blue"), "PNG")
    data = body[:33] + png_chunk(b"zTXt", b"Comment\x00\x00" + zeros_deflated(100 << 20)) + body[33:]
    before = rss_mb()
    r = client.post(PREDICT, files=files(data))
    assert r.status_code in (400, 413) and r.json()["error"]
    assert rss_mb() - before < 50


# --- Body twice the cap: with and without Content-Length: 413 ---------------------------------------
def test_body_over_the_cap_with_content_length_is_413(client, settings):
    big = bytes(settings.max_body_bytes * 2)
    rejected(client, client.post(PREDICT, files=files(big)), 413, "body_too_large")


def test_body_over_the_cap_chunked_without_content_length_is_413(client, settings):
    chunk = bytes(1 << 20)
    sent = {"n": 0}

    def stream():
        for _ in range(2 * settings.max_body_bytes // len(chunk)):
            sent["n"] += len(chunk)
            yield chunk

    r = client.post(PREDICT, content=stream(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    rejected(client, r, 413, "body_too_large")


# --- 50 files; 2,000 parts; a 5 MB text field: 413 or 400 ---------------------------------------
def test_six_files_is_refused(client):
    r = client.post(PREDICT, files=files(*[coloured(RED)] * 6))
    assert "files" in rejected(client, r, 400)["message"].lower()


def test_2000_parts_is_refused(client):
    r = client.post(PREDICT, data={f"f{i}": "x" for i in range(2000)}, files=files(coloured(RED)))
    assert r.status_code in (400, 413) and r.json()["error"]


def test_5_mb_text_field_is_refused(client):
    r = client.post(PREDICT, data={"note": "x" * (5 << 20)}, files=files(coloured(RED)))
    assert r.status_code in (400, 413) and r.json()["error"]


# --- Animated GIF: frame 0 only ---------------------------------------------------------------------
def test_animated_gif_is_classified_from_frame_zero(client):
    first = Image.new("RGB", (48, 48), RED)
    rest = [Image.new("RGB", (48, 48), (40, 60, 220)) for _ in range(300)]
    buf = io.BytesIO()
    first.save(buf, "GIF", save_all=True, append_images=rest, duration=10)
    r = client.post(PREDICT, files=files(buf.getvalue(), name="anim.gif"))
    assert r.status_code == 200 and r.json()["predictions"][0]["id"] == "red"


# --- CMYK JPEG; 16-bit PNG; L, LA, P with transparency, RGBA: 200 --------------------------------------
@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("L", "PNG")])
def test_every_colour_mode_is_accepted(client, mode, fmt):
    r = client.post(PREDICT, files=files(coloured(RED, fmt=fmt, mode=mode)))
    assert r.status_code == 200, r.text


def test_16_bit_png_is_accepted(client):
    arr = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    assert client.post(PREDICT, files=files(encode(Image.fromarray(arr), "PNG"))).status_code == 200


def test_transparent_palette_is_composited_on_white_the_same_way(client):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((220, 40, 40, 255), (16, 16, 48, 48))
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    white.paste((220, 40, 40), (16, 16, 48, 48))
    a = client.post(PREDICT, files=files(encode(rgba, "PNG"))).json()["predictions"]
    b = client.post(PREDICT, files=files(encode(white, "PNG"))).json()["predictions"]
    assert [p["score"] for p in a] == [p["score"] for p in b]


# --- EXIF orientation 3, 6 or 8: same prediction as an upright copy ---------------------------------
def _stored_with_orientation(upright: Image.Image, orientation: int) -> bytes:
    stored = {3: upright.rotate(180), 6: upright.rotate(90, expand=True),
              8: upright.rotate(-90, expand=True)}[orientation]
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = orientation
    return encode(stored, "PNG", exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_the_upright_input_and_prediction(client, orientation):
    upright = photo((96, 64))
    spec = PreprocessSpec(size=SIZE, resize="crop", mean=tuple(MEAN), std=tuple(STD))
    rotated = _stored_with_orientation(upright, orientation)
    assert np.array_equal(decode_for_model(rotated, spec, images.DEFAULT_LIMITS),
                          decode_for_model(encode(upright, "PNG"), spec, images.DEFAULT_LIMITS))
    a = client.post(PREDICT, files=files(rotated)).json()["predictions"]
    b = client.post(PREDICT, files=files(encode(upright, "PNG"))).json()["predictions"]
    assert a == b


# --- Unknown route or method: 404 or 405, never 500 -----------------------------------------------------
def test_unknown_route_is_404_json(client):
    rejected(client, client.get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_json(client):
    r = client.get(PREDICT)
    rejected(client, r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]


def test_bad_query_parameter_is_422_naming_it(client):
    assert "k" in rejected(client, client.post(f"{PREDICT}?k=0", files=files(coloured(RED))), 422)["message"]


# --- SQL injection strings in any field: harmless ------------------------------------------------------
def test_sql_injection_strings_are_harmless(client, engine):
    evil = "'; DROP TABLE predictions;--"
    r = client.post(PREDICT, data={"note": evil},
                    files=[("files", (evil + '" OR 1=1.jpg', coloured(RED), "image/jpeg"))])
    assert r.status_code == 200
    r = client.post(f"{PREDICT}?lang=" + "%27%3B%20DROP%20TABLE%20predictions%3B--", files=files(coloured(RED)))
    rejected(client, r, 422, "invalid_request")
    client.app.state.prediction_log.flush()
    with transaction(engine) as s:
        assert count_predictions(s) == 1


# --- Rejections leave no database row --------------------------------------------------------------------
def test_rejections_record_no_prediction(client, engine):
    client.post(PREDICT, files=files(b""))
    client.post(PREDICT, files=files(b"<html>" * 40))
    client.app.state.prediction_log.flush()
    with transaction(engine) as s:
        assert count_predictions(s) == 0


# --- Model file that is a malicious pickle: refused, never unpickled, readiness 503 -----------------------
def test_malicious_pickle_model_is_never_loaded(tmp_path, settings, caplog):
    import pickle

    from fastapi.testclient import TestClient

    from snapid.serve.app import create_app
    from tests.serve.conftest import make_bundle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bundle = make_bundle(tmp_path / "evil", model=pickle.dumps(Evil()))
    with caplog.at_level("ERROR", logger="snapid.serve"), TestClient(create_app(settings, bundle=bundle)) as c:
        r = c.get("/healthz/ready")  # anyone may ask: the code, not the server's paths
        assert r.status_code == 503 and "bad_bundle" in r.json()["message"] and str(tmp_path) not in r.text
        assert c.post(PREDICT, files=files(coloured(RED))).status_code == 503
    assert not marker.exists()
    assert any("bundle refused" in rec.message and "model.onnx" in rec.message and "not a loadable ONNX model"
               in rec.message for rec in caplog.records)


# --- Body twice the cap with a false Content-Length: at most the cap reaches the app ------------------
@pytest.mark.anyio
@pytest.mark.parametrize("declared", [b"100", None, b"not-a-number"])
async def test_body_cap_counts_bytes_whatever_content_length_says(declared):
    from starlette.requests import Request

    from snapid.serve.bodies import BodyLimitMiddleware, BodyTooLarge

    cap, chunk = 1000, b"x" * 300
    pulled = {"bytes": 0, "app": 0}

    async def receive():
        pulled["bytes"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}  # never ends: a flood

    async def app(scope, receive, send):
        async for piece in Request(scope, receive).stream():
            pulled["app"] += len(piece)

    sent = []

    async def send(message):
        sent.append(message)

    headers = [(b"content-length", declared)] if declared else []
    await BodyLimitMiddleware(app, max_bytes=cap, deadline_s=5)({"type": "http", "headers": headers}, receive, send)
    assert sent[0]["status"] == 413 and b"body_too_large" in sent[1]["body"]
    assert pulled["app"] <= cap and pulled["bytes"] <= cap + len(chunk)
    assert issubclass(BodyTooLarge, Exception)


@pytest.mark.anyio
async def test_slow_body_hits_the_deadline():  # row: slowloris body at 1 byte per second
    import asyncio

    from starlette.requests import Request

    from snapid.serve.bodies import BodyLimitMiddleware

    async def receive():
        await asyncio.sleep(0.2)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def app(scope, receive, send):
        await Request(scope, receive).body()

    sent = []

    async def send(message):
        sent.append(message)

    started = time.perf_counter()
    await BodyLimitMiddleware(app, max_bytes=1000, deadline_s=0.5)({"type": "http", "headers": []}, receive, send)
    assert sent[0]["status"] == 408 and time.perf_counter() - started < 1.0
