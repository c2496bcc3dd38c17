"""Live knowledge (issue 21): joined knowledge tables with validity, places with coordinates, and the name of
the table a knowledge version holds.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _parent() -> sa.ForeignKey:
    return sa.ForeignKey("knowledge_versions.id", ondelete="CASCADE")


def upgrade() -> None:
    bind = op.get_bind()
    tables = set(sa.inspect(bind).get_table_names())
    have = {column["name"] for column in sa.inspect(bind).get_columns("knowledge_versions")}
    if "name" not in have:
        op.add_column("knowledge_versions", sa.Column("name", sa.String(100), nullable=False, server_default=""))
    if "knowledge_table_rows" not in tables:
        op.create_table("knowledge_table_rows",
                        sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("version_id", sa.Integer(), _parent(), nullable=False),
                        sa.Column("position", sa.Integer(), nullable=False),
                        sa.Column("class_id", sa.String(200), nullable=False),
                        sa.Column("valid_from", sa.String(40), nullable=False),
                        sa.Column("valid_to", sa.String(40), nullable=False),
                        sa.Column("data", sa.JSON(), nullable=False))
        op.create_index("ix_knowledge_table_rows_version_id", "knowledge_table_rows", ["version_id"])
    if "knowledge_places" not in tables:
        op.create_table("knowledge_places",
                        sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("version_id", sa.Integer(), _parent(), nullable=False),
                        sa.Column("position", sa.Integer(), nullable=False),
                        sa.Column("category", sa.String(40), nullable=False),
                        sa.Column("lat", sa.Float(), nullable=False),
                        sa.Column("lon", sa.Float(), nullable=False),
                        sa.Column("names", sa.JSON(), nullable=False),
                        sa.Column("addresses", sa.JSON(), nullable=False),
                        sa.Column("link", sa.Text(), nullable=False))
        op.create_index("ix_knowledge_places_version_id", "knowledge_places", ["version_id"])
        op.create_index("ix_knowledge_places_version_lat_lon", "knowledge_places", ["version_id", "lat", "lon"])


def downgrade() -> None:
    raise NotImplementedError("no downgrades: restore the snapid.db.bak-0001 copy instead")
