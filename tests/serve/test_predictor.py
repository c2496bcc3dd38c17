"""The predictor's two paths: a lone photo is decoded and run in one decode-thread call, photos that
arrive together go through the batcher; both give the same answer, and a failing model fails only
the requests it was running (503 inference_failed), never the server."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from snapid import images
from snapid.errors import SnapidError
from snapid.serve.services.model import load_model
from snapid.serve.services.predictor import Predictor
from tests.serve.conftest import GREEN, RED, coloured

pytestmark = pytest.mark.anyio


class Recording:
    """Wraps a loaded model's `probabilities`: the thread and batch size of every run, optionally failing."""

    def __init__(self, model, fail: bool = False):
        self.runs: list[tuple[str, int]] = []
        self.fail, self._run = fail, model.probabilities
        model.probabilities = self

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.runs.append((threading.current_thread().name, len(batch)))
        if self.fail:
            raise RuntimeError("the model broke")
        return self._run(batch)


def _predictor() -> Predictor:
    return Predictor(max_batch=8, wait_ms=20, queue_size=16, decode_threads=2, limits=images.DEFAULT_LIMITS)


async def test_a_lone_photo_is_run_inline_and_photos_together_are_batched(bundle):
    model = load_model(bundle)
    runs = Recording(model)
    predictor = _predictor()
    await predictor.start()
    predictor.swap(model)
    try:
        photo = ("red.jpg", coloured(RED, size=(400, 300)))
        alone = [await predictor.predict([photo]) for _ in range(3)]
        assert [thread.startswith("snapid-decode") for thread, _ in runs.runs] == [True] * 3
        assert predictor.metrics.batches.n == 3  # inline runs are counted as batches of one

        runs.runs.clear()
        together = await asyncio.gather(*(predictor.predict([photo]) for _ in range(12)))
        assert sum(n for _, n in runs.runs) == 12
        assert any(thread.startswith("snapid-infer") and n > 1 for thread, n in runs.runs), runs.runs
        # one answer whichever path ran it
        for answer in alone + list(together):
            np.testing.assert_allclose(answer.probs, alone[0].probs, rtol=1e-5, atol=1e-6)
            assert int(np.argmax(answer.probs)) == 0 and answer.decode_ms > 0 and answer.inference_ms > 0
    finally:
        await predictor.stop()


async def test_a_failing_model_answers_503_on_both_paths_and_the_server_goes_on(bundle):
    model = load_model(bundle)
    runs = Recording(model, fail=True)
    predictor = _predictor()
    await predictor.start()
    predictor.swap(model)
    photo = ("green.jpg", coloured(GREEN, size=(400, 300)))
    try:
        with pytest.raises(SnapidError) as alone:
            await predictor.predict([photo])
        assert alone.value.code == "inference_failed" and alone.value.status == 503
        results = await asyncio.gather(*(predictor.predict([photo]) for _ in range(6)), return_exceptions=True)
        assert all(isinstance(r, SnapidError) and r.code == "inference_failed" for r in results), results
        assert any(thread.startswith("snapid-infer") for thread, _ in runs.runs)  # the batcher's path failed too
        runs.fail = False
        assert int(np.argmax((await predictor.predict([photo])).probs)) == 1
        assert predictor.ready
    finally:
        await predictor.stop()
