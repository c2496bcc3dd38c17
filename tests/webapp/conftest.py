"""Web-app fixtures: the tiny colour model of tests/serve with knowledge cards and a rule, and a real
uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapid.export.bundle import write_bundle
from tests.serve.conftest import CLASSES, bundle_files

RULE_MESSAGE = {"en": "red and green must not be taken together", "ko": "빨강과 초록은 함께 복용하면 안 됩니다"}
KNOWLEDGE = {
    "dataset": "colours", "version": 2, "cards_version": 1, "rules_version": 2, "languages": ["en", "ko"],
    "cards": {
        "red": {"class_id": "red", "name": "Red thing", "names": {"ko": "빨간 알약", "en": "Red pill"},
                "scientific_name": "Rubrum testum",
                "descriptions": {"ko": "빨간 가상의 알약", "en": "A fictional red pill"},
                "image": "https://example.org/red.png", "links": [{"label": "maker", "url": "https://example.org/red"}],
                "fields": {"ingredient": "redamol 10 mg", "maker": "Demo Pharm", "price": "1,000 원"},
                "wikipedia": {"en": {"lang": "en", "title": "Red", "extract": "Red is a colour.",
                                     "description": "colour", "thumbnail": "", "url": "https://en.wikipedia.org/wiki/Red",
                                     "fallback": False, "translated": False}},
                "taxonomy": [{"rank": "species", "name": "Rubrum testum", "id": "Q1", "labels": {"ko": "빨강풀"}},
                             {"rank": "family", "name": "Rubraceae", "id": "Q2",
                              "labels": {"ko": "빨강과", "en": "reds"}},
                             {"rank": "order", "name": "Rubrales", "id": "Q3", "labels": {}}]},
        "green": {"class_id": "green", "name": "Green thing", "names": {"ko": "초록 알약", "en": "Green pill"},
                  "scientific_name": "", "descriptions": {"en": "A fictional green pill"}, "image": "",
                  "links": [], "fields": {}, "wikipedia": {}},
    },
    "rules": [{"classes": ["green", "red"], "severity": "contraindicated", "message": RULE_MESSAGE}],
}


def knowledge_bundle(path: Path, knowledge: dict | None = KNOWLEDGE, *, classes: list[dict] | None = None,
                     **kw) -> Path:
    files = bundle_files(**kw)
    if classes is not None:
        files["labels.json"] = json.dumps({"classes": classes}).encode()
    if knowledge is not None:
        files["knowledge.json"] = json.dumps(knowledge, ensure_ascii=False).encode()
    write_bundle(path, files, info={"name": "colours", "version": "1"})
    return path


@pytest.fixture
def opened(browser):
    """A factory of browser pages (English unless a context says otherwise), each closed at the end, which
    asserts that nothing left 127.0.0.1 and there were no console or CSP errors. ``browser`` is the
    session fixture the browser test modules import from tests.serve.test_dashboard_browser."""
    from tests.serve.test_dashboard_browser import Page

    pages = []

    def make(**context):
        page = Page(browser, **{"locale": "en-US", **context})
        pages.append(page)
        return page.page
    yield make
    for page in pages:
        page.close()


@pytest.fixture
def kbundle(tmp_path) -> Path:
    return knowledge_bundle(tmp_path / "bundles" / "colours")


__all__ = ["CLASSES", "KNOWLEDGE", "RULE_MESSAGE", "knowledge_bundle"]
