"""The dashboard, computed at most once every few seconds per key service.

The overview polls; computing it reads every key, the index and the audit trail (the risk
and compliance parts read them again). So one snapshot is kept per key service and handed to
every caller: fresh for ``seconds`` (5 by default); older, it is still answered while one
refresh runs in the background, so a caller waits only for the first computation and after
a change. Every role that may read the dashboard sees the same, whole snapshot (the route
admits no key-scoped role), so one entry per service is enough.

Invalidation: the cache is an observer of its key service. A successful change to a key
(create, rotate, revoke, destroy...), a key compromise, the root KEK's custody going offline
or online, or a failed audit verification in *this* process drops the snapshot at once, so
the next request computes a new one; data-plane uses (encrypt, decrypt, sign, verify...)
and other security events wait for the time limit. Changes made by
another process sharing the store show within ``seconds`` and one computation.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qrc.keys.audit.events import EventType
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.monitor.dashboard import SecurityDashboard, build_dashboard
from qrc.monitor.risk_config import RiskConfig

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = ["CACHE_SECONDS", "DashboardCache", "cache_of", "cached_dashboard"]

logger = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
# Uses that change nothing the dashboard counts (beyond "last audited use" dates).
_DATA_PLANE = frozenset({"encrypt", "decrypt", "sign", "verify", "rewrap", "datakey"})
# Security events that change what the dashboard shows and are rare: a compromise, the root
# KEK's custody going down or up, a broken audit chain. Others (failed logins, classical
# handshakes: anyone can cause them) wait for the time limit, so they cannot force a new
# computation on every request.
_SHOWN_AT_ONCE = frozenset(
    e.value
    for e in (
        EventType.KEY_COMPROMISE,
        EventType.COMPROMISED_KEY_RECOVERY_USE,
        EventType.HSM_OFFLINE,
        EventType.HSM_RECOVERED,
        EventType.AUDIT_VERIFICATION_FAILURE,
    )
)


@dataclass(frozen=True)
class _Where:
    """What a computation reads besides the service (as for the inventory)."""

    tls_dir: Path | None = None
    counters: HandshakeCounters | None = None
    tls_mode: str | None = None
    risk_config: RiskConfig | None = None


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, daemon=True, name="qrc-dashboard").start()


class DashboardCache:
    """One key service's latest dashboard: fresh for ``seconds``, dropped on a change.

    Past ``seconds`` the old snapshot is still answered while one refresh runs in the
    background (``spawn``: a daemon thread), so a polling page never waits for a
    computation; after a change (see the module) the next caller waits for a new one.
    """

    def __init__(
        self,
        service: KeyService,
        *,
        seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self._service = weakref.ref(service)
        self.seconds, self._clock, self._spawn = seconds, clock, spawn
        self._lock = threading.Lock()
        self._computing = threading.Lock()  # one computation at a time; others wait for it
        self._snapshot: SecurityDashboard | None = None
        self._taken_at = 0.0
        self._generation = 0
        self._refreshing = False
        self.computed = 0
        """How many snapshots were computed (for tests and metrics)."""

    def invalidate(self) -> None:
        """Forget the snapshot: the next :meth:`get` computes a new one and waits for it."""
        with self._lock:
            self._generation += 1
            self._snapshot = None

    # Observer of the key service.
    def key_used(self, use: KeyUse) -> None:
        if use.result == "success" and use.operation not in _DATA_PLANE:
            self.invalidate()

    def security_event(self, notice: SecurityNotice) -> None:
        if notice.event_type in _SHOWN_AT_ONCE:
            self.invalidate()

    def get(
        self,
        *,
        tls_dir: Path | None = None,
        counters: HandshakeCounters | None = None,
        tls_mode: str | None = None,
        risk_config: RiskConfig | None = None,
    ) -> SecurityDashboard:
        """The snapshot (refreshed in the background once it is old), or a new one."""
        where = _Where(tls_dir, counters, tls_mode, risk_config)
        with self._lock:
            snapshot = self._snapshot
            refresh = (
                snapshot is not None
                and not self._refreshing
                and self._clock() - self._taken_at >= self.seconds
            )
            self._refreshing = self._refreshing or refresh
        if snapshot is not None:
            if refresh:
                self._spawn(lambda: self._refresh(where))
            return snapshot
        with self._computing:
            with self._lock:
                snapshot = self._snapshot  # computed by another caller while this one waited
            return snapshot if snapshot is not None else self._compute(where)

    def _refresh(self, where: _Where) -> None:
        try:
            with self._computing:
                self._compute(where)
        except Exception:  # the old snapshot stays; the next caller past the limit retries
            logger.exception("dashboard refresh failed")
        finally:
            with self._lock:
                self._refreshing = False

    def _compute(self, where: _Where) -> SecurityDashboard:
        with self._lock:
            generation = self._generation
        service = self._service()
        if service is None:
            raise RuntimeError("the key service of this dashboard cache is gone")
        # A change observed during the computation (generation moved) means this snapshot
        # may predate it: it is returned to its caller but not kept.
        started = self._clock()
        snapshot = build_dashboard(
            service,
            tls_dir=where.tls_dir,
            counters=where.counters,
            tls_mode=where.tls_mode,
            risk_config=where.risk_config,
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
