"""Wikipedia REST summaries for knowledge cards: polite, bounded, cached. Used ahead of time only.

One lookup = GET {base}/api/rest_v1/page/summary/{title} for one language, with a descriptive
User-Agent, a per-request timeout, bounded retries with exponential back-off that honour
Retry-After (429/503), and a time budget per lookup. Results (found, missing, failed) are cached
in the database with the time fetched, so a re-run within the TTL makes no request; failures are
cached for a shorter time so a broken server is not hammered. A circuit breaker stops asking a
language after several lookups in a row fail. Garbage answers count as "invalid": no info.
Serving never imports this module.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlencode

import httpx
from sqlalchemy import Engine

from snapid import __version__
from snapid.knowledge import KnowledgeError
from snapid.track import knowledge as store
from snapid.track.db import transaction

SUMMARY_PATH = "/api/rest_v1/page/summary/"
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_TITLE_BYTES = 255          # Wikipedia's own limit
MAX_EXTRACT_CHARS = 4000
Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class WikiPolicy:
    base_url: str = "https://{lang}.wikipedia.org"
    wikidata_url: str = "https://www.wikidata.org"
    contact: str = "contact: set SNAPID_WIKI_CONTACT"
    timeout_s: float = 5.0               # per request (connect, each read)
    retries: int = 2                     # after the first try: at most 3 requests per lookup
    backoff_s: float = 0.5               # 0.5 s, 1 s, 2 s … unless Retry-After says otherwise
    max_wait_s: float = 10.0             # a Retry-After longer than this: give up instead of waiting
    lookup_budget_s: float = 20.0        # all tries and waits of one lookup together
    ttl_s: float = 30 * 86400            # found / missing stay fresh this long
    error_ttl_s: float = 3600            # failures are not retried for this long (no retry storm)
    max_consecutive_failures: int = 3    # then stop asking that language for the rest of the run
    max_body_bytes: int = 1 << 20

    @property
    def user_agent(self) -> str:
        return f"snapid/{__version__} ({self.contact}) httpx/{httpx.__version__}"

    def summary_url(self, lang: str, title: str) -> str:
        base = self.base_url.replace("{lang}", lang).rstrip("/")
        return base + SUMMARY_PATH + quote(title.replace(" ", "_"), safe="")

    def langlinks_url(self, lang: str, title: str, target: str) -> str:
        """The action API's language links of ``title`` on ``lang`` Wikipedia, only the one to ``target``."""
        base = self.base_url.replace("{lang}", lang).rstrip("/")
        return base + "/w/api.php?" + urlencode({"action": "query", "format": "json", "formatversion": "2",
                                                 "prop": "langlinks", "lllang": target, "redirects": "1",
                                                 "titles": title})

    def fresh(self, status: str, fetched_at: datetime, now: datetime) -> bool:
        ttl = self.ttl_s if status in ("ok", "missing") else self.error_ttl_s
        return now - fetched_at < timedelta(seconds=ttl)


@dataclass
class Lookup:
    status: str                  # ok, missing, error, invalid, skipped
    data: dict = field(default_factory=dict)
    error: str = ""
    calls: int = 0               # requests actually sent for this lookup
    cached: bool = False


def make_client(policy: WikiPolicy) -> httpx.Client:
    return httpx.Client(headers={"User-Agent": policy.user_agent, "Accept": "application/json"},
                        timeout=httpx.Timeout(policy.timeout_s), follow_redirects=True, max_redirects=3)


def parse_summary(body: bytes, lang: str) -> dict | None:
    """The fields a card shows, from a summary answer; None when the body is not a usable summary."""
    try:
        return summary_fields(json.loads(body), lang)
    except (ValueError, RecursionError):
        return None


def summary_fields(doc: object, lang: str) -> dict | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("title"), str) or not isinstance(doc.get("extract"), str):
        return None
    urls = doc.get("content_urls")
    page = (urls.get("desktop") or {}).get("page") if isinstance(urls, dict) else None
    thumb = doc.get("thumbnail") if isinstance(doc.get("thumbnail"), dict) else {}
    return {"lang": lang, "title": doc["title"][:MAX_TITLE_BYTES], "extract": doc["extract"][:MAX_EXTRACT_CHARS],
            "description": str(doc.get("description") or "")[:500], "type": str(doc.get("type") or "standard")[:40],
            "thumbnail": _http_url(thumb.get("source")), "url": _http_url(page)}


def _http_url(value: object) -> str:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) < 2000 else ""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,18}", value):  # ASCII digits only: str.isdigit() also takes '²', which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _read_capped(response: httpx.Response, limit: int, deadline: float, clock: Clock) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"answer larger than {limit} bytes")
        if clock() > deadline:
            raise httpx.ReadTimeout("answer took longer than the lookup budget")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_summary(client: httpx.Client, policy: WikiPolicy, lang: str, title: str, *,
                  sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Lookup:
    """One summary lookup over the network, with bounded retries; never raises for network trouble."""
    if not title.strip() or len(title.encode()) > MAX_TITLE_BYTES:
        return Lookup("missing", error="not a possible Wikipedia title")
    return fetch_json(client, policy, policy.summary_url(lang, title), lambda doc: _summary_answer(doc, lang),
                      sleep=sleep, clock=clock)


def _summary_answer(doc: object, lang: str) -> Lookup:
    data = summary_fields(doc, lang)
    if data is None:
        return Lookup("invalid", error="the answer is not a page summary")
    if data["type"] == "disambiguation":
        return Lookup("missing", error="a disambiguation page")
    return Lookup("ok", data=data)


def fetch_json(client: httpx.Client, policy: WikiPolicy, url: str, read: Callable[[object], Lookup], *,
               sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Lookup:
    """GET ``url`` and turn its JSON into a Lookup with ``read``: 404 is "missing", 429 and 5xx are
    retried a bounded number of times (honouring Retry-After), a timeout or a garbage answer never raises."""
    deadline = clock() + policy.lookup_budget_s
    lookup = Lookup("error")
    for attempt in range(policy.retries + 1):
        lookup.calls += 1
        wait = None
        try:
            with client.stream("GET", url) as response:
                if response.status_code == 200:
                    try:
                        doc = json.loads(_read_capped(response, policy.max_body_bytes, deadline, clock))
                    except (ValueError, RecursionError) as exc:
                        too_big = "larger than" in str(exc)
                        return _done(lookup, "invalid", error=str(exc) if too_big else "the answer is not JSON")
                    result = read(doc)
                    return _done(lookup, result.status, data=result.data, error=result.error)
                if response.status_code == 404:
                    return _done(lookup, "missing", error="no such page")
                lookup.error = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUSES:
                    return lookup
                wait = retry_after_s(response.headers.get("Retry-After"))
        except httpx.ConnectError as exc:  # no route, refused, no DNS: waiting a second rarely helps
            lookup.error = f"cannot connect: {exc}"[:300]
            break
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            lookup.error = f"{type(exc).__name__}: {exc}"[:300]
        if attempt == policy.retries:
            break
        wait = policy.backoff_s * 2 ** attempt if wait is None else wait
        if wait > policy.max_wait_s or clock() + wait > deadline:
            lookup.error += f"; not retried (would wait {wait:.1f} s)"
            break
        sleep(wait)
    return lookup


def _done(lookup: Lookup, status: str, *, data: dict | None = None, error: str = "") -> Lookup:
    lookup.status, lookup.data, lookup.error = status, data or {}, error
    return lookup


@dataclass
class Breaker:
    """Counts lookups in a row that failed for one language; open after ``limit``."""

    limit: int
    failures: int = 0

    @property
    def open(self) -> bool:
        return self.failures >= self.limit

    def record(self, status: str) -> None:
        # garbage counts too: a captive portal or a broken proxy answers every title with it
        self.failures = self.failures + 1 if status in ("error", "invalid") else 0


@dataclass
class Wiki:
    """Cached lookups for one enrichment run: the database cache first, the network only when stale."""

    engine: Engine
    policy: WikiPolicy
    client: httpx.Client
    refresh: bool = False
    sleep: Sleep = time.sleep
    breakers: dict[str, Breaker] = field(default_factory=dict)

    def lookup(self, lang: str, title: str) -> Lookup:
        """The summary of ``title`` on ``lang`` Wikipedia."""
        return self.cached(lang, title, lambda: fetch_summary(self.client, self.policy, lang, title, sleep=self.sleep))

    def langlink(self, lang: str, title: str, target: str) -> Lookup:
        """The title in ``target`` of the page ``title`` on ``lang`` Wikipedia: data {"title"}, or missing."""
        if not title.strip() or len(title.encode()) > MAX_TITLE_BYTES:
            return Lookup("missing", error="not a possible Wikipedia title")
        url = self.policy.langlinks_url(lang, title, target)
        return self.cached(f"{lang}>{target}", title, lambda: fetch_json(
            self.client, self.policy, url, lambda doc: _langlink_answer(doc, target), sleep=self.sleep),
            breaker=lang)

    def cached(self, kind: str, key: str, fetch: Callable[[], Lookup], *, breaker: str | None = None) -> Lookup:
        """``fetch()``'s answer, from the database cache while fresh; each ``breaker`` (default: ``kind``)
        stops asking after several failures in a row."""
        now = datetime.now(UTC)
        with transaction(self.engine) as session:
            hit = store.wiki_cached(session, lang=kind, title=key)
        if hit and not self.refresh and self.policy.fresh(hit["status"], hit["fetched_at"], now):
            return Lookup(hit["status"], hit["data"], hit["error"], cached=True)
        name = breaker or kind
        guard = self.breakers.setdefault(name, Breaker(self.policy.max_consecutive_failures))
        if guard.open:
            return Lookup("skipped",
                          error=f"{name}: {guard.failures} lookups in a row failed; not asking again this run")
        result = fetch()
        guard.record(result.status)
        with transaction(self.engine) as session:
            store.save_wiki_lookup(session, lang=kind, title=key, status=result.status, data=result.data,
                                   error=result.error)
        return result


def _langlink_answer(doc: object, target: str) -> Lookup:
    """{"query": {"pages": [{"title", "langlinks": [{"lang", "title"}]}]}} (formatversion 2) → the target title."""
    pages = doc.get("query", {}).get("pages") if isinstance(doc, dict) and isinstance(doc.get("query"), dict) else None
    if not isinstance(pages, list):
        return Lookup("invalid", error="the answer is not a page list")
    for page in pages:
        links = page.get("langlinks") if isinstance(page, dict) else None
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, dict):
                continue
            title = link.get("title")
            if link.get("lang") == target and isinstance(title, str) and title.strip():
                return Lookup("ok", data={"title": title.strip()[:MAX_TITLE_BYTES]})
    return Lookup("missing", error=f"no {target} page linked")


Translator = Callable[[str, str, str], "str | None"]  # (text, from_lang, to_lang) → text, or None


def load_translator(spec: str) -> Translator:
    """The callable named 'package.module:function'. Off unless asked for: no unofficial endpoints built in."""
    import importlib

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise KnowledgeError(f"translator {spec!r}: expected 'package.module:function'")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise KnowledgeError(f"translator {spec!r}: {exc}") from None
    if not callable(func):
        raise KnowledgeError(f"translator {spec!r} is not callable")
    return func
