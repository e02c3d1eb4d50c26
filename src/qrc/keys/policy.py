"""Cryptographic policy: algorithm statuses, default algorithms per purpose, TLS mode.

:class:`AlgorithmPolicy` is the one owner of the algorithm registry's statuses. Three things
decide an algorithm's status, strongest first:

1. the **floor**: an algorithm whose power-on self-test failed is ``disallowed`` in this
   process, and no policy update can raise it again;
2. the **stored overrides** (``qrc_policies``), which every service process re-reads every
   few seconds so that all of them apply the same policy;
3. the registry's **built-in** status.

Changing policy first produces a *plan* (which keys the change affects and what to do about
them); applying records it (the caller audits it in the same transaction).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.crypto.errors import AlgorithmNotAllowed, UnsupportedAlgorithm
from qrc.crypto.registry import BUILT_IN_STATUS, Kind, Status, get_info, set_status
from qrc.keys.errors import InvalidRequest
from qrc.keys.states import KeyState, Purpose
from qrc.keys.store.db import after_commit, utcnow
from qrc.keys.store.models import Key, Policy

__all__ = [
    "DEFAULT_ALGORITHMS",
    "TLS_MODES",
    "AffectedKey",
    "AlgorithmPolicy",
    "PolicyPlan",
    "PolicyUpdate",
]

TLS_MODES = ("pq-only", "hybrid-preferred")
# Hybrid by default (DESIGN.md): X-Wing for encryption, composite ML-DSA for signatures.
DEFAULT_ALGORITHMS: dict[Purpose, str] = {
    Purpose.ENCRYPTION: "X25519MLKEM768",
    Purpose.SIGNING: "MLDSA65-Ed25519-SHA512",
    Purpose.KEY_WRAPPING: "AES-256-GCM",
}
_UNFIT_FOR_NEW_KEYS = (Status.DEPRECATED, Status.DISALLOWED)
_NEVER = object()  # the stamp before the first read: any stored state differs from it
# Self-test failures hold for the whole process: every policy that writes the process-wide
# registry honours them, so a second service (or a tool) in the process cannot lift them.
_PROCESS_FLOOR: dict[str, str] = {}


@dataclass(frozen=True)
class PolicyUpdate:
    """A requested change; every part is optional."""

    default_algorithms: dict[str, str] = field(default_factory=dict)
    algorithm_status: dict[str, str] = field(default_factory=dict)
    tls_mode: str | None = None


@dataclass(frozen=True)
class AffectedKey:
    """A key the change touches, and what the operator should do about it."""

    id: str
    name: str
    algorithm: str
    status: str
    action: str


@dataclass(frozen=True)
class PolicyPlan:
    """What a policy change does."""

    changes: list[str]
    affected_keys: list[AffectedKey]
    policy: dict[str, Any]


class AlgorithmPolicy:
    """Algorithm statuses (floor, stored overrides, built-in) and the stored policy.

    ``apply`` is where effective statuses are written: the process-wide registry by default,
    so that :mod:`qrc.crypto` refuses disallowed algorithms too; a test may pass its own
    sink and leave the registry alone. The key service asks :meth:`status` itself as well.
    """

    def __init__(
        self,
        *,
        built_in: Mapping[str, Status] = BUILT_IN_STATUS,
        apply: Callable[[str, Status], object] = set_status,
        refresh_seconds: float = 5.0,
    ) -> None:
        self._built_in = dict(built_in)
        self._apply = apply
        # algorithm → why it is disallowed here (shared by every policy of the registry)
        self._floor: dict[str, str] = _PROCESS_FLOOR if apply is set_status else {}
        self._overrides: dict[str, Status] = {}
        # Before the first read of the store: built-in statuses under the floor.
        self._effective: dict[str, Status] = {
            a: Status.DISALLOWED if a in self._floor else s for a, s in self._built_in.items()
        }
        self.refresh_seconds = refresh_seconds
        self._checked = -float("inf")
        self._stamp: datetime | object | None = _NEVER
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()

    # ------------------------------------------------------------------ statuses
    def status(self, algorithm: str) -> Status:
        """The status this process applies to ``algorithm`` (a registry ID)."""
        return self._effective.get(algorithm, Status.DISALLOWED)

    def check_allowed(self, algorithm: str) -> None:
        """Raise :class:`AlgorithmNotAllowed` if ``algorithm`` is disallowed here."""
        if self.status(algorithm) is Status.DISALLOWED:
            why = self._floor.get(algorithm, "disallowed by policy")
            raise AlgorithmNotAllowed(f"{algorithm} is disallowed ({why})")

    def check_fit_for_new_keys(self, algorithm: str) -> None:
        """Raise :class:`InvalidRequest` if new keys may not use ``algorithm``."""
        status = self.status(algorithm)
        if status in _UNFIT_FOR_NEW_KEYS:
            raise InvalidRequest(
                f"{algorithm} is {status.value}: new keys must use an active algorithm "
                "(see GET /algorithms/status or `qrc algorithms`)"
            )

    @property
    def floor(self) -> dict[str, str]:
        """Algorithms disallowed here whatever the policy says, and why."""
        return dict(self._floor)

    def disallow(self, algorithms: Iterable[str], reason: str) -> None:
        """Put ``algorithms`` under the floor (a failed self-test): disallowed for good."""
        with self._lock:
            for algorithm in algorithms:
                self._floor[get_info(algorithm).id] = reason
            self._recompute()

    def _set_overrides(self, overrides: Mapping[str, str]) -> None:
        parsed: dict[str, Status] = {}
        for algorithm, status in overrides.items():
            try:
                parsed[get_info(algorithm).id] = Status(status)
            except (UnsupportedAlgorithm, ValueError):
                continue  # a stored name this version does not know: nothing to apply
        with self._lock:
            self._overrides = parsed
            self._recompute()

    def _recompute(self) -> None:
        for algorithm, built_in in self._built_in.items():
            wanted = self._overrides.get(algorithm, built_in)
            if algorithm in self._floor:
                wanted = Status.DISALLOWED
            self._effective[algorithm] = wanted
            self._apply(algorithm, wanted)

    def refresh(self, session: Session, *, force: bool = False) -> None:
        """Apply the stored statuses if they changed (read at most every few seconds)."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_seconds:
            return
        with self._refresh_lock:
            self._checked = now
            row = session.get(Policy, "algorithm_status")
            stamp = row.updated_at if row is not None else None
            if stamp == self._stamp and not force:
                return
            self._set_overrides(dict(row.value or {}) if row is not None else {})
            self._stamp = stamp

    # ------------------------------------------------------------------ stored policy
    def current(self, session: Session) -> dict[str, Any]:
        """The stored policy, with defaults filled in."""
        stored = {row.name: row.value for row in session.scalars(select(Policy))}
        defaults = {p.value: a for p, a in DEFAULT_ALGORITHMS.items()}
        defaults.update(stored.get("default_algorithms") or {})
        return {
            "default_algorithms": defaults,
            "algorithm_status": dict(stored.get("algorithm_status") or {}),
            "tls_mode": stored.get("tls_mode") or "pq-only",
        }

    @staticmethod
    def default_algorithm(session: Session, purpose: Purpose) -> str:
        """The policy's default algorithm for ``purpose`` (hybrid unless changed)."""
        row = session.get(Policy, "default_algorithms")
        if row is not None and isinstance(row.value, dict) and purpose.value in row.value:
            return str(row.value[purpose.value])
        return DEFAULT_ALGORITHMS[purpose]

    def plan(self, session: Session, update: PolicyUpdate) -> PolicyPlan:
        """Validate ``update`` and say what it would change and which keys it affects."""
        defaults, statuses = self._validate(update)
        changes = [f"default for {p}: {a}" for p, a in defaults.items()]
        changes += [f"{a}: {s.value}" for a, s in statuses.items()]
        if update.tls_mode:
            changes.append(f"TLS mode: {update.tls_mode}")
        affected: list[AffectedKey] = []
        flagged = {a: s for a, s in statuses.items() if s in _UNFIT_FOR_NEW_KEYS}
        if flagged:
            live = select(Key).where(
                Key.algorithm.in_(flagged), Key.status != KeyState.DESTROYED.value
            )
            for key in session.scalars(live.order_by(Key.name)):
                if flagged[key.algorithm] is Status.DISALLOWED:
                    action = "disallowed: every use fails; rotate to an active algorithm, rewrap"
                else:
                    action = "deprecated: rotate to an active algorithm, then rewrap data"
                affected.append(AffectedKey(key.id, key.name, key.algorithm, key.status, action))
        merged = self.current(session)
        merged["default_algorithms"].update(defaults)
        merged["algorithm_status"].update({a: s.value for a, s in statuses.items()})
        if update.tls_mode:
            merged["tls_mode"] = update.tls_mode
        return PolicyPlan(changes, affected, merged)

    def apply(self, session: Session, update: PolicyUpdate, actor: str) -> PolicyPlan:
        """Record ``update`` in the caller's transaction and apply it in this process."""
        plan = self.plan(session, update)
        now = utcnow()
        for name in ("default_algorithms", "algorithm_status", "tls_mode"):
            value = plan.policy[name]
            row = session.get(Policy, name)
            if row is None:
                session.add(Policy(name=name, value=value, updated_at=now, updated_by=actor))
            else:
                row.value, row.updated_at, row.updated_by = value, now, actor
        session.flush()
        overrides = dict(plan.policy["algorithm_status"])

        def take_effect() -> None:  # here, once the change is the store's
            with self._refresh_lock:
                self._set_overrides(overrides)
                self._stamp = now

        after_commit(session, take_effect)
        return plan

    def _validate(self, update: PolicyUpdate) -> tuple[dict[str, str], dict[str, Status]]:
        defaults: dict[str, str] = {}
        for purpose, algorithm in update.default_algorithms.items():
            try:
                purpose_enum = Purpose(purpose)
                info = get_info(algorithm)
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise InvalidRequest(f"default_algorithms: {exc}") from None
            wants = (Kind.SIGNATURE,) if purpose_enum is Purpose.SIGNING else (Kind.KEM, Kind.AEAD)
            if info.kind not in wants:
                raise InvalidRequest(f"{info.id} cannot be the default for {purpose}")
            defaults[purpose_enum.value] = info.id
        statuses: dict[str, Status] = {}
        for algorithm, status in update.algorithm_status.items():
            try:
                statuses[get_info(algorithm).id] = Status(status)
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise InvalidRequest(f"algorithm_status: {exc}") from None
        for algorithm in defaults.values():
            wanted = statuses.get(algorithm, self.status(algorithm))
            if wanted in _UNFIT_FOR_NEW_KEYS or algorithm in self._floor:
                raise InvalidRequest(f"{algorithm} cannot be a default while deprecated/disallowed")
        if update.tls_mode is not None and update.tls_mode not in TLS_MODES:
            raise InvalidRequest(f"tls_mode must be one of {', '.join(TLS_MODES)}")
        return defaults, statuses
