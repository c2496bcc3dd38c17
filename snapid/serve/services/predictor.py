"""Micro-batched inference with a bounded queue.

A request is admitted only while fewer than ``queue_size`` prediction requests are in flight;
otherwise it gets 503 with Retry-After at once, so memory stays flat under overload. Admitted photos
are decoded in a small thread pool (never on the event loop), then queued for one batcher task that
gathers up to ``max_batch`` photos and runs them together in ONNX Runtime on its own thread. The
batcher waits up to ``wait_ms`` for more photos only while other admitted photos are still being
decoded, so a lone client never pays the wait. A lone photo arriving while nothing else is in flight
skips the batcher: it is decoded and run in one call on a decode thread, which saves the hand-offs
between the event loop, the batcher and the inference thread (1.6 ms of a 12 ms request on 2 cores).

Several photos of one object are combined by averaging their calibrated probabilities (a mixture):
one poor photo cannot veto the others (a product of probabilities would), and the combined score
keeps the meaning the threshold was calibrated for.

Hot swap: the served model is one reference (`Predictor.model`). A request takes it once, and its
photos are preprocessed and run with that model even if a new one is swapped in meanwhile, so every
answer is internally consistent and the version in responses changes in one step.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from snapid import images
from snapid.errors import SnapidError
from snapid.serve.services.detector import PhotoObjects, detect_and_crop
from snapid.serve.services.metrics import Metrics
from snapid.serve.services.model import LoadedModel
from snapid.serve.services.preprocess import prepare_photo
from snapid.serve.services.references import combined

log = logging.getLogger("snapid.serve")


class Overloaded(SnapidError):
    code = "overloaded"
    status = 503
    retry_after = 1  # seconds; sent as the Retry-After header


class NoModel(SnapidError):
    code = "no_model"
    status = 503
    retry_after = 5


@dataclass
class _Job:
    model: LoadedModel
    x: np.ndarray                 # 3 x S x S float32
    future: asyncio.Future


@dataclass
class Answer:
    model: LoadedModel
    probs: np.ndarray             # C combined calibrated probabilities
    decode_ms: float
    inference_ms: float           # queue wait + model run
    photos: int
    embedding: np.ndarray | None = None   # D, unit norm (several photos combined): bundles with reference photos
    maps: np.ndarray | None = None        # explain: per photo C x h x w class activation maps (N x C x h x w)


@dataclass
class ObjectsAnswer:
    """detect → crop → classify: every photo's detections and one probability row per detection (or per
    photo, for photos where nothing was detected)."""
    model: LoadedModel
    found: list[PhotoObjects]
    probs: list[np.ndarray]       # per photo: N x C, aligned with found[i].inputs
    decode_ms: float              # decoding, detecting and cropping (detect_ms of that is in found)
    inference_ms: float
    photos: int
    embeddings: list[np.ndarray | None] | None = None   # per photo: N x D, aligned with probs (reference photos)

    @property
    def fallback(self) -> bool:
        return all(f.fallback for f in self.found)


class Predictor:
    def __init__(self, *, max_batch: int, wait_ms: float, queue_size: int, decode_threads: int,
                 limits: images.DecodeLimits, metrics: Metrics | None = None):
        self.model: LoadedModel | None = None
        self.max_batch, self.wait_s, self.queue_size = max(1, max_batch), wait_ms / 1000, queue_size
        self.limits = limits
        self.metrics = metrics or Metrics()
        self.decode_threads = max(1, decode_threads)
        self._decode_pool: ThreadPoolExecutor | None = None
        self._infer_pool: ThreadPoolExecutor | None = None
        self._admitted = 0
        self._batch_running = False
        self._decoding = 0        # photos admitted but not queued yet: the batcher waits for them
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the pools and the batcher (again after a stop: an app's lifespan can run twice)."""
        self._decode_pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="snapid-decode")
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="snapid-infer")
        self._queue = asyncio.Queue()  # bounded by admission: at most queue_size x max files jobs
        self._task = asyncio.create_task(self._batcher(), name="snapid-batcher")
        self.metrics.gauges["snapid_queue_depth"] = lambda: self._queue.qsize() if self._queue else 0
        self.metrics.gauges["snapid_requests_in_flight"] = lambda: self._admitted

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._queue and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(NoModel("the server is shutting down; try again"))
        if self._decode_pool and self._infer_pool:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
            self._infer_pool.shutdown(wait=True)
        self._task = None

    def swap(self, model: LoadedModel | None) -> None:
        """Serve ``model`` from the next request on: one reference assignment."""
        self.model = model

    @property
    def ready(self) -> bool:
        return self.model is not None and self._task is not None and not self._task.done()

    # --- requests -------------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Refuse at once when the queue is full: called before a request's body is read, so refused
        uploads are never held in memory (admission proper happens in predict)."""
        if self._admitted >= self.queue_size:
            self.metrics.observe_rejected()
            raise Overloaded(f"the server is busy ({self._admitted} predictions in progress); retry in a second")

    @contextmanager
    def _admit(self):
        if self._admitted >= self.queue_size:
            self.metrics.observe_rejected()
            raise Overloaded(f"the server is busy ({self._admitted} predictions in progress); retry in a second")
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def predict(self, photos: list[tuple[str, bytes]]) -> Answer:
        model = self.model
        if model is None or not self.ready:
            raise NoModel("no model is loaded; serve a bundle (snapid serve BUNDLE) or check the log")
        with self._admit():
            if len(photos) == 1 and self._idle():
                return await self._predict_inline(model, photos[0])
            start = time.perf_counter()
            arrays = await self._decode_all(model, photos)
            decoded = time.perf_counter()
            probs, embeddings = await self._infer_all(model, arrays)
            done = time.perf_counter()
        return Answer(model=model, probs=probs.mean(axis=0), decode_ms=(decoded - start) * 1000,
                      inference_ms=(done - decoded) * 1000, photos=len(photos),
                      embedding=None if embeddings is None else combined(embeddings))

    def _idle(self) -> bool:
        """Only the caller is in flight: no other request admitted, decoding, queued or running."""
        return self._admitted == 1 and self._decoding == 0 and not self._batch_running and \
            self._queue is not None and self._queue.empty()

    async def _predict_inline(self, model: LoadedModel, photo: tuple[str, bytes]) -> Answer:
        """Decode and run one photo in a single decode-thread call (the idle fast path)."""
        name, data = photo

        def work() -> tuple[np.ndarray, np.ndarray | None, float, float]:
            start = time.perf_counter()
            x = prepare_photo(data, model.spec, self.limits, name)
            decoded = time.perf_counter()
            try:
                probs, embedding = model.scores(x[None])
            except Exception as exc:
                raise _inference_failed(exc, 1) from None
            return probs[0], embedding, decoded - start, time.perf_counter() - decoded

        # not counted in _decoding: this photo never reaches the queue, so the batcher must not wait for it
        probs, embedding, decode_s, inference_s = await asyncio.get_running_loop().run_in_executor(
            self._decode_pool, work)
        self.metrics.observe_batch(1)
        return Answer(model=model, probs=probs, decode_ms=decode_s * 1000, inference_ms=inference_s * 1000, photos=1,
                      embedding=None if embedding is None else combined(embedding))

    async def predict_explained(self, photos: list[tuple[str, bytes]]) -> Answer:
        """predict() plus each photo's class activation maps (explain=true). The photos are decoded on the decode
        threads and run together on the inference thread, beside the batcher: explained answers are rare, and
        their graph run asks for one more output."""
        model = self.model
        if model is None or not self.ready:
            raise NoModel("no model is loaded; serve a bundle (snapid serve BUNDLE) or check the log")
        with self._admit():
            start = time.perf_counter()
            inputs = np.stack(await self._decode_all(model, photos))
            decoded = time.perf_counter()

            def work():
                try:
                    return model.explained(inputs)
                except Exception as exc:
                    raise _inference_failed(exc, len(inputs)) from None

            probs, embeddings, maps = await asyncio.get_running_loop().run_in_executor(self._infer_pool, work)
            done = time.perf_counter()
        self.metrics.observe_batch(len(inputs))
        return Answer(model=model, probs=probs.mean(axis=0), decode_ms=(decoded - start) * 1000,
                      inference_ms=(done - decoded) * 1000, photos=len(photos),
                      embedding=None if embeddings is None else combined(embeddings), maps=maps)

    async def predict_objects(self, photos: list[tuple[str, bytes]]) -> ObjectsAnswer:
        """A bundle with a detector: detect and crop on the decode threads, then classify every crop of
        every photo through the batcher (one batch, up to max_batch)."""
        model = self.model
        if model is None or not self.ready:
            raise NoModel("no model is loaded; serve a bundle (snapid serve BUNDLE) or check the log")
        with self._admit():
            start = time.perf_counter()
            found = await self._decode_all(model, photos, work=lambda data, name: detect_and_crop(
                data, model.detector, model.spec, self.limits, name))
            decoded = time.perf_counter()
            rows, embeddings = await self._infer_all(model, [x for photo in found for x in photo.inputs])
            done = time.perf_counter()
        bounds = np.cumsum([0] + [len(photo.inputs) for photo in found])
        return ObjectsAnswer(model=model, found=found, probs=[rows[a:b] for a, b in itertools.pairwise(bounds)],
                             decode_ms=(decoded - start) * 1000, inference_ms=(done - decoded) * 1000,
                             photos=len(photos),
                             embeddings=None if embeddings is None else
                             [embeddings[a:b] for a, b in itertools.pairwise(bounds)])

    async def _decode_all(self, model: LoadedModel, photos: list[tuple[str, bytes]], *, work=None) -> list:
        """``work(data, name)`` for every photo on the decode threads (default: prepare_photo for ``model``)."""
        loop = asyncio.get_running_loop()
        work = work or (lambda data, name: prepare_photo(data, model.spec, self.limits, name))
        self._decoding += len(photos)
        try:
            results = await asyncio.gather(
                *(loop.run_in_executor(self._decode_pool, work, data, name)
                  for name, data in photos), return_exceptions=True)
        finally:
            self._decoding -= len(photos)
        for result in results:  # the first bad photo answers for the request
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    async def _infer_all(self, model: LoadedModel, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """N x C probabilities and N x D embeddings (None unless the bundle has reference photos)."""
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        futures = []
        for x in arrays:
            job = _Job(model, x, loop.create_future())
            self._queue.put_nowait(job)
            futures.append(job.future)
        results = await asyncio.gather(*futures)
        probs = np.stack([p for p, _ in results])
        return probs, None if any(e is None for _, e in results) else np.stack([e for _, e in results])

    # --- the batcher ----------------------------------------------------------------------
    async def _batcher(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await self._fill(batch)
            self.metrics.observe_batch(len(batch))
            self._batch_running = True
            try:
                outputs = await loop.run_in_executor(self._infer_pool, _run_batch, batch)
            except Exception as exc:  # a model failure fails this batch's requests, not the server
                outputs = [_inference_failed(exc, len(batch))] * len(batch)
            finally:
                self._batch_running = False
            for job, out in zip(batch, outputs, strict=True):
                if job.future.done():  # the client went away
                    continue
                if isinstance(out, BaseException):
                    job.future.set_exception(out)
                else:
                    job.future.set_result(out)

    async def _fill(self, batch: list[_Job]) -> None:
        """Add queued photos up to max_batch; wait (briefly) only while more are being decoded."""
        assert self._queue is not None
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if self._decoding == 0 or remaining <= 0:
                return
            getter = asyncio.ensure_future(self._queue.get())
            done, _ = await asyncio.wait({getter}, timeout=remaining)
            if not done:
                getter.cancel()
                await asyncio.wait({getter})  # it may have got an item just before the cancel
                if getter.cancelled():
                    return
            batch.append(getter.result())


def _inference_failed(exc: Exception, n: int) -> SnapidError:
    log.error("inference failed for a batch of %d", n, exc_info=exc)
    return SnapidError(f"inference failed ({type(exc).__name__}); try again", code="inference_failed", status=503)


def _run_batch(batch: list[_Job]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Runs on the inference thread: one model run per model present in the batch (normally one); per job its
    probabilities and embedding (None unless the bundle has reference photos)."""
    outputs: list = [None] * len(batch)
    groups: dict[int, list[int]] = {}
    for i, job in enumerate(batch):
        groups.setdefault(id(job.model), []).append(i)
    for rows in groups.values():
        model = batch[rows[0]].model
        probs, embeddings = model.scores(np.stack([batch[i].x for i in rows]))
        for n, (i, p) in enumerate(zip(rows, probs, strict=False)):
            outputs[i] = (p, None if embeddings is None else embeddings[n])
    return outputs  # type: ignore[return-value]


def top_k(model: LoadedModel, probs: np.ndarray, k: int, lang: str | None) -> list[dict]:
    """The k best classes, best first, with the display name in ``lang`` when the bundle has one."""
    k = max(1, min(k, len(probs)))
    order = np.argsort(-probs, kind="stable")[:k]
    out = []
    for i in order:
        label = model.labels[int(i)]
        display = label["display_names"].get(lang or "", "") or label["name"]
        out.append({"index": int(i), "id": label["id"], "name": label["name"], "display_name": display,
                    "score": round(float(probs[i]), 6)})
    return out
