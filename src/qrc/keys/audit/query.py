"""Pages of audit events by filter, with opaque cursors (``GET /audit/logs``, ``qrc audit``)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.keys.audit.format import InvalidAuditQuery
from qrc.keys.store.models import AuditEvent

__all__ = ["MAX_QUERY_LIMIT", "query_audit_events"]

MAX_QUERY_LIMIT = 1000


def query_audit_events(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    key_id: str | None = None,
    actor: str | None = None,
    result: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    descending: bool = False,
) -> tuple[list[AuditEvent], str | None]:
    """One page of events matching every given filter, in seq order.

    ``since`` is inclusive, ``until`` exclusive. Pass the returned cursor back to get the
    next page; it is ``None`` after the last page.

    Raises:
        InvalidAuditQuery: a bad cursor, limit or naive datetime.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidAuditQuery("limit must be an integer")
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise InvalidAuditQuery(f"limit must be 1..{MAX_QUERY_LIMIT}")
    stmt = select(AuditEvent)
    for bound in (since, until):
        if bound is not None and (not isinstance(bound, datetime) or bound.tzinfo is None):
            raise InvalidAuditQuery("since/until must be timezone-aware datetimes")
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    if event_type is not None:
        stmt = stmt.where(AuditEvent.event_type == event_type)
    if key_id is not None:
        stmt = stmt.where(AuditEvent.key_id == key_id)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor == actor)
    if result is not None:
        stmt = stmt.where(AuditEvent.result == result)
    if cursor is not None:
        after = _decode_cursor(cursor)
        stmt = stmt.where(AuditEvent.seq < after if descending else AuditEvent.seq > after)
    order = AuditEvent.seq.desc() if descending else AuditEvent.seq
    events = list(session.scalars(stmt.order_by(order).limit(limit + 1)))
    if len(events) <= limit:
        return events, None
    events = events[:limit]
    return events, _encode_cursor(events[-1].seq)


_CURSOR_PREFIX = "qrc-audit:"


def _encode_cursor(seq: int) -> str:
    raw = f"{_CURSOR_PREFIX}{seq}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        if not isinstance(cursor, str) or len(cursor) > 64:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError
        digits = raw[len(_CURSOR_PREFIX) :]
        if not digits.isdigit() or not digits.isascii() or len(digits) > 19:
            raise ValueError
        return int(digits)
    except (ValueError, binascii.Error):
        raise InvalidAuditQuery("invalid cursor") from None
