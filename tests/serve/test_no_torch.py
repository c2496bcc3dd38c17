"""The serving path never imports torch (nor what only the train extra installs), and a server with a bundle
is ready in about a second."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serving_imports_no_torch_and_starts_fast(bundle, home):
    script = textwrap.dedent(f"""
        import json, sys, time
        started = time.perf_counter()
        from fastapi.testclient import TestClient
        from snapid.config import Settings
        from snapid.serve.app import create_app
        app = create_app(Settings(home={str(home.home)!r}), bundle={str(bundle)!r})
        with TestClient(app) as client:
            ready = client.get("/healthz/ready").status_code
            seconds = time.perf_counter() - started
            heavy = sorted(m for m in ("torch", "torchvision", "timm", "kornia", "matplotlib", "scipy", "imagehash",
                                    "cleanlab", "sklearn") if m in sys.modules)
        print(json.dumps({{"ready": ready, "seconds": seconds, "heavy": heavy}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"import + create_app + load bundle + ready: {result['seconds']:.2f} s")
    assert result["heavy"] == [] and result["ready"] == 200
    assert result["seconds"] < 5  # about a second on an idle machine; loose because the CPU is shared
