"""Shared fixtures: an isolated workspace per test and small real image files."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snapid.workspace import Workspace

# the real photo sets (flowers12/, birds100/, fruits/): SNAPID_TEST_DATASETS, else ../shared/datasets beside the
# repository
SHARED_DATASETS = Path(os.environ.get("SNAPID_TEST_DATASETS") or
                       Path(__file__).resolve().parents[1].parent / "shared" / "datasets")


def shared_dataset(name: str) -> Path:
    """A real photo set from ../shared/datasets; the test skips cleanly when it is absent."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(autouse=True, scope="session")
def allow_testserver_host():
    """Starlette's TestClient (and schemathesis in-process) send Host: testserver; the server answers only
    to its own names (snapid.serve.middleware.AllowedHosts), so the tests name that one. A test of the
    check itself passes allowed_hosts to its Settings."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNAPID_ALLOWED_HOSTS", "testserver")
        yield


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and tests running beside other work stay predictable."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Workspace:
    """SNAPID_HOME in a temporary folder with its own SQLite database."""
    monkeypatch.setenv("SNAPID_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SNAPID_DB_URL", raising=False)
    return Workspace.at(tmp_path / "home")


@pytest.fixture
def engine(home):
    from snapid.track.db import get_engine

    return get_engine(f"sqlite:///{home.database}")


def photo(size=(96, 64), seed=0, mode="RGB") -> Image.Image:
    """A small picture with structure (so resizes and crops are checkable), not a flat colour."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], axis=-1)
    noise = rng.integers(0, 20, size=(h, w, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(arr, "RGB")


def encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write_image(path: Path, size=(96, 64), seed=0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG")
    path.write_bytes(encode(photo(size, seed), fmt))
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int, bit_depth: int = 1, colour_type: int = 0) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR",
                                            struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))


def zeros_deflated(n_bytes: int) -> bytes:
    """zlib stream of n zero bytes, made in pieces so the test itself never holds n bytes."""
    comp = zlib.compressobj(9)
    piece = bytes(1 << 20)
    out = []
    for _ in range(n_bytes >> 20):
        out.append(comp.compress(piece))
    out.append(comp.compress(bytes(n_bytes & ((1 << 20) - 1))))
    out.append(comp.flush())
    return b"".join(out)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def shapes(tmp_path, engine) -> str:
    """The three-class shapes dataset (tests/helpers.py), imported as "shapes"."""
    from snapid.importer import import_dataset
    from tests.helpers import shapes_dataset

    import_dataset(shapes_dataset(tmp_path / "shapes"), name="shapes", engine=engine)
    return "shapes"


@pytest.fixture
def make_run(shapes, engine, home):
    """make_run("name", **TrainConfig overrides) trains a tiny run on `shapes` and returns its name."""
    from snapid.train.config import TrainConfig
    from snapid.train.fit import train
    from tests.helpers import TINY_TRAIN

    def make(name: str, **overrides) -> str:
        train(shapes, TrainConfig(**{**TINY_TRAIN, **overrides}), workspace=home, engine=engine, name=name)
        return name

    return make
