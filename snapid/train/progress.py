"""How training talks to its caller: the CLI draws progress bars from these calls; the default is silent."""

from __future__ import annotations


class Reporter:
    def phase(self, title: str, total: int) -> None:
        """A new stretch of work with ``total`` units (batches or epochs)."""

    def progress(self, done: int, total: int, images_per_s: float | None = None) -> None:
        """Progress within the current stretch."""

    def epoch(self, record: dict) -> None:
        """One finished epoch: epoch, phase, train_loss, val_loss, top1, top5, macro_f1, lr, seconds, images_per_s,
        best."""

    def note(self, text: str) -> None:
        """Something the user should know (resumed, batch halved after out-of-memory...)."""
