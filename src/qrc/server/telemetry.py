"""TLS handshake telemetry: every handshake counted by group; classical or refused ones
become security events.

The transport calls the hooks on its event-loop thread, which must not wait on the
database; events go through a queue to a writer thread (at most one per kind a minute).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from qrc.api.metrics import Metrics
from qrc.keys.audit.events import EventType
from qrc.keys.service import KeyService
from qrc.transit.tls import is_pq_group

__all__ = ["HandshakeTelemetry"]

logger = logging.getLogger(__name__)
_EVENTS_PER_KIND_SECONDS = 60.0


class HandshakeTelemetry:
    """The transport's handshake hooks, feeding metrics and the audit trail."""

    def __init__(self, service: KeyService, metrics: Metrics) -> None:
        self.service, self.metrics = service, metrics
        self.queue: queue.SimpleQueue[tuple[EventType, str]] = queue.SimpleQueue()
        self.last: dict[EventType, float] = {}
        threading.Thread(target=self._write, daemon=True, name="qrc-tls-events").start()

    def handshake(self, group: str, cipher: str) -> None:
        """A completed handshake (called on the reactor thread)."""
        self.metrics.handshake(group)
        if not is_pq_group(group):
            self.queue.put((EventType.CLASSICAL_TLS_HANDSHAKE, group))

    def failure(self, alert: str) -> None:
        """A refused handshake (called on the reactor thread)."""
        self.metrics.handshake(f"failed:{alert}")
        self.queue.put((EventType.TLS_HANDSHAKE_REFUSED, alert))

    def _write(self) -> None:
        while True:
            kind, what = self.queue.get()
            now = time.monotonic()
            if now - self.last.get(kind, -float("inf")) < _EVENTS_PER_KIND_SECONDS:
                continue
            self.last[kind] = now
            try:
                self.service.audit.record_tls_event(kind, what)
            except Exception:
                logger.exception("could not record a TLS security event")
