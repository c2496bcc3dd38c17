"""Identification: photos in, an answer out, logged for feedback and kept with consent.

- mode=same: 1 to 5 photos of one object → one combined, calibrated answer with its knowledge card;
- mode=each: one answer per photo, with warnings when the objects must not go together;
- a bundle with a detector (mode=detect, whatever was asked): one answer per object found in the
  photos, rules checked across them; with nothing found, the photos are identified whole;
- a photo a phone sends to a hand-off session: identified, its thumbnail and answer stored for the desktop.

Every answer gets a prediction id (what feedback refers to) and a row in the prediction log."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
from anyio import to_thread

from snapid.feedback.storage import PhotoStore
from snapid.serve.services import answers, references
from snapid.serve.services import explain as explaining
from snapid.serve.services.handoff import Handoff, render
from snapid.serve.services.photos import Kept, keep_photos
from snapid.serve.services.prediction_log import PredictionLog, model_fields
from snapid.serve.services.predictor import Predictor
from snapid.serve.services.thumbnails import thumbnail
from snapid.serve.services.unsure import UnsureReview

Photos = list[tuple[str, bytes]]


class Identify:
    """``photo_store`` is called only when a user consents to keeping photos (it opens the database)."""

    def __init__(self, predictor: Predictor, prediction_log: PredictionLog, *, photo_store: Callable[[], PhotoStore],
                 decode_slots: asyncio.Semaphore, unsure: UnsureReview | None = None):
        self.predictor, self.prediction_log = predictor, prediction_log
        self.photo_store, self.decode_slots = photo_store, decode_slots
        self.unsure = unsure  # unsure answers whose photos were kept go to the review queue (services/unsure.py)

    def check_capacity(self) -> None:
        """503 ``overloaded`` at once, before the photos are read, when the queue is full."""
        self.predictor.check_capacity()

    async def photos(self, photos: Photos, *, k: int, lang: str | None, consent: bool,
                     mode: Literal["same", "each"], start: float, explain: bool = False) -> dict:
        """The /predict answer (a PredictResponse's fields); ``start``: when the request began, for timings;
        ``explain``: with each photo's heatmap (services/explain.py; 409 explain_unavailable when it cannot)."""
        if explain:
            self.check_explain()
        if getattr(self.predictor.model, "detector", None) is not None:
            return await self._detect(photos, k=k, lang=lang, consent=consent, start=start)
        if mode == "each":
            return await self._each(photos, k=k, lang=lang, consent=consent, start=start, explain=explain)
        result = await (self.predictor.predict_explained(photos) if explain else self.predictor.predict(photos))
        body = answers.answer(result.model, result.probs, k=k, lang=lang, embedding=result.embedding)
        prediction_id, kept = await self._keep_and_log(result, body, [data for _, data in photos], consent=consent)
        return dict(prediction_id=prediction_id, **body, threshold=result.model.threshold, photos=result.photos,
                    model=result.model.info, timings_ms=_timings(result, result, start), mode="same", kept=kept,
                    **(await self._heatmaps([result], [body]) if explain else {}))

    def check_explain(self) -> None:
        """409 ``explain_unavailable`` at once, before the photos are read, when the bundle cannot explain."""
        explaining.check(self.predictor.model)

    async def _heatmaps(self, results: list, bodies: list[dict]) -> dict:
        """explain=true: every photo's heatmap for its answer's best class (PNGs made on a worker thread)."""
        def work() -> list[dict]:
            out: list[dict] = []
            for result, body in zip(results, bodies, strict=True):
                best = body["predictions"][0]["index"]
                for entry in explaining.heatmaps(result.model, result.maps, [best] * result.photos):
                    out.append({**entry, "photo": len(out)})
            return out

        async with self.decode_slots:
            return {"explain": await to_thread.run_sync(work)}

    async def _each(self, photos: Photos, *, k: int, lang: str | None, consent: bool, start: float,
                    explain: bool = False) -> dict:
        run = self.predictor.predict_explained if explain else self.predictor.predict
        results = await asyncio.gather(*(run([photo]) for photo in photos))
        model = results[0].model  # a hot swap between photos is possible; the first photo's model answers the rules
        objects, kept = [], []
        for n, (result, (_, data)) in enumerate(zip(results, photos, strict=True)):
            body = answers.answer(result.model, result.probs, k=k, lang=lang, embedding=result.embedding)
            prediction_id, photo_kept = await self._keep_and_log(result, body, [data], consent=consent)
            kept.append(photo_kept)
            objects.append({"photo": n, "prediction_id": prediction_id, **body})
        recognised = answers.recognised((o["photo"], o) for o in objects)
        first = objects[0]
        return dict(prediction_id=first["prediction_id"], predictions=first["predictions"],
                    unknown=first["unknown"], card=first["card"], threshold=model.threshold, photos=len(photos),
                    knowledge_version=first["knowledge_version"], knowledge_source=first["knowledge_source"],
                    model=model.info, mode="each", objects=objects,
                    kept="quota_full" if "quota_full" in kept else kept[0],
                    warnings=answers.warnings_for(model, recognised, lang),
                    timings_ms=_timings(max(results, key=lambda r: r.decode_ms),
                                        max(results, key=lambda r: r.inference_ms), start),
                    **(await self._heatmaps(results, objects) if explain else {}))

    async def _detect(self, photos: Photos, *, k: int, lang: str | None, consent: bool, start: float) -> dict:
        """A bundle with a detector: one answer per detected object, rules across all of them; with nothing
        detected, the photos are identified whole (combined as in mode=same) and the answer says so."""
        result = await self.predictor.predict_objects(photos)
        model, datas = result.model, [data for _, data in photos]
        if result.fallback:
            body = answers.answer(model, np.concatenate(result.probs).mean(axis=0), k=k, lang=lang,
                                  embedding=references.combined(np.concatenate(result.embeddings))
                                  if result.embeddings else None)
            prediction_id, kept = await self._keep_and_log(result, body, datas, consent=consent)
            return dict(prediction_id=prediction_id, **body, threshold=model.threshold, photos=result.photos,
                        model=model.info, mode="detect", objects=[], fallback="no_object_detected",
                        timings_ms=_timings(result, result, start), kept=kept)
        objects, kept = [], "not_asked"
        for photo, (found, probs) in enumerate(zip(result.found, result.probs, strict=True)):
            # a photo where nothing was found has one row (the whole photo) and no detection: no object
            vectors = result.embeddings[photo] if result.embeddings else [None] * len(probs)
            for detection, row, vector in zip(found.detections, probs, vectors, strict=False):
                body = answers.answer(model, row, k=k, lang=lang,
                                      embedding=None if vector is None else references.unit(vector))
                first = not objects  # the photos are kept once, with the first object's answer
                prediction_id, object_kept = await self._keep_and_log(result, body, datas if first else [],
                                                                      consent=consent and first)
                kept = object_kept if first else kept
                objects.append({"photo": photo, "prediction_id": prediction_id, **body, "box": list(detection.box),
                                "detector_score": round(min(1.0, max(0.0, detection.score)), 6)})
        recognised = answers.recognised(enumerate(objects))
        first = objects[0]
        return dict(prediction_id=first["prediction_id"], predictions=first["predictions"], unknown=first["unknown"],
                    card=first["card"], threshold=model.threshold, photos=result.photos, model=model.info,
                    knowledge_version=first["knowledge_version"], knowledge_source=first["knowledge_source"],
                    mode="detect", objects=objects, warnings=answers.warnings_for(model, recognised, lang),
                    timings_ms=_timings(result, result, start), kept=kept)

    async def handoff_photo(self, handoff: Handoff, row: dict, photo: tuple[str, bytes], *, k: int) -> dict:
        """A photo a phone sent to hand-off session ``row`` (already authorised): identified, its thumbnail
        and answer stored for the desktop, logged. Returns the phone's answer (a SessionUpload's fields)."""
        lang = row["lang"] or None
        result = await self.predictor.predict([photo])
        async with self.decode_slots:
            thumb = await to_thread.run_sync(thumbnail, photo[1], self.predictor.limits)
        body = answers.answer(result.model, result.probs, k=k, lang=lang, embedding=result.embedding)
        stored = {"prediction_id": str(uuid.uuid4()), "unknown": body["unknown"],
                  "predictions": [{key: p[key] for key in ("index", "id", "name", "score")}
                                  for p in body["predictions"]]}
        slot = await to_thread.run_sync(partial(handoff.store, row["id"], thumbnail=thumb, result=stored))
        self._log(stored["prediction_id"], result, body)
        session = await to_thread.run_sync(partial(handoff.results, row, model=result.model, after=slot["position"],
                                                   lang=lang))
        return {**slot, **render(result.model, stored, lang), "warnings": session["warnings"]}

    async def _keep_and_log(self, result, body: dict, photos: list[bytes], *, consent: bool) -> tuple[str, Kept]:
        """Keep the photos (with consent) and log the answer for feedback; returns its prediction id and
        what happened to the photos (the answer's ``kept``)."""
        prediction_id = str(uuid.uuid4())
        kept = await keep_photos(self.photo_store, self.decode_slots, photos, consent=consent,
                                 prediction_id=prediction_id)
        self._log(prediction_id, result, body)
        if self.unsure is not None:
            await self.unsure.offer(prediction_id, body, kept=kept)
        return prediction_id, kept

    def _log(self, prediction_id: str, result, body: dict) -> None:
        self.prediction_log.add({
            "id": prediction_id, **model_fields(result.model), "unknown": body["unknown"],
            "top": [{"id": p["id"], "score": p["score"]} for p in body["predictions"]], "n_photos": result.photos})


def _timings(decode, inference, start: float) -> dict:
    return {"decode": round(decode.decode_ms, 2), "inference": round(inference.inference_ms, 2),
            "total": round((time.perf_counter() - start) * 1000, 2)}
