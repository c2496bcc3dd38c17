"""The naive server, written the way the original projects did, for benchmarks/serve.py to compare with.

FastAPI with one endpoint; per request: Pillow decodes the whole photo, resizes the short side to the
model size (bicubic) and centre-crops, the torch eager model runs on that one image, one request at a
time (a lock around the model, as a global model in a sync endpoint ends up). Same trained run, same
normalisation and the same "crop" geometry as snapid's bundle, so only the serving machinery differs.

    BASELINE_HOME=... BASELINE_RUN=bench .venv/bin/python benchmarks/baseline_server.py --port 8001
"""

from __future__ import annotations

import argparse
import io
import os
import threading

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from snapid.evaluate.loaded import load_trained
from snapid.track.db import get_engine
from snapid.workspace import Workspace


def build_app(home: str, run: str) -> FastAPI:
    ws = Workspace.at(home)
    trained = load_trained(run, engine=get_engine(f"sqlite:///{ws.database}"))
    model, pre = trained.model, trained.preprocess
    size = pre["size"]
    mean = torch.tensor(pre["mean"]).view(3, 1, 1)
    std = torch.tensor(pre["std"]).view(3, 1, 1)
    names = [c["id"] for c in trained.classes]
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict:
        im = Image.open(io.BytesIO(file.file.read())).convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
        x = (torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float() / 255 - mean) / std
        with lock, torch.no_grad():
            probs = torch.softmax(model(x[None]), dim=1)[0]
        top = torch.topk(probs, k=min(5, len(names)))
        pairs = zip(top.values, top.indices, strict=True)
        return {"predictions": [{"id": names[i], "score": float(s)} for s, i in pairs]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    app = build_app(os.environ["BASELINE_HOME"], os.environ["BASELINE_RUN"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
