"""Security events (``qrc_security_events``): recorded, queryable, and detected in bursts.

Authentication failures, bursts of decryption failures on one key, audit verification
failures, HSM offline and key compromise each become an event with a severity, the source
that saw it and the algorithm involved. Every event is also an audit event (the caller
appends both in one transaction).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qrc.keys.store.db import utcnow
from qrc.keys.store.models import AuditEvent, SecurityEvent

__all__ = [
    "DECRYPTION_BURST_THRESHOLD",
    "DECRYPTION_BURST_WINDOW",
    "EventType",
    "Severity",
    "decryption_failures_since",
    "query_events",
    "record_event",
]


class Severity(enum.StrEnum):
    """How urgent an event is."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class EventType(enum.StrEnum):
    """The kinds of security event."""

    AUTHENTICATION_FAILURE = "authentication_failure"
    DECRYPTION_FAILURE_BURST = "decryption_failure_burst"
    AUDIT_VERIFICATION_FAILURE = "audit_verification_failure"
    HSM_OFFLINE = "hsm_offline"
    HSM_RECOVERED = "hsm_recovered"
    KEY_COMPROMISE = "key_compromise"
    COMPROMISED_KEY_RECOVERY_USE = "compromised_key_recovery_use"
    CLASSICAL_TLS_HANDSHAKE = "classical_tls_handshake"
    TLS_HANDSHAKE_REFUSED = "tls_handshake_refused"


# A burst: this many failed decryptions on one key within the window.
DECRYPTION_BURST_THRESHOLD = 10
DECRYPTION_BURST_WINDOW = timedelta(minutes=1)


def record_event(
    session: Session,
    event_type: EventType,
    severity: Severity,
    source: str,
    *,
    key_id: str | None = None,
    algorithm: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> SecurityEvent:
    """Add a security event in the caller's transaction."""
    event = SecurityEvent(
        at=at or utcnow(),
        event_type=event_type.value,
        severity=severity.value,
        source=source,
        key_id=key_id,
        algorithm=algorithm,
        details=details or {},
    )
    session.add(event)
    session.flush()
    return event


def decryption_failures_since(session: Session, key_id: str, since: datetime) -> int:
    """Failed decryptions on ``key_id`` recorded in the audit chain since ``since``."""
    statement = select(func.count()).where(
        AuditEvent.key_id == key_id,
        AuditEvent.event_type == "key.decrypt",
        AuditEvent.result == "failure",
        AuditEvent.at >= since,
    )
    return int(session.scalar(statement) or 0)


def query_events(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    severity: str | None = None,
    key_id: str | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[SecurityEvent]:
    """Events, oldest first, filtered; page with ``after_id`` = the last ID seen."""
    statement = select(SecurityEvent).order_by(SecurityEvent.id).limit(max(1, min(limit, 1000)))
    if since is not None:
        statement = statement.where(SecurityEvent.at >= since)
    if until is not None:
        statement = statement.where(SecurityEvent.at < until)
    if event_type is not None:
        statement = statement.where(SecurityEvent.event_type == event_type)
    if severity is not None:
        statement = statement.where(SecurityEvent.severity == severity)
    if key_id is not None:
        statement = statement.where(SecurityEvent.key_id == key_id)
    if after_id is not None:
        statement = statement.where(SecurityEvent.id > after_id)
    return list(session.scalars(statement))
