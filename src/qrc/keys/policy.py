"""Cryptographic policy: default algorithms per purpose, algorithm status, TLS mode.

Stored in ``qrc_policies`` so that every service process applies the same policy: each one
re-reads it every few seconds (:func:`refresh`). Changing policy first produces a *plan*
(which keys the change affects and what to do about them), then records it, audited.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import REGISTRY, Kind, Status, get_info, set_status
from qrc.keys.db import utcnow
from qrc.keys.errors import InvalidRequest
from qrc.keys.lifecycle import KeyState, Purpose
from qrc.keys.models import Key, Policy

__all__ = [
    "TLS_MODES",
    "AffectedKey",
    "PolicyPlan",
    "PolicyUpdate",
    "apply_update",
    "current_policy",
    "plan_update",
    "refresh",
]

TLS_MODES = ("pq-only", "hybrid-preferred")
_BASELINE = {info.id: info.status for info in REGISTRY.values()}
_applied_at: datetime | None = None
_checked = 0.0
_lock = threading.Lock()


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


def _validate(update: PolicyUpdate) -> tuple[dict[str, str], dict[str, Status]]:
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
        if statuses.get(algorithm, get_info(algorithm).status) in (
            Status.DEPRECATED,
            Status.DISALLOWED,
        ):
            raise InvalidRequest(f"{algorithm} cannot be a default while deprecated/disallowed")
    if update.tls_mode is not None and update.tls_mode not in TLS_MODES:
        raise InvalidRequest(f"tls_mode must be one of {', '.join(TLS_MODES)}")
    return defaults, statuses


def current_policy(session: Session) -> dict[str, Any]:
    """The stored policy, with defaults filled in."""
    from qrc.keys.management import DEFAULT_ALGORITHMS  # noqa: PLC0415 - avoids a cycle

    stored = {row.name: row.value for row in session.scalars(select(Policy))}
    defaults = {p.value: a for p, a in DEFAULT_ALGORITHMS.items()}
    defaults.update(stored.get("default_algorithms") or {})
    return {
        "default_algorithms": defaults,
        "algorithm_status": dict(stored.get("algorithm_status") or {}),
        "tls_mode": stored.get("tls_mode") or "pq-only",
    }


def plan_update(session: Session, update: PolicyUpdate) -> PolicyPlan:
    """Validate ``update`` and say what it would change and which keys it affects."""
    defaults, statuses = _validate(update)
    changes = [f"default for {p}: {a}" for p, a in defaults.items()]
    changes += [f"{a}: {s.value}" for a, s in statuses.items()]
    if update.tls_mode:
        changes.append(f"TLS mode: {update.tls_mode}")
    affected: list[AffectedKey] = []
    flagged = {a: s for a, s in statuses.items() if s in (Status.DEPRECATED, Status.DISALLOWED)}
    if flagged:
        live = select(Key).where(Key.algorithm.in_(flagged), Key.status != KeyState.DESTROYED.value)
        for key in session.scalars(live.order_by(Key.name)):
            if flagged[key.algorithm] is Status.DISALLOWED:
                action = "disallowed: every use fails; create a replacement key and rewrap data"
            else:
                action = "deprecated: create a replacement key with an active algorithm and rewrap"
            affected.append(AffectedKey(key.id, key.name, key.algorithm, key.status, action))
    merged = current_policy(session)
    merged["default_algorithms"].update(defaults)
    merged["algorithm_status"].update({a: s.value for a, s in statuses.items()})
    if update.tls_mode:
        merged["tls_mode"] = update.tls_mode
    return PolicyPlan(changes, affected, merged)


def apply_update(session: Session, update: PolicyUpdate, actor: str) -> PolicyPlan:
    """Record ``update`` (in the caller's transaction) and apply it in this process."""
    plan = plan_update(session, update)
    now = utcnow()
    for name in ("default_algorithms", "algorithm_status", "tls_mode"):
        value = plan.policy[name]
        row = session.get(Policy, name)
        if row is None:
            session.add(Policy(name=name, value=value, updated_at=now, updated_by=actor))
        else:
            row.value, row.updated_at, row.updated_by = value, now, actor
    session.flush()
    _apply_statuses(plan.policy["algorithm_status"])
    return plan


def _apply_statuses(overrides: dict[str, str]) -> None:
    for algorithm, baseline in _BASELINE.items():
        wanted = Status(overrides.get(algorithm, baseline.value))
        if REGISTRY[algorithm].status is not wanted:
            set_status(algorithm, wanted)


def refresh(session: Session, *, every: float = 5.0) -> None:
    """Apply the stored algorithm statuses if they changed (at most every ``every`` s)."""
    global _applied_at, _checked  # noqa: PLW0603 - the registry is the one global state
    now = time.monotonic()
    if now - _checked < every:
        return
    with _lock:
        _checked = now
        row = session.get(Policy, "algorithm_status")
        stamp = row.updated_at if row is not None else None
        if stamp == _applied_at:
            return
        _apply_statuses(dict(row.value or {}) if row is not None else {})
        _applied_at = stamp
