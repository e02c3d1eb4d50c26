"""The anomaly detector beside a running key service: what it hears, reads and records.

- :class:`AnomalyObserver` is an observer of the key service (``service.observers.add``): it
  turns each key use and each TLS or authentication security event into an :class:`Event`
  in a bounded in-memory buffer, and nothing else (quick, never raises).
- :func:`read_history` reads the audit chain through ``service.audit.query`` (the history a
  model learns from, and what ``qrc anomalies scan`` scores).
- :func:`record_anomalies` turns anomalies into ``anomaly`` security events through the key
  service's security-event path, so they are listed, exported and sent like any other.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime

from qrc.keys.audit.events import EventType, Severity
from qrc.keys.errors import KeyNotFound
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.keys.service import KeyService
from qrc.keys.store.db import utcnow
from qrc.monitor.anomaly import Anomaly
from qrc.monitor.anomaly_features import (
    Entity,
    Event,
    event_from_audit,
    event_from_notice,
    event_from_use,
)

__all__ = [
    "ACTION_TAKEN",
    "DETECTOR_SOURCE",
    "AnomalyObserver",
    "read_history",
    "record_anomalies",
]

logger = logging.getLogger(__name__)

DETECTOR_SOURCE = "anomaly-detector"
ACTION_TAKEN = "recorded for review; nothing was blocked"
_PAGE = 1000


class AnomalyObserver:
    """Buffers what the key service reports, for the next scoring pass.

    At most ``max_events`` are kept; beyond that the oldest are dropped (and counted in
    ``dropped``): a flood cannot exhaust memory, and a window that big is flagged anyway.
    """

    def __init__(
        self, *, max_events: int = 200_000, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.clock = clock
        self.dropped = 0
        self._events: deque[Event] = deque()
        self._max = max_events
        self._lock = threading.Lock()

    def _add(self, event: Event) -> None:
        with self._lock:
            if len(self._events) >= self._max:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)

    def key_used(self, use: KeyUse) -> None:
        """A key was used: buffer it."""
        self._add(event_from_use(use, self.clock()))

    def security_event(self, notice: SecurityNotice) -> None:
        """A TLS handshake or authentication event: buffer it; the others (ours too): skip."""
        event = event_from_notice(notice, self.clock())
        if event is not None:
            self._add(event)

    def drain(self, before: datetime) -> list[Event]:
        """The buffered events older than ``before`` (taken out), oldest first."""
        with self._lock:
            taken = [e for e in self._events if e.at < before]
            kept = [e for e in self._events if e.at >= before]
            self._events = deque(kept)
        taken.sort(key=lambda e: e.at)
        return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


def read_history(
    service: KeyService,
    since: datetime,
    until: datetime | None = None,
    *,
    max_events: int = 500_000,
) -> list[Event]:
    """The audit chain's events from ``since`` to ``until``, oldest first: the newest
    ``max_events`` of them (memory stays bounded however busy the service was)."""
    events: list[Event] = []
    cursor: str | None = None
    while len(events) < max_events:
        rows, cursor = service.audit.query(
            since=since, until=until, limit=_PAGE, cursor=cursor, descending=True
        )
        events.extend(event_from_audit(row) for row in rows)
        if cursor is None:
            break
    events = events[:max_events]
    events.reverse()
    return events


def record_anomalies(service: KeyService, anomalies: list[Anomaly]) -> int:
    """Record each anomaly as an ``anomaly`` security event; how many were recorded.

    The event's ``source`` is the token (or key) that behaved unusually, its ``key_id`` the
    key when the window concerns one key, its ``description`` (and ``details.explanation``)
    says what was unusual.
    """
    recorded = 0
    for anomaly in anomalies:
        try:
            with service.db.session() as session:
                key = None
                if len(anomaly.key_ids) == 1:
                    try:
                        key = service.ctx.find(session, anomaly.key_ids[0])
                    except KeyNotFound:
                        key = None
                service.ctx.security_event(
                    session,
                    EventType.ANOMALY,
                    Severity(anomaly.severity),
                    anomaly.entity.name[:200],
                    key=key,
                    details={"detector": DETECTOR_SOURCE, **anomaly.details()},
                    description=anomaly.explanation[:500],
                    # A burst of classical or refused handshakes: a downgrade attempt.
                    is_quantum_threat_related=anomaly.entity == Entity("actor", "tls"),
                    action_taken=ACTION_TAKEN,
                )
            recorded += 1
        except Exception:
            logger.exception("could not record an anomaly (%s)", anomaly.explanation)
    return recorded
