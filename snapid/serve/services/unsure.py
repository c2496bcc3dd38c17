"""Unsure answers to the review queue (issue 20; the rule and the cap are snapid.feedback.unsure's): called
for every answer after its photos were kept, it files those that came out "unknown" or with a small margin
between the two best classes, pre-labelled with the model's top 3. Only with consent (photos kept), never
failing the answer: a database that refuses the row is logged, and the answer still comes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from anyio import to_thread
from sqlalchemy import Engine

from snapid.feedback.unsure import file_unsure, is_unsure

log = logging.getLogger("snapid.serve")


class UnsureReview:
    def __init__(self, engine: Callable[[], Engine], *, per_day: int, margin: float):
        self.engine, self.per_day, self.margin = engine, per_day, margin

    async def offer(self, prediction_id: str, body: dict, *, kept: str) -> bool:
        """File ``body`` (an answer: predictions, unknown) for review when its photos were kept and it is
        unsure; True when it was filed (False too when the day's cap is reached)."""
        if kept != "kept" or self.per_day <= 0 or not is_unsure(body, self.margin):
            return False
        try:
            filed = await to_thread.run_sync(
                lambda: file_unsure(self.engine(), prediction_id=prediction_id, body=body, per_day=self.per_day))
        except Exception as exc:  # the database busy or away: the answer matters more than the queue
            log.warning("could not file unsure prediction %s for review (%s: %s)", prediction_id,
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return False
        return filed is not None
