"""Root KEK records (``qrc_keks``): which KEK wraps new material, which are retiring."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.keys.custody.base import Custody
from qrc.keys.store.db import utcnow
from qrc.keys.store.models import KekRecord

__all__ = ["active_kek_id", "register_kek"]


def register_kek(session: Session, custody: Custody, *, status: str = "active") -> KekRecord:
    """Record ``custody``'s KEK (idempotent); ``active`` demotes any other active KEK."""
    record = session.get(KekRecord, custody.kek_id)
    if status == "active":
        for other in session.scalars(select(KekRecord).where(KekRecord.status == "active")):
            if other.id != custody.kek_id:
                other.status = "retiring"
    if record is None:
        record = KekRecord(
            id=custody.kek_id, custody=custody.kind, status=status, created_at=utcnow(), details={}
        )
        session.add(record)
    else:
        record.status = status
    session.flush()
    return record


def active_kek_id(session: Session) -> str | None:
    """The KEK new material is wrapped under, as recorded in the store."""
    return session.scalar(select(KekRecord.id).where(KekRecord.status == "active"))
