#!/usr/bin/env bash
# CI, after the main test run (issue 22): the install as users get it, in fresh virtual environments.
#  1. `pip install .[serve]` alone: no torch, matplotlib, scipy or imagehash is installed, and `snapid serve`
#     on a small bundle answers a prediction and a /metrics scrape.
#  2. The lowest versions that pyproject.toml allows for the direct dependencies (uv's
#     --resolution lowest-direct): the serving tests pass on them.
# Needs the main environment (.venv, `make install`) only to write the small bundle. Fails on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
MAIN=${MAIN_PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/snapid-lean.XXXXXX")
SERVER=""
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "a small bundle, written by the main environment"
(cd "$ROOT" && "$MAIN" -c "import sys; from pathlib import Path; from tests.serve.conftest import make_bundle; \
make_bundle(Path(sys.argv[1]))" "$WORK/bundle")

step "pip install .[serve] into a fresh virtual environment"
"$PYTHON" -m venv "$WORK/lean"
"$WORK/lean/bin/pip" install --quiet "$ROOT[serve]"
"$WORK/lean/bin/python" - <<'EOF'
import importlib.metadata as md
import sys

unwanted = ["torch", "torchvision", "matplotlib", "scipy", "imagehash", "cleanlab", "scikit-learn", "timm",
            "kornia", "onnx", "optuna"]
present = []
for name in unwanted:
    try:
        present.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
if present:
    sys.exit(f"snapid[serve] installed what serving never uses: {', '.join(present)}")
print(f"snapid {md.version('snapid')}: {len(list(md.distributions()))} distributions, none of {', '.join(unwanted)}")
EOF

step "snapid serve on the bundle, from the lean environment"
PORT=$("$WORK/lean/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); \
print(s.getsockname()[1])")
mkdir -p "$WORK/run"
(cd "$WORK/run" && SNAPID_HOME="$WORK/run/home" exec "$WORK/lean/bin/snapid" serve "$WORK/bundle" \
  --port "$PORT" --no-reload >"$WORK/serve.log" 2>&1) &
SERVER=$!
if ! "$WORK/lean/bin/python" - "http://127.0.0.1:$PORT" <<'EOF'
import io
import sys
import time

import httpx
from PIL import Image

base = sys.argv[1]
deadline = time.monotonic() + 60
while True:
    try:
        if httpx.get(f"{base}/healthz/ready", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server was not ready in 60 s")
    time.sleep(0.2)
photo = io.BytesIO()
Image.new("RGB", (64, 48), (220, 40, 40)).save(photo, "JPEG")
answer = httpx.post(f"{base}/api/v1/predict", files=[("files", ("red.jpg", photo.getvalue(), "image/jpeg"))],
                    timeout=30)
assert answer.status_code == 200, answer.text
body = answer.json()
print("prediction:", answer.text[:300])
assert '"red"' in answer.text, body  # the tiny model calls a red photo red
metrics = httpx.get(f"{base}/metrics", timeout=10).text
assert 'route="/api/v1/predict"' in metrics and "snapid_requests_total" in metrics, metrics[:2000]
EOF
then
  echo "--- serve.log"; cat "$WORK/serve.log"; exit 1
fi
kill -TERM "$SERVER"
wait "$SERVER" || { echo "--- serve.log"; cat "$WORK/serve.log"; exit 1; }
SERVER=""

step "the lowest versions of the direct dependencies (uv --resolution lowest-direct)"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install --quiet uv
UV="$WORK/tools/bin/uv"
"$UV" venv --quiet --python "$(command -v "$PYTHON")" "$WORK/low"
# snapid[serve] at its lowest; the test tools too (pytest, onnx for the tiny bundle, imagehash for the serving
# tests that import a dataset first)
# (--compile-bytecode: as pip does; uv does not by default, and the start-up time tests would measure compiling)
VIRTUAL_ENV="$WORK/low" "$UV" pip install --quiet --compile-bytecode --resolution lowest-direct "$ROOT[serve]" \
  "pytest>=8" "onnx>=1.16" "imagehash>=4.3.1"
VIRTUAL_ENV="$WORK/low" "$UV" pip list 2>/dev/null | grep -iE '^(fastapi|starlette|uvicorn|python-multipart|httpx|onnxruntime|numpy|pillow|pydantic|pydantic-settings|sqlalchemy|alembic|typer|rich|prometheus-client|segno|fastapi-offline|pyyaml|defusedxml) '
step "the serving tests on them"
# tests/serve, less those that need torch (end to end, a real training run), schemathesis (API fuzz) or a browser
"$WORK/low/bin/python" -m pytest -q -p no:cacheprovider tests/serve \
  --ignore=tests/serve/test_end_to_end.py --ignore=tests/serve/test_schema.py \
  --ignore=tests/serve/test_dashboard_browser.py --ignore=tests/serve/test_api_docs_browser.py \
  -k "not fuzz and not real_training_run"
step "done"
