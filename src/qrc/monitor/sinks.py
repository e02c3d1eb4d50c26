"""Event sinks: security events and audit checkpoints leave the service for a SIEM.

A :class:`SinkDispatcher` takes events from three places and hands each to every configured
sink (:mod:`.sinks_webhook`, :mod:`.sinks_syslog`):

- security events, as an observer of the key service (:mod:`qrc.keys.observers`);
- audit checkpoints, through :class:`WitnessTee`, which stands in front of the service's
  witness: each signed note the service publishes to its witness file goes to the sinks
  too, so a SIEM holds a witness of the chain outside the database;
- incident notices from the playbooks (:mod:`.incident`).

Nothing here ever blocks or fails a key operation: each sink has its own bounded queue and
worker thread. Delivery is at least once: an event is retried with exponential backoff
(capped) for as long as the sink is unreachable, and every event carries a delivery id that
stays the same across retries, so a receiver drops duplicates. A sink that refuses an event
outright (an HTTP 4xx other than 408/429) gets ``max_attempts`` tries, then the event is
dropped. When a queue is full, the least severe, oldest event goes first (a flood of
low-severity events cannot push out a key compromise or a checkpoint). Every drop is
counted, logged with its delivery id and type, and told to the receiver itself in an
``events_dropped`` event sent before the next delivery. Formats: ``docs/event-sinks.md``.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from qrc.keys.audit.note import InvalidNote, parse_note
from qrc.keys.audit.witness import Witness
from qrc.keys.observers import KeyUse, SecurityNotice

__all__ = [
    "KIND_CHECKPOINT",
    "KIND_DROPPED",
    "KIND_INCIDENT",
    "KIND_SECURITY",
    "Sink",
    "SinkDispatcher",
    "SinkError",
    "SinkEvent",
    "SinkStats",
    "WitnessTee",
    "new_delivery_id",
]

logger = logging.getLogger(__name__)

KIND_SECURITY = "security_event"
KIND_CHECKPOINT = "audit_checkpoint"
KIND_INCIDENT = "incident"
KIND_DROPPED = "events_dropped"

# How much an event matters when a queue must drop one (higher: kept longer).
_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_CHECKPOINT_RANK = 3
_INCIDENT_RANK = 5
_MAX_DROPPED_IDS = 50


def new_delivery_id() -> str:
    """A fresh delivery id: ``evt_`` and 128 random bits in hex."""
    return "evt_" + secrets.token_hex(16)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SinkEvent:
    """One event as every sink sends it (``docs/event-sinks.md``, "The event")."""

    kind: str
    type: str
    severity: str
    data: dict[str, Any]
    node: str
    id: str = field(default_factory=new_delivery_id)
    time: datetime = field(default_factory=_now)

    @property
    def rank(self) -> int:
        """Priority when a full queue must drop something."""
        if self.kind == KIND_INCIDENT:
            return _INCIDENT_RANK
        if self.kind == KIND_CHECKPOINT:
            return _CHECKPOINT_RANK
        return _RANK.get(self.severity, 0)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object (webhook body, syslog message)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "type": self.type,
            "severity": self.severity,
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "node": self.node,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        """Compact JSON with sorted keys, ASCII only (every other character escaped: no raw
        control or line-break character can reach a log line)."""
        return json.dumps(
            self.as_dict(), sort_keys=True, separators=(",", ":"), default=str
        ).encode("ascii")


class SinkError(Exception):
    """A delivery failed; ``permanent`` when the receiver refused this event (no retry helps)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sink(Protocol):
    """Somewhere events go: ``send`` delivers one or raises :class:`SinkError`."""

    name: str

    def send(self, event: SinkEvent) -> None:
        """Deliver ``event`` (blocking, bounded by the sink's timeout)."""

    def close(self) -> None:
        """Let go of connections."""


@dataclass
class SinkStats:
    """Counters of one sink (exported as ``qrc_sink_*`` metrics)."""

    sink: str
    queued: int = 0
    delivered: int = 0
    retries: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    depth: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial`` doubling up to ``maximum`` seconds."""

    initial: float = 0.5
    maximum: float = 60.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1, 2, ...)."""
        return float(min(self.maximum, self.initial * (2 ** min(attempt - 1, 30))))


class _Worker:
    """One sink's bounded queue and the thread that drains it."""

    def __init__(
        self, sink: Sink, node: str, capacity: int, backoff: Backoff, max_attempts: int
    ) -> None:
        self.sink = sink
        self.node = node
        self.capacity = capacity
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.stats = SinkStats(sink.name)
        self._queue: deque[SinkEvent] = deque()
        self._ranks: Counter[int] = Counter()  # events queued per rank: the drop choice is O(1)
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._dropped: list[tuple[str, str, str]] = []  # (delivery id, type, reason)
        self._dropped_count = 0
        self._thread = threading.Thread(target=self._run, name=f"qrc-sink-{sink.name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producers
    def offer(self, event: SinkEvent) -> None:
        """Queue ``event`` without ever blocking; when full, drop the least important."""
        with self._cond:
            if self._stopping:
                return
            self.stats.queued += 1
            if len(self._queue) >= self.capacity:
                lowest = min(rank for rank, n in self._ranks.items() if n)
                if event.rank < lowest:
                    self._drop(event, "queue_full")
                    self._cond.notify_all()
                    return
                # The oldest of the least important: near the head in a flood of them.
                victim = next(e for e in self._queue if e.rank == lowest)
                self._queue.remove(victim)
                self._ranks[victim.rank] -= 1
                self._drop(victim, "queue_full")
            self._queue.append(event)
            self._ranks[event.rank] += 1
            self.stats.depth = len(self._queue)
            self._cond.notify_all()

    def _drop(self, event: SinkEvent, reason: str) -> None:
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
        self._dropped_count += 1
        if len(self._dropped) < _MAX_DROPPED_IDS:
            self._dropped.append((event.id, event.type, reason))
        logger.warning(
            "event sink %s dropped %s %s (%s, delivery id %s)",
            self.sink.name,
            event.kind,
            event.type,
            reason.replace("_", " "),
            event.id,
        )

    # ------------------------------------------------------------------ the thread
    def _next(self) -> SinkEvent | None:
        with self._cond:
            while not self._queue and not self._dropped_count and not self._stopping:
                self._cond.wait()
            if self._stopping and not self._queue:
                return None
            self._busy = True
            if self._dropped_count:
                # Tell the receiver what it will never get, before anything newer.
                notice = SinkEvent(
                    kind=KIND_DROPPED,
                    type="events_dropped",
                    severity="high",
                    node=self.node,
                    data={
                        "sink": self.sink.name,
                        "count": self._dropped_count,
                        "dropped": [{"id": i, "type": t, "reason": r} for i, t, r in self._dropped],
                    },
                )
                self._dropped, self._dropped_count = [], 0
                return notice
            event = self._queue.popleft()
            self._ranks[event.rank] -= 1
            self.stats.depth = len(self._queue)
            return event

    def _run(self) -> None:
        while (event := self._next()) is not None:
            try:
                self._deliver(event)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, event: SinkEvent) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                self.sink.send(event)
            except Exception as exc:  # a sink must never kill its worker
                permanent = isinstance(exc, SinkError) and exc.permanent
                with self._cond:
                    self.stats.last_error = str(exc)[:300] or type(exc).__name__
                    gave_up = "refused" if permanent and attempt >= self.max_attempts else None
                    if self._stopping:
                        gave_up = "shutdown"
                    if gave_up is not None:
                        if event.kind == KIND_DROPPED:
                            # Never a notice of a lost notice (that could loop): log it only.
                            logger.warning("event sink %s lost %s", self.sink.name, event.data)
                        else:
                            # Lost, but never silently: counted, logged, told next time.
                            self._drop(event, gave_up)
                        return
                    self.stats.retries += 1
                    wait = self.backoff.delay(attempt)
                    if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8...: not a flood
                        logger.warning(
                            "event sink %s: delivery %s failed (attempt %d, retrying in %.1fs): %s",
                            self.sink.name,
                            event.id,
                            attempt,
                            wait,
                            self.stats.last_error,
                        )
                    self._cond.wait(wait)
                    if self._stopping:  # woken to stop: no further attempt
                        if event.kind != KIND_DROPPED:
                            self._drop(event, "shutdown")
                        return
                continue
            with self._cond:
                self.stats.delivered += 1
                self.stats.last_error = None
            return

    # ------------------------------------------------------------------ control
    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to drain; whether it did."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and not self._busy and not self._dropped_count, timeout
            )

    def stop(self, flush_seconds: float) -> None:
        """Drain for up to ``flush_seconds``, then stop; events still queued are dropped
        (counted and logged)."""
        self.flush(flush_seconds)
        with self._cond:
            self._stopping = True
            while self._queue:
                self._drop(self._queue.popleft(), "shutdown")
            self._ranks.clear()
            self.stats.depth = 0
            self._cond.notify_all()
        self._thread.join(timeout=max(1.0, flush_seconds))
        try:
            self.sink.close()
        except Exception:
            logger.exception("event sink %s did not close cleanly", self.sink.name)


class SinkDispatcher:
    """Every sink's queue; an observer of the key service; stopped at shutdown.

    ``capacity`` bounds each sink's queue; ``backoff`` spaces the retries; a refused event
    is tried ``max_attempts`` times. ``flush_seconds`` is how long :meth:`stop` lets queued
    events go out.
    """

    def __init__(
        self,
        sinks: Iterable[Sink],
        *,
        node: str | None = None,
        capacity: int = 10_000,
        backoff: Backoff | None = None,
        max_attempts: int = 5,
        flush_seconds: float = 5.0,
    ) -> None:
        self.node = node or socket.gethostname()
        self.flush_seconds = flush_seconds
        self._workers = [
            _Worker(sink, self.node, max(1, capacity), backoff or Backoff(), max_attempts)
            for sink in sinks
        ]

    @property
    def sinks(self) -> list[str]:
        """The sinks' names."""
        return [worker.sink.name for worker in self._workers]

    def publish(self, event: SinkEvent) -> None:
        """Queue ``event`` for every sink (never blocks, never raises)."""
        for worker in self._workers:
            try:
                worker.offer(event)
            except Exception:
                logger.exception("event sink %s could not queue an event", worker.sink.name)

    def event(self, kind: str, type_: str, severity: str, data: dict[str, Any]) -> SinkEvent:
        """Make an event of this node and publish it; the event is returned."""
        made = SinkEvent(kind=kind, type=type_, severity=severity, data=data, node=self.node)
        self.publish(made)
        return made

    # ------------------------------------------------------------------ observer
    def key_used(self, use: KeyUse) -> None:
        """Observer: key uses stay in the audit chain; only security events leave."""

    def security_event(self, notice: SecurityNotice) -> None:
        """Observer: queue the security event for every sink."""
        data: dict[str, Any] = {"source": notice.source, "details": dict(notice.details)}
        if notice.key_id is not None:
            data["key_id"] = notice.key_id
        if notice.algorithm is not None:
            data["algorithm"] = notice.algorithm
        # The story's fields, where the service records them.
        for name in ("description", "is_quantum_threat_related", "action_taken"):
            value = getattr(notice, name, None)
            if value is not None:
                data[name] = value
        self.event(KIND_SECURITY, notice.event_type, notice.severity, data)

    def checkpoint(self, note: bytes) -> None:
        """Queue a signed checkpoint note (as published to the witness)."""
        try:
            parsed = parse_note(note)
        except InvalidNote:
            logger.warning("not sending a malformed checkpoint note to the event sinks")
            return
        data = {
            "origin": parsed.origin,
            "seq": parsed.seq,
            "head_hash": parsed.text.decode("utf-8").split("\n")[2],
            "note": note.decode("utf-8"),
        }
        self.event(KIND_CHECKPOINT, "audit_checkpoint", "low", data)

    # ------------------------------------------------------------------ control
    def stats(self) -> list[SinkStats]:
        """A copy of every sink's counters."""
        out = []
        for worker in self._workers:
            with worker._cond:
                stats = vars(worker.stats) | {"dropped": dict(worker.stats.dropped)}
            out.append(SinkStats(**stats))
        return out

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (in all) for every queue to drain."""
        deadline = time.monotonic() + timeout
        return all(w.flush(max(0.0, deadline - time.monotonic())) for w in self._workers)

    def stop(self) -> None:
        """Let queued events go out for a while, then stop every worker."""
        deadline = time.monotonic() + self.flush_seconds
        for worker in self._workers:
            worker.stop(max(0.0, deadline - time.monotonic()))


class WitnessTee:
    """A witness that publishes to ``inner`` (the witness file) and sends the note to the sinks.

    The service publishes each checkpoint it makes once it has committed; the note goes to
    the sinks after the inner witness took it. One the inner witness refuses (a rollback,
    a fork) is sent too: the SIEM then holds the evidence.
    """

    def __init__(self, inner: Witness | None, send: Callable[[bytes], None]) -> None:
        self.inner = inner
        self._send = send

    def publish(self, note: bytes) -> None:
        """Keep ``note`` in the inner witness (which may refuse it), and send it."""
        try:
            if self.inner is not None:
                self.inner.publish(note)
        finally:
            self._send(note)

    def latest(self) -> bytes | None:
        """The inner witness's latest checkpoint (the sinks are write-only)."""
        return self.inner.latest() if self.inner is not None else None
