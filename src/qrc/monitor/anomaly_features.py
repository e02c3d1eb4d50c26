"""Windowed features of audit and usage events, per token (actor) and per key.

Events come from three places and look the same here (:class:`Event`): rows of the audit
chain (the history a model is trained on), :class:`~qrc.keys.observers.KeyUse` reports and
:class:`~qrc.keys.observers.SecurityNotice` reports (what the running service sees now).
Each event counts towards the window (``window_seconds``, aligned to the epoch) of its actor
and, when it names one, of its key. A :class:`Profile` sums up an entity's history: median
and MAD of its counts per active window, its hours of the day, its source addresses and its
operation mix; :func:`features` measures one window against it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qrc.keys.audit.events import EventType
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.keys.store.models import AuditEvent

__all__ = [
    "EXPORT_OPERATIONS",
    "FAILED_RESULTS",
    "FEATURE_NAMES",
    "Entity",
    "Event",
    "Profile",
    "WindowStats",
    "event_from_audit",
    "event_from_notice",
    "event_from_use",
    "features",
    "group_windows",
    "new_sources",
]

FAILED_RESULTS = frozenset({"failure", "invalid", "denied"})
"""A decryption that did not open, a signature that did not verify, a refusal."""
# Operations that hand key material or data out of the service in bulk.
EXPORT_OPERATIONS = frozenset({"datakey", "backup.create", "audit.export", "export"})
# Security events that reach observers and stand for something a source did; their audit
# twins (same actor and operation names) are what the history holds.
_NOTICE_EVENTS = {
    EventType.CLASSICAL_TLS_HANDSHAKE.value: "tls.classical_tls_handshake",
    EventType.TLS_HANDSHAKE_REFUSED.value: "tls.tls_handshake_refused",
    EventType.AUTHENTICATION_FAILURE.value: "auth.failure",
}
FEATURE_NAMES = (
    "z_count",
    "z_failures",
    "failure_ratio",
    "z_exports",
    "hour_rarity",
    "mix_distance",
    "new_sources",
)
# 1.4826 * MAD estimates the standard deviation of normal data; the +1 keeps an entity whose
# windows all look alike (MAD 0) from turning one extra event into an infinite z-score.
_MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Event:
    """One audited thing an actor did: ``operation`` without the ``key.`` prefix."""

    at: datetime
    actor: str
    operation: str
    result: str = "success"
    key_id: str | None = None
    source: str | None = None
    # How many things it stands for: the TLS telemetry writes one event for a burst of
    # handshakes, with the others in ``details.left_out``.
    weight: int = 1

    @property
    def failed(self) -> bool:
        """Whether it failed or was refused."""
        return self.result in FAILED_RESULTS


@dataclass(frozen=True, order=True)
class Entity:
    """What a window belongs to: ``kind`` is ``actor`` (a token, ``tls``...) or ``key``."""

    kind: str
    name: str

    def describe(self) -> str:
        """How an operator reads it: ``token ci-deployer``, ``key k_...``, ``actor tls``."""
        if self.kind == "actor" and self.name.startswith("token:"):
            return "token " + self.name.split(":", 2)[-1]
        return f"{self.kind} {self.name}"


def _operation(event_type: str) -> str:
    return event_type.removeprefix("key.")


def _weight(details: Mapping[str, Any] | None) -> int:
    left_out = (details or {}).get("left_out")
    return 1 + left_out if isinstance(left_out, int) and left_out > 0 else 1


def event_from_audit(row: AuditEvent) -> Event:
    """An event of the audit chain (the request's address is ``details.source``)."""
    source = (row.details or {}).get("source")
    return Event(
        at=row.at,
        actor=row.actor,
        operation=_operation(row.event_type),
        result=row.result,
        key_id=row.key_id,
        source=source if isinstance(source, str) else None,
        weight=_weight(row.details),
    )


def event_from_use(use: KeyUse, at: datetime) -> Event:
    """A key use as an observer hears it."""
    return Event(at, use.actor, use.operation, use.result, use.key_id, use.source)


def event_from_notice(notice: SecurityNotice, at: datetime) -> Event | None:
    """A security event an observer hears, as its audit twin reads; None for the others."""
    operation = _NOTICE_EVENTS.get(notice.event_type)
    if operation is None:
        return None
    if operation == "auth.failure":
        return Event(at, f"anonymous@{notice.source}", operation, "failure")
    weight = _weight(notice.details)
    return Event(at, notice.source, operation, "failure", notice.key_id, weight=weight)


@dataclass
class WindowStats:
    """What one entity did in one window."""

    entity: Entity
    start: datetime
    count: int = 0
    failures: int = 0
    exports: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    failed_operations: Counter[str] = field(default_factory=Counter)
    sources: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)

    def add(self, event: Event) -> None:
        n = event.weight
        self.count += n
        self.operations[event.operation] += n
        if event.failed:
            self.failures += n
            self.failed_operations[event.operation] += n
        if event.operation in EXPORT_OPERATIONS:
            self.exports += n
        if event.source is not None:
            self.sources.add(event.source)
        self.events.append(event)


def _window_start(at: datetime, seconds: float) -> datetime:
    stamp = at.timestamp()
    return datetime.fromtimestamp(stamp - stamp % seconds, UTC)


def group_windows(events: Iterable[Event], window_seconds: float) -> list[WindowStats]:
    """The windows of every actor and key, in order of time then entity."""
    windows: dict[tuple[datetime, Entity], WindowStats] = {}
    for event in events:
        start = _window_start(event.at, window_seconds)
        entities = [Entity("actor", event.actor)]
        if event.key_id is not None:
            entities.append(Entity("key", event.key_id))
        for entity in entities:
            stats = windows.get((start, entity))
            if stats is None:
                stats = windows[(start, entity)] = WindowStats(entity, start)
            stats.add(event)
    return [windows[k] for k in sorted(windows)]


def _median_mad(values: list[int]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    deviations = sorted(abs(v - median) for v in ordered)
    mad = deviations[mid] if len(ordered) % 2 else (deviations[mid - 1] + deviations[mid]) / 2
    return median, float(mad)


@dataclass
class Profile:
    """An entity's history in numbers (or the whole service's, for entities never seen)."""

    windows: int = 0
    events: int = 0
    failures: int = 0
    count_median: float = 0.0
    count_mad: float = 0.0
    failures_median: float = 0.0
    failures_mad: float = 0.0
    exports_median: float = 0.0
    exports_mad: float = 0.0
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    sources: set[str] = field(default_factory=set)
    mix: dict[str, float] = field(default_factory=dict)
    known: bool = True
    """False for the service-wide profile that stands in for an entity with no history."""

    @classmethod
    def of(cls, windows: list[WindowStats], *, known: bool = True) -> Profile:
        """The profile of ``windows`` (one entity's, or all of them)."""
        profile = cls(windows=len(windows), known=known)
        profile.count_median, profile.count_mad = _median_mad([w.count for w in windows])
        profile.failures_median, profile.failures_mad = _median_mad([w.failures for w in windows])
        profile.exports_median, profile.exports_mad = _median_mad([w.exports for w in windows])
        operations: Counter[str] = Counter()
        for window in windows:
            profile.events += window.count
            profile.failures += window.failures
            profile.hours[window.start.hour] += window.count
            profile.sources |= window.sources
            operations.update(window.operations)
        total = sum(operations.values()) or 1
        profile.mix = {op: n / total for op, n in operations.items()}
        return profile

    @property
    def failure_share(self) -> float:
        """The share of its events that failed."""
        return self.failures / self.events if self.events else 0.0

    def hour_share(self, hour: int) -> float:
        """The share of its events in ``hour`` (UTC), smoothed over the hours either side
        (a job that runs at 12:00 and 14:00 may run at 13:00) and never zero."""
        near = sum(self.hours[(hour + d) % 24] for d in (-1, 0, 1)) / 3
        return (near + 1) / (self.events + 24)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (sources counted, not listed)."""
        busiest = sorted(range(24), key=lambda h: -self.hours[h])[:3]
        return {
            "windows": self.windows,
            "events": self.events,
            "usual_per_window": self.count_median,
            "failure_share": round(self.failure_share, 4),
            "sources": len(self.sources),
            "busiest_hours_utc": sorted(busiest),
            "operations": {op: round(share, 3) for op, share in sorted(self.mix.items())},
        }


def _robust_z(value: float, median: float, mad: float) -> float:
    return (value - median) / (_MAD_SCALE * mad + 1.0)


def new_sources(window: WindowStats, profile: Profile) -> set[str]:
    """Addresses of ``window`` its token never used (none for an entity with no history, and
    none for keys: a key serves several tokens, and each token's addresses are its own)."""
    if window.entity.kind != "actor" or not profile.known or not profile.sources:
        return set()
    return window.sources - profile.sources


def features(window: WindowStats, profile: Profile) -> dict[str, float]:
    """``window`` measured against ``profile`` (the names are :data:`FEATURE_NAMES`)."""
    count = window.count or 1
    shares: Mapping[str, float] = {op: n / count for op, n in window.operations.items()}
    ops = set(shares) | set(profile.mix)
    mix_distance = 0.5 * sum(abs(shares.get(op, 0.0) - profile.mix.get(op, 0.0)) for op in ops)
    return {
        "z_count": _robust_z(window.count, profile.count_median, profile.count_mad),
        "z_failures": _robust_z(window.failures, profile.failures_median, profile.failures_mad),
        "failure_ratio": window.failures / count,
        "z_exports": _robust_z(window.exports, profile.exports_median, profile.exports_mad),
        "hour_rarity": max(0.0, -math.log(24 * profile.hour_share(window.start.hour))),
        "mix_distance": mix_distance if profile.mix else 0.0,
        "new_sources": float(len(new_sources(window, profile))),
    }
