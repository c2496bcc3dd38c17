"""A workspace database made by an older snapid (a table without a later column) opens and works:
the missing column is added with its default, and old rows read back."""

from __future__ import annotations

import sqlite3

from snapid.track.db import add_missing_columns, get_engine, transaction
from snapid.track.predictions import record_predictions
from snapid.track.tables import PredictionRow


def test_an_older_predictions_table_gets_the_dataset_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the predictions table as this session first created it
        db.execute("CREATE TABLE predictions (id VARCHAR(36) PRIMARY KEY, model_name VARCHAR(200) NOT NULL, "
                   "model_version VARCHAR(100) NOT NULL, model_sha256 VARCHAR(64) NOT NULL, top JSON NOT NULL, "
                   "unknown BOOLEAN NOT NULL, n_photos INTEGER NOT NULL, created_at DATETIME NOT NULL)")
        db.execute("INSERT INTO predictions VALUES ('old', 'm', '1', 'x', '[]', 0, 1, '2026-01-01 00:00:00')")
    get_engine.cache_clear()
    engine = get_engine(f"sqlite:///{path}")
    with transaction(engine) as s:
        record_predictions(s, rows=[{"id": "new", "model_sha256": "y", "dataset": "pills", "top": []}])
    with transaction(engine) as s:
        assert {r.id: r.dataset for r in s.query(PredictionRow)} == {"old": "", "new": "pills"}
    assert add_missing_columns(engine) == []  # nothing left to add the second time
    with sqlite3.connect(path) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list('predictions')")}
    assert any("dataset" in name for name in indexes)
