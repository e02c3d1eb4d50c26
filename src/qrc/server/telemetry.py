"""TLS handshake telemetry: every handshake counted by group, signature scheme and
certificate; classical or refused ones become security events.

The transport calls the hooks on its event-loop thread, which must not wait on the
database; events go through a queue to a writer thread. Metrics count every handshake;
the audit trail gets one event per kind and detail a minute (a scan of classical clients
would otherwise write one row per connection), with the number left out since the last.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from qrc.api.metrics import Metrics
from qrc.keys.audit.events import EventType
from qrc.keys.service import KeyService
from qrc.transit.listener import HandshakeCounters, HandshakeRecord
from qrc.transit.tls import is_pq_group

__all__ = ["HandshakeTelemetry"]

logger = logging.getLogger(__name__)
_EVENTS_PER_KIND_SECONDS = 60.0


class HandshakeTelemetry:
    """The transport's handshake hooks, feeding metrics and the audit trail."""

    def __init__(
        self, service: KeyService, metrics: Metrics, counters: HandshakeCounters | None = None
    ) -> None:
        self.service, self.metrics = service, metrics
        self.counters = counters or HandshakeCounters()
        self.queue: queue.SimpleQueue[tuple[EventType, str]] = queue.SimpleQueue()
        self.last: dict[tuple[EventType, str], float] = {}
        self.suppressed: dict[tuple[EventType, str], int] = {}
        threading.Thread(target=self._write, daemon=True, name="qrc-tls-events").start()

    def record(self, record: HandshakeRecord) -> None:
        """A completed handshake (called on the reactor thread)."""
        self.metrics.handshake(record.group)
        self.counters.count(record)
        if not record.post_quantum:
            detail = f"{record.group} ({record.signature}, {record.certificate})"
            self.queue.put((EventType.CLASSICAL_TLS_HANDSHAKE, detail))

    def handshake(self, group: str, cipher: str) -> None:
        """A completed handshake, as :data:`qrc.transit.tls.HandshakeHook` reports it."""
        self.metrics.handshake(group)
        if not is_pq_group(group):
            self.queue.put((EventType.CLASSICAL_TLS_HANDSHAKE, group))

    def failure(self, alert: str) -> None:
        """A refused handshake (called on the reactor thread)."""
        self.metrics.handshake(f"failed:{alert}")
        self.counters.count_refused(alert)
        self.queue.put((EventType.TLS_HANDSHAKE_REFUSED, alert))

    def _write(self) -> None:
        while True:
            kind, what = self.queue.get()
            key = (kind, what)
            now = time.monotonic()
            if now - self.last.get(key, -float("inf")) < _EVENTS_PER_KIND_SECONDS:
                self.suppressed[key] = self.suppressed.get(key, 0) + 1
                continue
            self.last[key] = now
            left_out = self.suppressed.pop(key, 0)
            detail = what if not left_out else f"{what}; {left_out} more in the last minute"
            try:
                self.service.audit.record_tls_event(kind, detail)
            except Exception:
                logger.exception("could not record a TLS security event")
