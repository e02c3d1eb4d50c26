"""TLS handshake telemetry: every handshake counted by group, signature scheme and
certificate; classical or refused ones become security events.

The transport calls the hooks on its event-loop thread, which must not wait on the
database; events go through a queue to a writer thread. Metrics count every handshake.
The audit trail gets the first event of each kind and detail at once, then at most one per
``window`` seconds (``QRC_TLS_EVENT_SECONDS``; a scan of classical clients would otherwise
write one row per connection): the handshakes left out meanwhile are written as one event
with their number (``details.left_out``) when the window closes, whether or not another
comes. Every handshake is thus in the trail within ``window`` seconds. A window of 0 writes
one event per handshake.
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
_WINDOW_SECONDS = 60.0


class HandshakeTelemetry:
    """The transport's handshake hooks, feeding metrics and the audit trail."""

    def __init__(
        self,
        service: KeyService,
        metrics: Metrics,
        counters: HandshakeCounters | None = None,
        *,
        window: float = _WINDOW_SECONDS,
    ) -> None:
        self.service, self.metrics = service, metrics
        self.window = window
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
            try:
                kind, what = self.queue.get(timeout=self._wait())
            except queue.Empty:
                self._flush(time.monotonic())
                continue
            now = time.monotonic()
            self._flush(now)
            key = (kind, what)
            if now - self.last.get(key, -float("inf")) < self.window:
                self.suppressed[key] = self.suppressed.get(key, 0) + 1
                continue
            self.last[key] = now
            self._record(kind, what, 0)

    def _wait(self) -> float | None:
        """How long the writer may sleep: until the first open window with events closes."""
        if not self.suppressed:
            return None
        due = min(self.last[key] + self.window for key in self.suppressed)
        return max(0.0, due - time.monotonic())

    def _flush(self, now: float) -> None:
        """Write the count of each window that closed with handshakes left out."""
        for key in [k for k in self.suppressed if now - self.last[k] >= self.window]:
            self.last[key] = now
            self._record(key[0], key[1], self.suppressed.pop(key))

    def _record(self, kind: EventType, what: str, left_out: int) -> None:
        try:
            self.service.audit.record_tls_event(kind, what, left_out=left_out)
        except Exception:
            logger.exception("could not record a TLS security event")
