"""The dashboard, computed at most once every few seconds per key service.

The overview polls; computing it reads every key, the index and the audit trail. So one
snapshot is kept per key service for ``seconds`` (5 by default) and handed to every caller
in that time. Every role that may read the dashboard sees the same, whole snapshot (the
route admits no key-scoped role), so one entry per service is enough.

Invalidation: the cache is an observer of its key service. Any change to a key (create,
rotate, revoke, destroy...) or any security event recorded by *this* process drops the
snapshot at once, so the next request recomputes; data-plane uses (encrypt, decrypt, sign,
verify...) only move "last audited use" dates and wait for the time limit. Changes made by
another process sharing the store show within ``seconds``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.monitor.dashboard import SecurityDashboard, build_dashboard
from qrc.monitor.risk_config import RiskConfig

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = ["CACHE_SECONDS", "DashboardCache", "cache_of", "cached_dashboard"]

CACHE_SECONDS = 5.0
# Uses that change nothing the dashboard counts (beyond "last audited use" dates).
_DATA_PLANE = frozenset({"encrypt", "decrypt", "sign", "verify", "rewrap", "datakey"})


class DashboardCache:
    """One key service's latest dashboard, valid for ``seconds`` or until a change."""

    def __init__(
        self,
        service: KeyService,
        *,
        seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = weakref.ref(service)
        self.seconds, self._clock = seconds, clock
        self._lock = threading.Lock()
        self._computing = threading.Lock()  # one computation at a time; others wait for it
        self._snapshot: SecurityDashboard | None = None
        self._taken_at = 0.0
        self._generation = 0
        self.computed = 0
        """How many snapshots were computed (for tests and metrics)."""

    def invalidate(self) -> None:
        """Forget the snapshot: the next :meth:`get` recomputes."""
        with self._lock:
            self._generation += 1
            self._snapshot = None

    # Observer of the key service.
    def key_used(self, use: KeyUse) -> None:
        if use.operation not in _DATA_PLANE:
            self.invalidate()

    def security_event(self, notice: SecurityNotice) -> None:
        self.invalidate()

    def get(
        self,
        *,
        tls_dir: Path | None = None,
        counters: HandshakeCounters | None = None,
        tls_mode: str | None = None,
        risk_config: RiskConfig | None = None,
    ) -> SecurityDashboard:
        """The snapshot if it is fresh, else a new one (one computation at a time)."""
        with self._computing:
            return self._fresh() or self._compute(tls_dir, counters, tls_mode, risk_config)

    def _fresh(self) -> SecurityDashboard | None:
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and self._clock() - self._taken_at < self.seconds:
                return snapshot
            return None

    def _compute(
        self,
        tls_dir: Path | None,
        counters: HandshakeCounters | None,
        tls_mode: str | None,
        risk_config: RiskConfig | None,
    ) -> SecurityDashboard:
        with self._lock:
            generation = self._generation
        service = self._service()
        if service is None:
            raise RuntimeError("the key service of this dashboard cache is gone")
        # Computed outside the lock: a change observed meanwhile (generation moved) means
        # this snapshot may predate it, so it is returned but not kept.
        started = self._clock()
        snapshot = build_dashboard(
            service,
            tls_dir=tls_dir,
            counters=counters,
            tls_mode=tls_mode,
            risk_config=risk_config,
        )
        with self._lock:
            self.computed += 1
            if generation == self._generation:
                self._snapshot, self._taken_at = snapshot, started
        return snapshot


_CACHES: weakref.WeakKeyDictionary[KeyService, DashboardCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_of(service: KeyService) -> DashboardCache:
    """The dashboard cache of ``service`` (made, and made its observer, on first use)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(service)
        if cache is None:
            cache = _CACHES[service] = DashboardCache(service)
            service.observers.add(cache)
        return cache


def cached_dashboard(
    service: KeyService,
    *,
    tls_dir: Path | None = None,
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    risk_config: RiskConfig | None = None,
) -> SecurityDashboard:
    """The dashboard of ``service``, at most :data:`CACHE_SECONDS` old (see the module)."""
    return cache_of(service).get(
        tls_dir=tls_dir, counters=counters, tls_mode=tls_mode, risk_config=risk_config
    )
