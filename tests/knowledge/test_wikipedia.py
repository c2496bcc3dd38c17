"""Wikipedia enrichment against a real HTTP stub on 127.0.0.1: answers, timeouts, 429, 500, garbage.

No live network: every request goes to the stub, which records each call it receives.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from snapid.data.demo import KINDS
from snapid.knowledge import KnowledgeError
from snapid.knowledge.enrich import candidate_titles, enrich, parse_languages
from snapid.knowledge.store import import_cards, snapshot
from snapid.knowledge.wikipedia import (
    Wiki,
    WikiPolicy,
    fetch_summary,
    load_translator,
    make_client,
    parse_summary,
    retry_after_s,
)

PREFIX = "/api/rest_v1/page/summary/"


def summary(title: str, lang: str = "en", **extra) -> dict:
    return {"type": "standard", "title": title, "extract": f"{title} is a thing ({lang}).", "description": "d",
            "thumbnail": {"source": f"https://upload.test/{lang}/{title}.jpg", "width": 320, "height": 240},
            "content_urls": {"desktop": {"page": f"https://{lang}.wikipedia.test/wiki/{title}"}}, **extra}


class Stub:
    """Behaviour per (lang, title): a list of steps, one per call (the last one repeats). Unknown → 404.

    A step is ("json", doc) | ("status", code, headers) | ("sleep", seconds) | ("raw", bytes).
    """

    def __init__(self):
        self.routes: dict[tuple[str, str], list[tuple]] = {}
        self.calls: list[tuple[str, str]] = []
        self.agents: list[str] = []
        self.raw_paths: list[str] = []
        self.lock = threading.Lock()

    def step(self, lang: str, title: str) -> tuple:
        with self.lock:
            n = sum(1 for c in self.calls if c == (lang, title))
            self.calls.append((lang, title))
        steps = self.routes.get((lang, title), [("status", 404, {})])
        return steps[min(n, len(steps) - 1)]

    def count(self, lang: str | None = None, title: str | None = None) -> int:
        return sum(1 for c in self.calls if (lang is None or c[0] == lang) and (title is None or c[1] == title))


@pytest.fixture
def stub():
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            lang, _, rest = self.path.lstrip("/").partition("/")
            title = unquote(rest.removeprefix(PREFIX.lstrip("/"))).replace("_", " ")
            state.agents.append(self.headers.get("User-Agent", ""))
            state.raw_paths.append(self.path)
            kind, *args = state.step(lang, title)
            if kind == "sleep":
                time.sleep(args[0])
                return self.reply(200, json.dumps(summary(title, lang)).encode())
            if kind == "status":
                return self.reply(args[0], b'{"type":"error"}', args[1])
            body = args[0] if kind == "raw" else json.dumps(args[0]).encode()
            self.reply(200, body)

        def reply(self, code: int, body: bytes, headers: dict | None = None):
            try:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}/{{lang}}"
    yield state
    server.shutdown()
    server.server_close()


def policy(stub, **kw) -> WikiPolicy:
    defaults = dict(base_url=stub.base, contact="tests@example.invalid", timeout_s=0.5, backoff_s=0.01,
                    lookup_budget_s=5.0)
    return WikiPolicy(**{**defaults, **kw})


class Sleeps(list):
    """Records the waits instead of waiting; ``clock`` moves on by what was waited."""

    now = 0.0

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def fetch(stub, title: str, lang: str = "en", sleep=None, **kw):
    p = policy(stub, **kw)
    with make_client(p) as client:
        return fetch_summary(client, p, lang, title, sleep=Sleeps() if sleep is None else sleep)


# --- one lookup ------------------------------------------------------------------------
def test_found_summary_and_polite_request(stub):
    stub.routes[("en", "AC/DC band")] = [("json", summary("AC/DC band"))]
    result = fetch(stub, "AC/DC band")
    assert result.status == "ok" and result.calls == 1
    assert result.data == {"lang": "en", "title": "AC/DC band", "extract": "AC/DC band is a thing (en).",
                           "description": "d", "type": "standard", "thumbnail": "https://upload.test/en/AC/DC band.jpg",
                           "url": "https://en.wikipedia.test/wiki/AC/DC band"}
    assert stub.raw_paths == ["/en/api/rest_v1/page/summary/AC%2FDC_band"]  # the slash cannot change the path
    assert stub.agents[0].startswith("snapid/") and "tests@example.invalid" in stub.agents[0]


def test_missing_page_and_disambiguation_are_not_retried(stub):
    stub.routes[("en", "Mercury")] = [("json", summary("Mercury", type="disambiguation"))]
    assert (fetch(stub, "Nothing here").status, stub.count()) == ("missing", 1)
    assert fetch(stub, "Mercury").status == "missing" and stub.count() == 2
    assert fetch(stub, "1" * 300).status == "missing" and stub.count() == 2  # too long: no request


def test_server_errors_are_retried_a_bounded_number_of_times_with_backoff(stub):
    stub.routes[("en", "Rose")] = [("status", 500, {})]
    sleeps = Sleeps()
    result = fetch(stub, "Rose", sleep=sleeps, retries=2, backoff_s=0.5)
    assert (result.status, result.calls, stub.count()) == ("error", 3, 3)
    assert sleeps == [0.5, 1.0] and "HTTP 500" in result.error


def test_429_honours_retry_after(stub):
    stub.routes[("en", "Rose")] = [("status", 429, {"Retry-After": "2"}), ("json", summary("Rose"))]
    sleeps = Sleeps()
    result = fetch(stub, "Rose", sleep=sleeps)
    assert (result.status, result.calls, sleeps) == ("ok", 2, [2.0])


def test_429_asking_too_long_is_not_waited_for(stub):
    stub.routes[("en", "Rose")] = [("status", 429, {"Retry-After": "3600"})]
    sleeps = Sleeps()
    result = fetch(stub, "Rose", sleep=sleeps)
    assert (result.status, result.calls, sleeps) == ("error", 1, [])
    assert "would wait 3600" in result.error


def test_other_client_errors_are_not_retried(stub):
    stub.routes[("en", "Rose")] = [("status", 403, {})]
    assert (fetch(stub, "Rose").calls, stub.count()) == (1, 1)


def test_timeouts_are_bounded(stub):
    stub.routes[("en", "Slow")] = [("sleep", 2.0)]
    start = time.monotonic()
    result = fetch(stub, "Slow", timeout_s=0.2, retries=1, sleep=time.sleep)
    elapsed = time.monotonic() - start
    assert result.status == "error" and "Timeout" in result.error
    assert result.calls == 2 and elapsed < 1.5


def test_lookup_budget_stops_retries(stub):
    stub.routes[("en", "Rose")] = [("status", 503, {})]
    p, sleeps = policy(stub, retries=10, backoff_s=1.0, lookup_budget_s=2.5, max_wait_s=100), Sleeps()
    with make_client(p) as client:
        result = fetch_summary(client, p, "en", "Rose", sleep=sleeps, clock=sleeps.clock)
    assert (result.calls, sleeps) == (2, [1.0])  # waits 1 s, then 2 s more would pass the 2.5 s budget


@pytest.mark.parametrize("body", [b"<html>rate limited</html>", b"", b"[1, 2]", b'{"title": 3}',
                                  b'{"title": "x"}', b"\xff\xfe", b"[" * 100_000])
def test_garbage_is_no_info_and_not_retried(stub, body):
    stub.routes[("en", "Rose")] = [("raw", body)]
    result = fetch(stub, "Rose")
    assert (result.status, result.calls, result.data) == ("invalid", 1, {})


def test_huge_answer_is_cut_off(stub):
    stub.routes[("en", "Rose")] = [("raw", json.dumps(summary("Rose", extra="x" * 3_000_000)).encode())]
    assert fetch(stub, "Rose").status == "invalid"


def test_parse_summary_keeps_only_http_urls():
    doc = summary("X")
    doc["thumbnail"]["source"] = "javascript:alert(1)"
    data = parse_summary(json.dumps(doc).encode(), "en")
    assert data["thumbnail"] == "" and data["url"].startswith("https://")


def test_retry_after_forms():
    assert retry_after_s("7") == 7.0 and retry_after_s(None) is None and retry_after_s("soon") is None
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 < retry_after_s(format_datetime(later, usegmt=True)) <= 30
    # non-ASCII digits (str.isdigit() accepts them, float() does not) and other non-numbers are unreadable
    assert all(retry_after_s(v) is None for v in ("\u00b2", "\u00b9", "\u0663", "-1", "1e3", "1_0"))


# --- the cached client -----------------------------------------------------------------
def test_cache_makes_a_rerun_free_and_refresh_asks_again(stub, engine):
    stub.routes[("en", "Rose")] = [("json", summary("Rose"))]
    p = policy(stub)
    with make_client(p) as client:
        wiki = Wiki(engine, p, client, sleep=Sleeps())
        first, second = wiki.lookup("en", "Rose"), wiki.lookup("en", "Rose")
        assert (first.calls, first.cached, second.calls, second.cached) == (1, False, 0, True)
        assert second.data == first.data and stub.count() == 1
        assert Wiki(engine, p, client, refresh=True).lookup("en", "Rose").calls == 1
    stale = policy(stub, ttl_s=0)
    with make_client(stale) as client:
        assert Wiki(engine, stale, client).lookup("en", "Rose").calls == 1
    assert stub.count() == 3


def test_failures_are_cached_briefly_so_reruns_do_not_storm(stub, engine):
    stub.routes[("en", "Rose")] = [("status", 500, {})]
    p = policy(stub, retries=1)
    with make_client(p) as client:
        assert Wiki(engine, p, client, sleep=Sleeps()).lookup("en", "Rose").calls == 2
        assert Wiki(engine, p, client, sleep=Sleeps()).lookup("en", "Rose").cached
        assert stub.count() == 2
        expired = policy(stub, retries=1, error_ttl_s=0)
        assert Wiki(engine, expired, client, sleep=Sleeps()).lookup("en", "Rose").calls == 2


def test_breaker_stops_asking_a_failing_language(stub, engine):
    for i in range(6):
        stub.routes[("en", f"T{i}")] = [("status", 500, {})]
    p = policy(stub, retries=1, max_consecutive_failures=3)
    with make_client(p) as client:
        wiki = Wiki(engine, p, client, sleep=Sleeps())
        statuses = [wiki.lookup("en", f"T{i}").status for i in range(6)]
    assert statuses == ["error"] * 3 + ["skipped"] * 3
    assert stub.count() == 6  # 3 lookups × 2 tries, then nothing


# --- enrichment of a dataset ----------------------------------------------------------
@pytest.fixture
def pills(tmp_path, engine):
    """The demo dataset (one photo per kind) with its drugs.csv imported as cards."""
    from snapid.data.demo import generate_demo
    from snapid.importer import import_dataset

    info = generate_demo(tmp_path / "demo", seed=1, per_class=1, multi=0, size=(96, 72))
    import_dataset(info.root, name="pills", engine=engine, fmt="aihub")
    import_cards(info.drugs_csv, dataset="pills", engine=engine)
    return "pills"


def run(stub, engine, **kw):
    defaults = dict(engine=engine, languages=["ko", "en"], policy=policy(stub, retries=1), sleep=Sleeps())
    return enrich("pills", **{**defaults, **kw})


def test_enrich_fallback_is_marked_and_rerun_is_free(stub, engine, pills):
    first, second = KINDS[0], KINDS[1]
    stub.routes[("ko", first.name_ko)] = [("json", summary(first.name_ko, "ko"))]
    stub.routes[("en", first.name_en)] = [("json", summary(first.name_en))]
    stub.routes[("en", second.name_en)] = [("json", summary(second.name_en))]
    report = run(stub, engine)
    # one request per class and language, and one for the language links of the page found only in English
    assert report.classes == 12 and report.calls == stub.count() == 25
    assert report.outcomes == {"ok": 3, "fallback": 1, "missing": 20, "failed": 0}
    cards = snapshot("pills", engine=engine)["cards"]
    assert cards[str(first.class_id)]["wikipedia"]["ko"]["lang"] == "ko"
    assert cards[str(first.class_id)]["wikipedia"]["ko"]["fallback"] is False
    fallback = cards[str(second.class_id)]["wikipedia"]["ko"]
    assert fallback["fallback"] is True and fallback["lang"] == "en" and fallback["requested_lang"] == "ko"
    assert fallback["title"] == second.name_en
    again = run(stub, engine)
    assert (again.calls, again.cache_hits, stub.count()) == (0, 25, 25)  # at most 1 call per lookup per TTL
    assert again.outcomes == report.outcomes


def test_failures_leave_cards_as_they_were(stub, engine, pills):
    kind = KINDS[0]
    stub.routes[("en", kind.name_en)] = [("json", summary(kind.name_en))]
    run(stub, engine, languages=["en"])
    before = snapshot("pills", engine=engine)
    for k in KINDS:  # now every lookup fails in a different way
        stub.routes[("en", k.name_en)] = [("status", 500, {})]
    stub.routes[("en", KINDS[1].name_en)] = [("status", 429, {"Retry-After": "1"})]
    stub.routes[("en", KINDS[2].name_en)] = [("raw", b"{not json")]
    report = run(stub, engine, languages=["en"], refresh=True)
    assert report.outcomes == {"ok": 0, "fallback": 0, "missing": 0, "failed": 12}
    # 500 twice, 429 twice, garbage once; then the breaker stopped the run from asking: no storm
    assert report.calls == 5 and stub.count() == 12 + 5
    assert snapshot("pills", engine=engine) == before
    assert before["cards"][str(kind.class_id)]["wikipedia"]["en"]["title"] == kind.name_en


def test_no_network_changes_nothing(engine, pills):
    before = snapshot("pills", engine=engine)
    closed = WikiPolicy(base_url="http://127.0.0.1:9/{lang}", timeout_s=0.5, retries=1, backoff_s=0.01)
    report = enrich("pills", engine=engine, languages=["en", "ko"], policy=closed, sleep=Sleeps())
    assert report.outcomes["failed"] == 24 and report.calls == 2 * 3  # 3 lookups per language, then the breaker
    assert "cannot connect" in report.failures[0]
    assert snapshot("pills", engine=engine) == before


def test_translator_hook_rewrites_fallbacks_only(stub, engine, pills):
    kind = KINDS[0]
    stub.routes[("en", kind.name_en)] = [("json", summary(kind.name_en))]
    seen = []

    def translate(text, source, target):
        seen.append((source, target))
        return f"[{target}] {text}"

    run(stub, engine, translator=translate)
    card = snapshot("pills", engine=engine)["cards"][str(kind.class_id)]["wikipedia"]
    assert seen == [("en", "ko")]
    assert card["ko"]["translated"] is True and card["ko"]["extract"].startswith("[ko] ")
    assert card["en"]["translated"] is False and not card["en"]["extract"].startswith("[")


def test_candidate_titles():
    card = {"names": {"ko": "민들레", "en": "Dandelion"}, "scientific_name": "Taraxacum officinale"}
    titles = candidate_titles("ko", card, {"name": "dandelion", "display_names": {}})
    assert titles == ["민들레", "Taraxacum officinale"]
    assert candidate_titles("fr", card, {"name": "dandelion", "display_names": {}}) == ["Taraxacum officinale"]
    assert candidate_titles("en", None, {"name": "Bellis perennis", "display_names": {}}) == ["Bellis perennis"]
    assert candidate_titles("en", None, {"name": "1899", "display_names": {}}) == []  # not the year's page


def test_languages_and_translator_specs():
    assert parse_languages(" KO, en,ko ") == ["ko", "en"]
    for bad in ("", "korean", "en,../x"):
        with pytest.raises(KnowledgeError):
            parse_languages(bad)
    assert load_translator("json:dumps") is json.dumps
    for bad in ("nocolon", "no_such_module_xyz:f", "json:nope"):
        with pytest.raises(KnowledgeError):
            load_translator(bad)
