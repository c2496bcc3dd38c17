"""One typed Settings object (env prefix SNAPID_). Inner functions take only the values they use."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from snapid.errors import UsageError

MIN_SECRET_CHARS = 16  # tokens and keys: shorter ones are refused at startup


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNAPID_", extra="ignore")

    home: Path = Field(Path("snapid-home"), description="Workspace folder: database, caches, runs, bundles.")
    db_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the workspace.")
    workers: int = Field(default_factory=_default_workers, description="Parallel workers for import/prepare.")
    max_pixels: int = Field(40_000_000, description="Largest image accepted, in pixels (width x height).")
    min_side: int = Field(32, description="Smallest accepted image side, in pixels.")
    max_file_bytes: int = Field(64 * 1024 * 1024, description="Largest image file read during import.")

    # --- serving (snapid serve) ---
    max_body_bytes: int = Field(10 * 1024 * 1024,
                                description="Largest request body the API reads, counted while streaming.")
    max_files: int = Field(5, description="Photos per prediction request (all of one object).")
    max_batch: int = Field(16, description="Most photos run through the model together.")
    batch_wait_ms: float = Field(5.0,
                                 description="How long a batch waits for more photos when others are on their way.")
    queue_size: int = Field(64, description="Prediction requests admitted at once; more get 503 with Retry-After.")
    decode_threads: int = Field(2, description="Threads decoding uploaded photos.")
    decode_timeout_s: float = Field(5.0, description="CPU seconds decoding one photo may take (the decoding thread's "
                                                     "own time: waiting for a busy CPU does not count); past it 422 "
                                                     "decode_timeout (0: no bound).")
    inference_threads: int = Field(0, description="ONNX Runtime intra-op threads (0: one per core).")
    admin_token: str = Field("", description="Token for POST /api/v1/admin/reload, at least 16 characters (empty: "
                                             "admin endpoints disabled).")
    reload_poll_s: float = Field(
        1.0, description="How often the served bundle folder is checked for a new version (0: never).")
    top_k: int = Field(5, description="Predictions returned per request.")
    graceful_timeout_s: float = Field(30.0, description="On SIGTERM, how long in-flight requests may take to finish.")
    drain_s: float = Field(1.0, description="On SIGTERM, how long readiness answers 503 before the listener closes.")
    body_deadline_s: float = Field(30.0, description="Whole request body must arrive within this time (slow clients).")
    bundle: Path | None = Field(None, description="The bundle folder or .snapid file to serve (snapid serve sets it).")
    serve_db_timeout_s: float = Field(1.5, description="How long a request waits for a database lock (a long import, "
                                                       "another worker, a backup) before 503 with Retry-After.")
    bind_host: str = Field("", description="The address the server listens on (snapid serve sets it from --host); a "
                                           "name the server answers to.")
    allowed_hosts: str = Field("", description="More Host names the server answers to, comma-separated, besides "
                                               "localhost, its own addresses and the public URL's host; others get 400 "
                                               "(DNS rebinding). `*` turns the check off: unsafe.")
    forwarded_allow_ips: str = Field("", description="Reverse proxies (IPs or networks, comma-separated) whose "
                                                     "X-Forwarded-For and X-Forwarded-Proto are believed (empty: none; "
                                                     "`*`: any sender, unsafe).")

    # --- saved photos and feedback (snapid.feedback) ---
    review_token: str = Field("", description="Bearer token for the review queue (/review and /api/v1/review), at "
                                              "least 16 characters (empty: review disabled).")
    keep_days: float = Field(30.0, description="Photos kept with consent are deleted this many days after upload (0: "
                                               "no time limit).")
    sweep_interval_s: float = Field(3600.0, description="How often the server deletes photos past keep_days and "
                                                        "predictions past prediction_keep_days (0: only at startup).")
    photo_quota_bytes: int = Field(5 * 1024**3, description="Most bytes of photos kept with consent (the stored JPEGs, "
                                                            "as the database counts them); past it a photo is not "
                                                            "kept, the answer still comes and says kept: quota_full "
                                                            "(0: no limit).")
    prediction_keep_days: float = Field(30.0, description="Answered predictions with no feedback and no kept photo are "
                                                          "deleted this many days later, in the background, in batches "
                                                          "(0: keep them all).")
    feedback_per_prediction: int = Field(5, description="Feedback records one prediction accepts (one per client key); "
                                                        "more get 429 feedback_limit (0: no limit).")
    review_unsure_per_day: int = Field(50, ge=0, description="Unsure answers (unknown, or the best score ahead of the "
                                       "second by less than review_unsure_margin) whose photos were kept with consent "
                                       "go to the review queue pre-labelled with the model's top 3, at most this many "
                                       "a day (UTC; 0: none).")
    review_unsure_margin: float = Field(0.15, ge=0, le=1, description="An answer whose best score leads the second by "
                                        "less than this is unsure (see review_unsure_per_day).")

    # --- QR phone hand-off (snapid.serve.services.sessions) ---
    session_secret: str = Field("", description="HMAC key of phone tokens, at least 16 characters (empty: generated "
                                                "once into $SNAPID_HOME/session_secret, mode 0600; a file others can "
                                                "read is set back to 0600, with a warning).")
    public_url: str = Field("", description="Base URL phones use to reach this server, e.g. http://192.168.1.20:8000 "
                                            "(empty: the LAN address is detected).")
    session_ttl_s: float = Field(600.0, description="How long a hand-off session (and its phone token) lives.")
    session_max_uploads: int = Field(10, description="Photos one hand-off session accepts; more get 429.")
    sessions_per_minute: int = Field(
        10, description="Hand-off sessions one client address may open per minute; more get 429.")
    streams_per_session: int = Field(3, description="Open event streams per hand-off session; more get 429.")
    streams_per_client: int = Field(10, description="Open event streams per client address (and worker); more get 429.")
    max_streams: int = Field(64, description="Open event streams per worker in all; more get 429, so health checks and "
                                             "predictions keep connections.")

    # --- knowledge (snapid knowledge enrich) ---
    wiki_base_url: str = Field(
        "https://{lang}.wikipedia.org",
        description="Wikipedia site; {lang} becomes the language code (tests point it at 127.0.0.1).")
    wikidata_url: str = Field("https://www.wikidata.org",
                              description="Wikidata site, asked for the taxon chain of cards with a scientific name "
                                          "(tests point it at 127.0.0.1).")
    wiki_contact: str = Field("contact: set SNAPID_WIKI_CONTACT",
                              description="URL or e-mail put in the User-Agent, as Wikimedia asks.")
    wiki_timeout_s: float = Field(5.0, description="Per-request timeout for Wikipedia lookups.")
    wiki_ttl_days: float = Field(30.0, description="How long a cached Wikipedia lookup stays fresh (no new request).")
    knowledge_poll_s: float = Field(2.0, description="How often the server asks the database for a newer knowledge "
                                                     "version of its dataset (cards, rules, tables, places; 0: never, "
                                                     "the bundle's knowledge.json only).")
    timezone: str = Field("", description="IANA time zone (e.g. Asia/Seoul) in which knowledge table rows' "
                                          "valid_from / valid_to dates are read (empty: the machine's).")
    places_per_category: int = Field(3, description="Nearest places listed per category (food, lodging, sight) for "
                                                    "a class with coordinates (0: none).")
    places_max_km: float = Field(20.0, description="Places farther than this from the recognised place are not listed.")
    tile_url: str = Field("https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                          description="Map tile URL template ({z}/{x}/{y}) of the page's map; its host is the only "
                                      "one the page's CSP lets images come from besides the server (empty: no map, the "
                                      "list only).")
    tile_attribution: str = Field("© OpenStreetMap contributors",
                                  description="Attribution shown on the map, as the tile server's terms ask.")

    # --- tools and offline use ---
    chromium: str = Field("", description="Chromium executable that prints PDF reports (empty: chromium or "
                                          "chromium-browser on PATH).")
    offline: bool = Field(False, description="Never try to download pretrained weights: a backbone whose weights are "
                                             "not on the machine is refused at once.")

    def check_secrets(self) -> None:
        """Refuse a token or key too short to resist guessing: the server calls this when it starts."""
        for name in ("admin_token", "review_token", "session_secret"):
            value = getattr(self, name)
            if value and len(value) < MIN_SECRET_CHARS:
                raise UsageError(f"SNAPID_{name.upper()} is {len(value)} characters long; use at least "
                                 f"{MIN_SECRET_CHARS} (e.g. python -c 'import secrets; "
                                 "print(secrets.token_urlsafe(24))'), or leave it empty")

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'snapid.db').resolve()}"


def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """Every setting as a Markdown table (docs/configuration.md holds it; a test keeps the two equal)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "number of cores (at most 8)"
        elif field.default in (None, ""):
            default = "empty"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `SNAPID_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows) + "\n"
