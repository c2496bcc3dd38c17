"""Candidate subsets (issue 20): answer among some classes only ("my pills", a store's catalogue, a city's
landmarks).

`POST /api/v1/predict?classes=a,b` (class ids or names, repeated or comma-separated) or `?subset=NAME` (a
named subset: the bundle's subsets.json, written by `snapid export --subset NAME=FILE`, or a "subsets" entry
of its knowledge.json). The probabilities are renormalised over the candidates, and the "unknown" rule (best
score under the bundle's threshold) is applied after, to the renormalised scores. A name the model does not
know, or a subset the bundle does not have, is 422 naming it, before the photos are read.

The route resolves the request to class ids and sets them for the identification it starts (`only`, a
context variable read by `answers.answer`), so every path (same, each, detect) answers among them without
threading a parameter through each."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from snapid.errors import SnapidError
from snapid.serve.services.model import LoadedModel

MAX_NAMES = 10_000
_CANDIDATES: ContextVar[tuple[str, ...] | None] = ContextVar("snapid_candidates", default=None)
_SUBSETS: weakref.WeakKeyDictionary[LoadedModel, dict[str, list[str]]] = weakref.WeakKeyDictionary()


class UnknownCandidates(SnapidError):
    code = "unknown_classes"
    status = 422


def named(model: LoadedModel) -> dict[str, list[str]]:
    """The model's named subsets {name: [class id, ...]} (bundle first, then its knowledge base), read once;
    ids the model does not know are left out, and so is a subset left empty by that."""
    cached = _SUBSETS.get(model)
    if cached is None:
        known = {c["id"] for c in model.labels}
        cached = {}
        for doc in (model.bundle.knowledge, model.bundle.subsets):  # the bundle's own list wins a name clash
            entries = doc.get("subsets") if isinstance(doc, dict) else None
            for name, ids in (entries.items() if isinstance(entries, dict) else ()):
                kept = list(dict.fromkeys(str(i) for i in ids if str(i) in known)) if isinstance(ids, list) else []
                if kept:
                    cached[str(name)] = kept
        _SUBSETS[model] = cached
    return cached


def split_names(values: list[str] | None) -> list[str]:
    """``classes=a&classes=b,c`` → [a, b, c] (blank items dropped, order kept, duplicates once)."""
    names = [part.strip() for value in values or [] for part in value.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def resolve(model: LoadedModel, classes: list[str] | None, subset: str | None) -> tuple[str, ...] | None:
    """The candidate class ids a request asks for (None: every class); 422 for what the model lacks."""
    names = split_names(classes)
    if names and subset:
        raise UnknownCandidates("give classes= or subset=, not both", code="usage")
    if subset:
        subsets = named(model)
        if subset not in subsets:
            have = ", ".join(sorted(subsets)) or "none"
            raise UnknownCandidates(f"unknown subset {subset!r}; this model has: {have}", code="unknown_subset")
        return tuple(subsets[subset])
    if not names:
        return None
    if len(names) > MAX_NAMES:
        raise UnknownCandidates(f"classes=: at most {MAX_NAMES} names", code="usage")
    by_id = {c["id"]: c["id"] for c in model.labels}
    by_name = {}
    for c in model.labels:
        by_name.setdefault(c["name"], c["id"])
        by_name.setdefault(c["name"].casefold(), c["id"])
    found, unknown = [], []
    for name in names:
        cid = by_id.get(name) or by_name.get(name) or by_name.get(name.casefold())
        (found if cid else unknown).append(cid or name)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:20])
        shown += f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise UnknownCandidates(f"classes=: the model has no class {shown} (GET /api/v1/classes lists them)")
    return tuple(dict.fromkeys(found))


@contextmanager
def only(candidates: tuple[str, ...] | None) -> Iterator[None]:
    """Answers given inside (in this task and the tasks it starts) are among ``candidates`` (None: all)."""
    token = _CANDIDATES.set(candidates)
    try:
        yield
    finally:
        _CANDIDATES.reset(token)


def restricted(model: LoadedModel, probs: np.ndarray) -> tuple[np.ndarray, int]:
    """(probabilities renormalised over the current candidates, how many there are); unchanged outside `only`.
    Candidates a hot-swapped model lacks are skipped; with none left, every class is kept."""
    candidates = _CANDIDATES.get()
    if candidates is None:
        return probs, len(probs)
    index = {c["id"]: c["index"] for c in model.labels}
    rows = [index[c] for c in candidates if c in index]
    if not rows:
        return probs, len(probs)
    out = np.zeros_like(probs)
    kept = probs[rows].astype(np.float64)
    total = kept.sum()
    out[rows] = kept / total if total > 0 else 1.0 / len(rows)
    return out, len(rows)
