"""Data access for QR hand-off sessions (tables HandoffSessionRow, HandoffUploadRow). Keyword-only, no policy:
the token and key checks live in snapid.serve.services.sessions.

Upload slots are taken with one conditional UPDATE (``n_uploads < max_uploads``), so concurrent uploads
to one session can never store more than the cap, and positions are unique and gap-free."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from snapid.track.tables import HandoffSessionRow, HandoffUploadRow


def as_utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _session_dict(row: HandoffSessionRow) -> dict:
    return {"id": row.id, "nonce": row.nonce, "desktop_sha256": row.desktop_sha256, "max_uploads": row.max_uploads,
            "n_uploads": row.n_uploads, "single_use": row.single_use, "lang": row.lang, "client": row.client,
            "created_at": as_utc(row.created_at), "expires_at": as_utc(row.expires_at)}


def create_session(session: Session, *, session_id: str, nonce: str, desktop_sha256: str, max_uploads: int,
                   single_use: bool, lang: str, client: str, expires_at: datetime) -> dict:
    row = HandoffSessionRow(id=session_id, nonce=nonce, desktop_sha256=desktop_sha256, max_uploads=max_uploads,
                            n_uploads=0, single_use=single_use, lang=lang, client=client[:64], expires_at=expires_at)
    session.add(row)
    session.flush()
    return _session_dict(row)


def get_session(session: Session, *, session_id: str) -> dict | None:
    row = session.get(HandoffSessionRow, session_id)
    return _session_dict(row) if row is not None else None


def take_slot(session: Session, *, session_id: str, now: datetime) -> int | None:
    """Reserve the next upload position of a live session; None when it is full or expired."""
    taken = session.execute(
        update(HandoffSessionRow)
        .where(HandoffSessionRow.id == session_id, HandoffSessionRow.n_uploads < HandoffSessionRow.max_uploads,
               HandoffSessionRow.expires_at > now)
        .values(n_uploads=HandoffSessionRow.n_uploads + 1))
    if taken.rowcount != 1:
        return None
    return session.scalar(select(HandoffSessionRow.n_uploads).where(HandoffSessionRow.id == session_id))


def add_upload(session: Session, *, session_id: str, position: int, thumbnail: bytes, result: dict) -> None:
    session.add(HandoffUploadRow(session_id=session_id, position=position, thumbnail=thumbnail, result=result))
    session.flush()


def uploads_after(session: Session, *, session_id: str, after: int = 0, limit: int = 50) -> list[dict]:
    """Uploads with position > ``after``, in order: {position, thumbnail (bytes), result, created_at}."""
    rows = session.scalars(select(HandoffUploadRow)
                           .where(HandoffUploadRow.session_id == session_id, HandoffUploadRow.position > after)
                           .order_by(HandoffUploadRow.position).limit(limit))
    return [{"position": r.position, "thumbnail": r.thumbnail, "result": r.result, "created_at": as_utc(r.created_at)}
            for r in rows]


def session_results(session: Session, *, session_id: str) -> list[dict]:
    """Every stored answer of a session (no thumbnails), in order: for rules across its photos."""
    rows = session.execute(select(HandoffUploadRow.position, HandoffUploadRow.result)
                           .where(HandoffUploadRow.session_id == session_id).order_by(HandoffUploadRow.position))
    return [{"position": position, "result": result} for position, result in rows]


def count_live(session: Session, *, now: datetime) -> int:
    return session.scalar(select(func.count()).select_from(HandoffSessionRow)
                          .where(HandoffSessionRow.expires_at > now)) or 0


def delete_expired(session: Session, *, before: datetime) -> int:
    """Delete sessions that expired before ``before`` with their uploads; returns how many sessions."""
    expired = select(HandoffSessionRow.id).where(HandoffSessionRow.expires_at < before)
    session.execute(delete(HandoffUploadRow).where(HandoffUploadRow.session_id.in_(expired)))
    return session.execute(delete(HandoffSessionRow).where(HandoffSessionRow.expires_at < before)).rowcount or 0
