"""SQLAlchemy 2 tables. Portable types only, so SQLite and PostgreSQL behave the same."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(20))
    root: Mapped[str] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    notes: Mapped[list] = mapped_column(JSON, default=list)
    n_samples: Mapped[int] = mapped_column(Integer, default=0)
    n_rejected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClassRow(Base):
    __tablename__ = "classes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    class_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(Text)
    display_names: Mapped[dict] = mapped_column(JSON, default=dict)


class SampleRow(Base):
    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_version_path", "version_id", "path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    split: Mapped[str] = mapped_column(String(8))
    group_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    boxes: Mapped[list] = mapped_column(JSON, default=list)
    box_notes: Mapped[list] = mapped_column(JSON, default=list)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(10))
    mode: Mapped[str] = mapped_column(String(10))
    phash: Mapped[str] = mapped_column(String(16))
    mean_rgb: Mapped[list] = mapped_column(JSON)
    hist: Mapped[list] = mapped_column(JSON)


class RejectedRow(Base):
    __tablename__ = "rejected_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")


class RunRow(Base):
    """One training run. Status: queued, running, completed, failed, stopped."""

    __tablename__ = "runs"
    # The dashboard lists runs newest first, optionally within one dataset (snapid.track.queries).
    __table_args__ = (Index("ix_runs_created_at", "created_at"),
                      Index("ix_runs_dataset_created_at", "dataset", "created_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    dataset_version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="train")       # train, tune-trial, compare
    parent: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the sweep or comparison it belongs to
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), index=True, default="queued")
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    run_dir: Mapped[str] = mapped_column(Text, default="")
    monitor: Mapped[str] = mapped_column(String(40), default="val_top1")
    best_metric: Mapped[float | None] = mapped_column(nullable=True)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EpochRow(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)       # counts across phases: probe epochs, then fine-tune epochs
    phase: Mapped[str] = mapped_column(String(12))
    train_loss: Mapped[float | None] = mapped_column(nullable=True)
    val_loss: Mapped[float | None] = mapped_column(nullable=True)
    top1: Mapped[float | None] = mapped_column(nullable=True)
    top5: Mapped[float | None] = mapped_column(nullable=True)
    macro_f1: Mapped[float | None] = mapped_column(nullable=True)
    lr: Mapped[float | None] = mapped_column(nullable=True)
    seconds: Mapped[float | None] = mapped_column(nullable=True)
    images_per_s: Mapped[float | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))     # checkpoint_best, checkpoint_last, ...
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PredictionRow(Base):
    """One answered prediction, kept so feedback can refer to it later. No photo is stored here."""

    __tablename__ = "predictions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a server-made UUID
    model_name: Mapped[str] = mapped_column(String(200), default="")
    model_version: Mapped[str] = mapped_column(String(100), default="")
    model_sha256: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(200), default="", index=True)  # the model's dataset (bundle manifest)
    top: Mapped[list] = mapped_column(JSON, default=list)  # [{"id", "score"}], best first
    unknown: Mapped[bool] = mapped_column(default=False)
    n_photos: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


# --- knowledge (snapid.knowledge; data access in snapid.track.knowledge) ---------------------
class KnowledgeVersionRow(Base):
    """One import of knowledge cards or rules for a dataset; versions count across both kinds."""

    __tablename__ = "knowledge_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))          # cards, rules, table, places
    source: Mapped[str] = mapped_column(Text, default="")  # the imported file's name
    sha256: Mapped[str] = mapped_column(String(64), default="")
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    notes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    name: Mapped[str] = mapped_column(String(100), default="", server_default="")  # kind table: the table's name


class KnowledgeCardRow(Base):
    __tablename__ = "knowledge_cards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("knowledge_versions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    class_id: Mapped[str] = mapped_column(String(200))
    card: Mapped[dict] = mapped_column(JSON, default=dict)  # snapid.knowledge.cards.Card.as_dict()


class KnowledgeRuleRow(Base):
    __tablename__ = "knowledge_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("knowledge_versions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list] = mapped_column(JSON, default=list)
    severity: Mapped[str] = mapped_column(String(40))
    message: Mapped[dict] = mapped_column(JSON, default=dict)


class KnowledgeTableRow(Base):
    """One row of a joined knowledge table (discounts, prices): a class id, free fields, optionally valid
    only from / to a moment (ISO text; a date or a time without an offset is in the server's time zone)."""

    __tablename__ = "knowledge_table_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("knowledge_versions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    class_id: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[str] = mapped_column(String(40), default="")
    valid_to: Mapped[str] = mapped_column(String(40), default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)


class KnowledgePlaceRow(Base):
    """One place of a dataset's places table (restaurants, lodging, sights near its landmarks)."""

    __tablename__ = "knowledge_places"
    __table_args__ = (Index("ix_knowledge_places_version_lat_lon", "version_id", "lat", "lon"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("knowledge_versions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(40))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    names: Mapped[dict] = mapped_column(JSON, default=dict)      # {lang: name}
    addresses: Mapped[dict] = mapped_column(JSON, default=dict)  # {lang: address}
    link: Mapped[str] = mapped_column(Text, default="")


class WikiCacheRow(Base):
    """One Wikipedia summary lookup (language, title): ok, missing, error or invalid, and when."""

    __tablename__ = "wiki_cache"
    __table_args__ = (UniqueConstraint("lang", "title"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lang: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KnowledgeEnrichmentRow(Base):
    """The Wikipedia summary shown on one class's card in one language (possibly a fallback language)."""

    __tablename__ = "knowledge_enrichment"
    __table_args__ = (UniqueConstraint("dataset_id", "class_id", "lang"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[str] = mapped_column(String(200))
    lang: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- saved photos, feedback, promotions (snapid.feedback; data access in snapid.track.feedback) ----------
class UploadRow(Base):
    """One photo kept with the user's consent. The file is content-addressed (sha256 of the stored JPEG),
    so two rows may share a file; the row's id is the only handle clients ever see."""

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a server-made UUID
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    prediction_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kept_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class FeedbackRow(Base):
    """A user's answer to one prediction: a class id, or "not in the list" with a short text.
    Status: pending → approved or rejected by a reviewer; merged_* once it became a dataset sample."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("prediction_id", "client_key"),
                      Index("ix_feedback_status_created", "status", "created_at"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(36), index=True)
    client_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    not_in_list: Mapped[bool] = mapped_column(default=False)
    free_text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    reviewer_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    merged_dataset: Mapped[str | None] = mapped_column(String(200), nullable=True)
    merged_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PromotionRow(Base):
    """One champion/challenger decision: promoted or refused, with the figures behind it."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    candidate: Mapped[str] = mapped_column(String(200))
    current: Mapped[str] = mapped_column(String(200))
    split: Mapped[str] = mapped_column(String(8))
    candidate_top1: Mapped[float] = mapped_column()
    current_top1: Mapped[float] = mapped_column()
    margin: Mapped[float] = mapped_column()
    promoted: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # bootstrap interval, n, bundle version...
    bundle_path: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


# --- QR phone hand-off (snapid.serve.services.sessions; data access in snapid.track.sessions) ----------
class HandoffSessionRow(Base):
    """A desktop page waiting for photos from a phone. Only digests of its secrets are stored; the row and
    its uploads (thumbnails and answers, never full photos) are deleted once it has expired."""

    __tablename__ = "handoff_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)       # uuid4 hex
    nonce: Mapped[str] = mapped_column(String(32))                      # signed into the phone token
    desktop_sha256: Mapped[str] = mapped_column(String(64))             # sha256 of the desktop key
    max_uploads: Mapped[int] = mapped_column(Integer)
    n_uploads: Mapped[int] = mapped_column(Integer, default=0)          # slots taken; raised atomically
    single_use: Mapped[bool] = mapped_column(default=False)
    lang: Mapped[str] = mapped_column(String(16), default="")
    client: Mapped[str] = mapped_column(String(64), default="")         # the creating client's address
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class HandoffUploadRow(Base):
    __tablename__ = "handoff_uploads"
    __table_args__ = (UniqueConstraint("session_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("handoff_sessions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)                      # 1, 2, ... in arrival order
    thumbnail: Mapped[bytes] = mapped_column(LargeBinary)               # small JPEG, no metadata
    result: Mapped[dict] = mapped_column(JSON, default=dict)            # the prediction answer
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
