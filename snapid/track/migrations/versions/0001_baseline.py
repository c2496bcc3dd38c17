"""Baseline: the schema snapid 0.1 made with create_all (frozen here: later changes are later revisions).

Three starting points reach this revision: an empty database gets every table; a database made before
migrations existed (tables, no alembic_version) is adopted: missing tables are created, and columns and
indexes an older snapid lacked are added (what db.add_missing_columns did on every open until then);
Alembic then records this revision, so later revisions run from a known schema.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def _req(name: str, type_, *args, **kwargs) -> sa.Column:
    return sa.Column(name, type_, *args, nullable=False, **kwargs)


def _opt(name: str, type_, *args, **kwargs) -> sa.Column:
    return sa.Column(name, type_, *args, nullable=True, **kwargs)


def _parent(target: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE")


def baseline_metadata() -> sa.MetaData:
    """The tables of snapid.track.tables as of this revision, with the Python-side defaults an added
    column needs (create_all renders none of them: the DDL is the same as the models')."""
    metadata = sa.MetaData()
    sa.Table("datasets", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("name", sa.String(200), unique=True),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow))
    sa.Table("dataset_versions", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("dataset_id", sa.Integer(), _parent("datasets.id"), index=True),
             _req("version", sa.Integer()),
             _req("format", sa.String(20)),
             _req("root", sa.Text()),
             _req("params", sa.JSON(), default=dict),
             _req("notes", sa.JSON(), default=list),
             _req("n_samples", sa.Integer(), default=0),
             _req("n_rejected", sa.Integer(), default=0),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("dataset_id", "version"))
    sa.Table("classes", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("version_id", sa.Integer(), _parent("dataset_versions.id"), index=True),
             _req("position", sa.Integer()),
             _req("class_id", sa.String(200)),
             _req("name", sa.Text()),
             _req("display_names", sa.JSON(), default=dict))
    sa.Table("samples", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("version_id", sa.Integer(), _parent("dataset_versions.id")),
             _req("path", sa.Text()),
             _opt("label", sa.String(200)),
             _req("split", sa.String(8)),
             _opt("group_id", sa.String(200)),
             _req("boxes", sa.JSON(), default=list),
             _req("box_notes", sa.JSON(), default=list),
             _req("sha256", sa.String(64), index=True),
             _req("size_bytes", sa.BigInteger()),
             _req("mtime_ns", sa.BigInteger()),
             _req("width", sa.Integer()),
             _req("height", sa.Integer()),
             _req("format", sa.String(10)),
             _req("mode", sa.String(10)),
             _req("phash", sa.String(16)),
             _req("mean_rgb", sa.JSON()),
             _req("hist", sa.JSON()),
             sa.Index("ix_samples_version_path", "version_id", "path"))
    sa.Table("rejected_files", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("version_id", sa.Integer(), _parent("dataset_versions.id"), index=True),
             _req("path", sa.Text()),
             _req("reason", sa.String(40)),
             _req("detail", sa.Text(), default=""))
    sa.Table("runs", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("name", sa.String(200), unique=True),
             _req("dataset", sa.String(200), index=True),
             _req("dataset_version", sa.Integer()),
             _req("model", sa.String(200), index=True),
             _req("kind", sa.String(20), default="train"),
             _opt("parent", sa.String(200)),
             _req("config", sa.JSON(), default=dict),
             _req("status", sa.String(12), index=True, default="queued"),
             _req("host", sa.String(200), default=""),
             _opt("pid", sa.Integer()),
             _req("run_dir", sa.Text(), default=""),
             _req("monitor", sa.String(40), default="val_top1"),
             _opt("best_metric", sa.Double()),
             _opt("best_epoch", sa.Integer()),
             _req("summary", sa.JSON(), default=dict),
             _req("error", sa.Text(), default=""),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             _opt("started_at", sa.DateTime(timezone=True)),
             _opt("ended_at", sa.DateTime(timezone=True)),
             _opt("heartbeat_at", sa.DateTime(timezone=True)),
             sa.Index("ix_runs_dataset_created_at", "dataset", "created_at"),
             sa.Index("ix_runs_created_at", "created_at"))
    sa.Table("epochs", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("run_id", sa.Integer(), _parent("runs.id"), index=True),
             _req("epoch", sa.Integer()),
             _req("phase", sa.String(12)),
             _opt("train_loss", sa.Double()),
             _opt("val_loss", sa.Double()),
             _opt("top1", sa.Double()),
             _opt("top5", sa.Double()),
             _opt("macro_f1", sa.Double()),
             _opt("lr", sa.Double()),
             _opt("seconds", sa.Double()),
             _opt("images_per_s", sa.Double()),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("run_id", "epoch"))
    sa.Table("artifacts", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("run_id", sa.Integer(), _parent("runs.id"), index=True),
             _req("kind", sa.String(40)),
             _req("path", sa.Text()),
             _req("sha256", sa.String(64), default=""),
             _req("meta", sa.JSON(), default=dict),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("run_id", "kind"))
    sa.Table("predictions", metadata,
             sa.Column("id", sa.String(36), primary_key=True),
             _req("model_name", sa.String(200), default=""),
             _req("model_version", sa.String(100), default=""),
             _req("model_sha256", sa.String(64), index=True),
             _req("dataset", sa.String(200), index=True, default=""),
             _req("top", sa.JSON(), default=list),
             _req("unknown", sa.Boolean(), default=False),
             _req("n_photos", sa.Integer(), default=1),
             _req("created_at", sa.DateTime(timezone=True), index=True, default=utcnow))
    sa.Table("knowledge_versions", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("dataset_id", sa.Integer(), _parent("datasets.id"), index=True),
             _req("version", sa.Integer()),
             _req("kind", sa.String(10)),
             _req("source", sa.Text(), default=""),
             _req("sha256", sa.String(64), default=""),
             _req("n_items", sa.Integer(), default=0),
             _req("notes", sa.JSON(), default=list),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("dataset_id", "version"))
    sa.Table("knowledge_cards", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("version_id", sa.Integer(), _parent("knowledge_versions.id"), index=True),
             _req("position", sa.Integer()),
             _req("class_id", sa.String(200)),
             _req("card", sa.JSON(), default=dict))
    sa.Table("knowledge_rules", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("version_id", sa.Integer(), _parent("knowledge_versions.id"), index=True),
             _req("position", sa.Integer()),
             _req("classes", sa.JSON(), default=list),
             _req("severity", sa.String(40)),
             _req("message", sa.JSON(), default=dict))
    sa.Table("wiki_cache", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("lang", sa.String(20)),
             _req("title", sa.String(300)),
             _req("status", sa.String(10)),
             _req("data", sa.JSON(), default=dict),
             _req("error", sa.Text(), default=""),
             _req("fetched_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("lang", "title"))
    sa.Table("knowledge_enrichment", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("dataset_id", sa.Integer(), _parent("datasets.id"), index=True),
             _req("class_id", sa.String(200)),
             _req("lang", sa.String(20)),
             _req("data", sa.JSON(), default=dict),
             _req("updated_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("dataset_id", "class_id", "lang"))
    sa.Table("uploads", metadata,
             sa.Column("id", sa.String(36), primary_key=True),
             _req("sha256", sa.String(64), index=True),
             _opt("prediction_id", sa.String(36), index=True),
             _req("bytes", sa.BigInteger()),
             _req("width", sa.Integer()),
             _req("height", sa.Integer()),
             _req("created_at", sa.DateTime(timezone=True), index=True, default=utcnow),
             _opt("kept_until", sa.DateTime(timezone=True), index=True))
    sa.Table("feedback", metadata,
             sa.Column("id", sa.String(36), primary_key=True),
             _req("prediction_id", sa.String(36), index=True),
             _req("client_key", sa.String(64)),
             _opt("label", sa.String(200)),
             _req("not_in_list", sa.Boolean(), default=False),
             _req("free_text", sa.Text(), default=""),
             _req("status", sa.String(10), default="pending"),
             _opt("reviewer_label", sa.String(200)),
             _opt("reviewed_at", sa.DateTime(timezone=True)),
             _opt("merged_dataset", sa.String(200)),
             _opt("merged_version", sa.Integer()),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("prediction_id", "client_key"),
             sa.Index("ix_feedback_status_created", "status", "created_at"))
    sa.Table("promotions", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("dataset", sa.String(200), index=True),
             _req("candidate", sa.String(200)),
             _req("current", sa.String(200)),
             _req("split", sa.String(8)),
             _req("candidate_top1", sa.Double()),
             _req("current_top1", sa.Double()),
             _req("margin", sa.Double()),
             _req("promoted", sa.Boolean(), default=False),
             _req("reason", sa.Text(), default=""),
             _req("details", sa.JSON(), default=dict),
             _req("bundle_path", sa.Text(), default=""),
             _req("created_at", sa.DateTime(timezone=True), index=True, default=utcnow))
    sa.Table("handoff_sessions", metadata,
             sa.Column("id", sa.String(32), primary_key=True),
             _req("nonce", sa.String(32)),
             _req("desktop_sha256", sa.String(64)),
             _req("max_uploads", sa.Integer()),
             _req("n_uploads", sa.Integer(), default=0),
             _req("single_use", sa.Boolean(), default=False),
             _req("lang", sa.String(16), default=""),
             _req("client", sa.String(64), default=""),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             _req("expires_at", sa.DateTime(timezone=True), index=True))
    sa.Table("handoff_uploads", metadata,
             sa.Column("id", sa.Integer(), primary_key=True),
             _req("session_id", sa.String(32), _parent("handoff_sessions.id"), index=True),
             _req("position", sa.Integer()),
             _req("thumbnail", sa.LargeBinary()),
             _req("result", sa.JSON(), default=dict),
             _req("created_at", sa.DateTime(timezone=True), default=utcnow),
             sa.UniqueConstraint("session_id", "position"))
    return metadata


def upgrade() -> None:
    bind = op.get_bind()
    metadata = baseline_metadata()
    existing = set(sa.inspect(bind).get_table_names())
    metadata.create_all(bind)  # the tables this database lacks (all of them when it is empty)
    for table in metadata.sorted_tables:
        if table.name in existing:
            _add_missing_columns(bind, table)


def _add_missing_columns(bind, table: sa.Table) -> None:
    """Columns (with their scalar default, so old rows get a value) and indexes an older snapid lacked."""
    have = {column["name"] for column in sa.inspect(bind).get_columns(table.name)}
    for column in table.columns:
        if column.name in have:
            continue
        default = column.default.arg if column.default is not None and column.default.is_scalar else None
        added = sa.Column(column.name, column.type, nullable=column.nullable or default is None,
                          server_default=None if default is None else _literal(bind, column, default))
        op.add_column(table.name, added)
    have_indexes = {index["name"] for index in sa.inspect(bind).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in have_indexes:
            index.create(bind)


def _literal(bind, column: sa.Column, value) -> sa.TextClause:
    return sa.text(str(sa.literal(value, column.type).compile(dialect=bind.dialect,
                                                              compile_kwargs={"literal_binds": True})))


def downgrade() -> None:
    raise NotImplementedError("the baseline has no earlier schema: restore the snapid.db.bak-* copy instead")
