"""Security events (``qrc_security_events``): recorded, queryable, and detected in bursts.

Authentication failures, bursts of decryption failures on one key, audit verification
failures, HSM offline and key compromise each become an event with a severity, the source
that saw it and the algorithm involved. Every event is also an audit event (the caller
appends both in one transaction).

The story's fields: ``description`` (what happened, in words), ``is_quantum_threat_related``
and ``action_taken`` (what the service did about it). A recorder may give them; otherwise
each event type's defaults (:data:`EVENT_DEFAULTS`) fill them. The story's
``source_component`` and ``qrc_algorithm_involved`` are the ``source`` and ``algorithm``
columns.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qrc.keys.observers import SecurityNotice
from qrc.keys.store.db import utcnow
from qrc.keys.store.models import AuditEvent, SecurityEvent

__all__ = [
    "DECRYPTION_BURST_THRESHOLD",
    "DECRYPTION_BURST_WINDOW",
    "EVENT_DEFAULTS",
    "EventDefaults",
    "EventType",
    "Severity",
    "decryption_failures_since",
    "event_fields",
    "notice_of",
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
    ANOMALY = "anomaly"  # unusual use of a token or key (qrc.monitor.anomaly)
    ALGORITHM_MIGRATION = "algorithm_migration"  # a run of qrc.monitor.migration_run
    # qrc.monitor.feed: a signed threat feed refused or accepted, and the statuses it changed
    THREAT_FEED_REFUSED = "threat_feed_refused"
    THREAT_FEED_ACCEPTED = "threat_feed_accepted"
    ALGORITHM_STATUS_CHANGED = "algorithm_status_changed"


class EventDefaults(NamedTuple):
    """What an event of a type says when its recorder gives nothing more specific."""

    description: str
    quantum_threat_related: bool = False
    action_taken: str | None = None


# Migration 0005 filled older events from a copy of this table; keep the two in step when a
# text here describes what the service does.
EVENT_DEFAULTS: Final[dict[str, EventDefaults]] = {
    EventType.AUTHENTICATION_FAILURE: EventDefaults(
        "A request without a valid API token", False, "request refused (401)"
    ),
    EventType.DECRYPTION_FAILURE_BURST: EventDefaults(
        "Many failed decryptions on one key within a minute (possible decryption-oracle probing)",
        False,
        "recorded for review; the key stays usable",
    ),
    EventType.AUDIT_VERIFICATION_FAILURE: EventDefaults(
        "The audit chain or a checkpoint failed verification",
        False,
        "verification reported invalid",
    ),
    EventType.HSM_OFFLINE: EventDefaults(
        "The root key encryption key could not be reached",
        False,
        "unwrapped keys dropped from memory; key operations refused until it returns",
    ),
    EventType.HSM_RECOVERED: EventDefaults("The root key encryption key is reachable again"),
    EventType.KEY_COMPROMISE: EventDefaults(
        "A key was revoked as compromised",
        False,
        "key moved to compromised: it no longer encrypts or signs",
    ),
    EventType.COMPROMISED_KEY_RECOVERY_USE: EventDefaults(
        "A compromised key decrypted data for recovery",
        False,
        "decryption allowed for recovery and audited",
    ),
    EventType.CLASSICAL_TLS_HANDSHAKE: EventDefaults(
        "A TLS handshake without a post-quantum key exchange (harvest-now-decrypt-later risk)",
        True,
        "connection allowed by the listener's hybrid-preferred mode, and flagged",
    ),
    EventType.TLS_HANDSHAKE_REFUSED: EventDefaults(
        "A TLS handshake was refused", False, "handshake refused"
    ),
    EventType.ALGORITHM_MIGRATION: EventDefaults(
        "Keys, data, certificates and TLS policy moved off an algorithm",
        True,
        "keys rotated, data rewrapped, certificates reissued, TLS policy tightened",
    ),
    EventType.THREAT_FEED_REFUSED: EventDefaults(
        "A threat feed was refused", False, "refused; the policy is unchanged"
    ),
    EventType.THREAT_FEED_ACCEPTED: EventDefaults(
        "A signed threat feed was accepted", True, "its statuses are applied when due"
    ),
    EventType.ALGORITHM_STATUS_CHANGED: EventDefaults(
        "A threat feed changed an algorithm's status",
        True,
        "policy updated (as POST /protocols/update); new keys and uses follow it",
    ),
}


def event_fields(
    event_type: str,
    description: str | None,
    is_quantum_threat_related: bool | None,
    action_taken: str | None,
) -> tuple[str | None, bool, str | None]:
    """The story's three fields of an event: the recorder's, else its type's defaults."""
    defaults = EVENT_DEFAULTS.get(event_type)
    if defaults is None:
        return description, bool(is_quantum_threat_related), action_taken
    return (
        defaults.description if description is None else description,
        defaults.quantum_threat_related
        if is_quantum_threat_related is None
        else is_quantum_threat_related,
        defaults.action_taken if action_taken is None else action_taken,
    )


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
    description: str | None = None,
    is_quantum_threat_related: bool | None = None,
    action_taken: str | None = None,
) -> SecurityEvent:
    """Add a security event in the caller's transaction.

    ``source`` is the story's ``source_component`` and ``algorithm`` its
    ``qrc_algorithm_involved``; ``description``, ``is_quantum_threat_related`` and
    ``action_taken`` left as None take the event type's defaults (:data:`EVENT_DEFAULTS`).
    """
    description, quantum, action = event_fields(
        event_type.value, description, is_quantum_threat_related, action_taken
    )
    event = SecurityEvent(
        at=at or utcnow(),
        event_type=event_type.value,
        severity=severity.value,
        source=source,
        key_id=key_id,
        algorithm=algorithm,
        details=details or {},
        description=description,
        is_quantum_threat_related=quantum,
        action_taken=action,
    )
    session.add(event)
    session.flush()
    return event


def notice_of(event: SecurityEvent) -> SecurityNotice:
    """What observers hear of a recorded ``event``."""
    return SecurityNotice(
        event.event_type,
        event.severity,
        event.source,
        event.key_id,
        event.algorithm,
        dict(event.details or {}),
        description=event.description,
        is_quantum_threat_related=bool(event.is_quantum_threat_related),
        action_taken=event.action_taken,
    )


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
    quantum_threat_related: bool | None = None,
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
    if quantum_threat_related is not None:
        statement = statement.where(
            SecurityEvent.is_quantum_threat_related.is_(quantum_threat_related)
        )
    return list(session.scalars(statement))
