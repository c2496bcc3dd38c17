"""Small generated datasets and trained runs shared by the test modules."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# A run that trains in a couple of seconds on a CPU: a scratch CNN on 32 px images.
# AdamW probe epochs (a few, cheap), not the default L-BFGS grid: tests of the machinery count epochs
TINY_TRAIN = dict(model="custom_cnn", pretrained=False, size=32, batch_size=8, probe_epochs=3, probe_views=2,
                  probe_solver="adamw", finetune_epochs=0, augment="light", patience=10, seed=0)


def shapes_dataset(root: Path, per_class: int = 14) -> Path:
    """Three visually distinct classes: red discs, green squares, blue stripes, on noisy backgrounds."""
    rng = np.random.default_rng(0)
    for label in ("disc", "square", "stripes"):
        for i in range(per_class):
            bg = rng.integers(90, 160, size=(48, 48, 3), dtype=np.uint8)
            im = Image.fromarray(bg)
            d = ImageDraw.Draw(im)
            o = int(rng.integers(4, 12))
            if label == "disc":
                d.ellipse((o, o, o + 28, o + 28), fill=(220, 40, 40))
            elif label == "square":
                d.rectangle((o, o, o + 26, o + 26), fill=(40, 200, 60))
            else:
                for x in range(0, 48, 8):
                    d.rectangle((x, 0, x + 3, 47), fill=(40, 60, 220))
            (root / label).mkdir(parents=True, exist_ok=True)
            im.save(root / label / f"{i}.png")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(settings, bundle: Path | None, *, port: int | None = None):
    """A real uvicorn server on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    from snapid.serve.app import create_app as _create_app

    port = port or free_port()
    config = uvicorn.Config(_create_app(settings, bundle=bundle), host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=2, proxy_headers=False)  # as snapid serve runs it
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
