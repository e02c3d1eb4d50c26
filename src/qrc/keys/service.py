"""``KeyService``: the key service that the API, the command line and the other layers use.

It composes collaborators, one per job, over one :class:`ServiceContext` (store, key
material, audit log, algorithm policy, observers); none inherits from another:

- ``service.keys`` — lifecycle: create, rotate, change state, destroy (:mod:`.lifecycle.keys`);
- ``service.crypto`` — encrypt, decrypt, rewrap, data keys, sign, verify (:mod:`.operations`);
- ``service.audit`` — checkpoints, verification, export, queries, security events
  (:mod:`.trail`);
- ``service.tokens`` — API tokens and roles (:mod:`.access.tokens`);
- ``service.scheduler`` — due rotations, expiries, destructions (:mod:`.lifecycle.scheduler`);
- ``service.keks`` — the root KEKs and their rotation (:mod:`.lifecycle.kek_rotation`);
- ``service.backups`` — backup and restore (:mod:`.backup`);
- ``service.policy`` — algorithm statuses and the stored policy (:mod:`.policy`);
- ``service.data`` — the encrypted-data index: registration, rewrap records, shred reports
  (:mod:`.data_index`).

Each call that changes something commits the change and its audit event in one transaction.
What happens is reported to the observers given (:mod:`.observers`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from qrc.keys.access.tokens import TokenStore
from qrc.keys.audit.anchor import AuditAnchor, AuditMacKey
from qrc.keys.audit.detectors import FailureBurstDetector
from qrc.keys.audit.log import AuditLog
from qrc.keys.audit.witness import Witness
from qrc.keys.backup import Backups
from qrc.keys.cache import CacheStats
from qrc.keys.context import ServiceContext
from qrc.keys.custody.base import CustodyHealth
from qrc.keys.custody.keyring import Keyring
from qrc.keys.data_index import DataIndex
from qrc.keys.lifecycle.kek_rotation import KekRotation
from qrc.keys.lifecycle.keys import (
    DEFAULT_DESTRUCTION_DELAY,
    MIN_DESTRUCTION_DELAY,
    KeyLifecycle,
)
from qrc.keys.lifecycle.scheduler import KeyScheduler
from qrc.keys.material import KeyMaterial
from qrc.keys.observers import Observer, Observers
from qrc.keys.operations import KeyOperations
from qrc.keys.policy import AlgorithmPolicy, PolicyPlan, PolicyUpdate
from qrc.keys.store.db import Database, utcnow
from qrc.keys.store.models import Policy
from qrc.keys.trail import AuditTrail
from qrc.keys.usage import UsageRecorder

__all__ = ["JobReport", "KeyService"]

_BENCHMARKS = "benchmarks"

JobReport = dict[str, Any]


class KeyService:
    """Keys: create, use, rotate, revoke, destroy; every step audited."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        *,
        clock: Callable[[], datetime] = utcnow,
        destruction_delay: timedelta = DEFAULT_DESTRUCTION_DELAY,
        min_destruction_delay: timedelta = MIN_DESTRUCTION_DELAY,
        node: str | None = None,
        key_cache_seconds: float = 300.0,
        policy: AlgorithmPolicy | None = None,
        observers: Iterable[Observer] = (),
        audit_anchor: AuditAnchor | None = None,
        witness: Witness | None = None,
        audit_mac: AuditMacKey | None = None,
    ) -> None:
        self.observers = Observers(observers)
        self.ctx = ServiceContext(
            db,
            KeyMaterial(keyring, clock, cache_seconds=key_cache_seconds),
            audit_log=AuditLog(),
            policy=policy or AlgorithmPolicy(),
            observers=self.observers,
            clock=clock,
            node=node or "node-" + secrets.token_hex(4),
        )
        self.keys = KeyLifecycle(
            self.ctx,
            destruction_delay=destruction_delay,
            min_destruction_delay=min_destruction_delay,
        )
        self.usage = UsageRecorder(self.ctx)
        self.crypto = KeyOperations(self.ctx, self.usage)
        self.audit = AuditTrail(
            self.ctx, self.keys, anchor=audit_anchor, witness=witness, mac=audit_mac
        )
        self.tokens = TokenStore(self.ctx)
        self.scheduler = KeyScheduler(self.ctx)
        self.keks = KekRotation(self.ctx)
        self.backups = Backups(self.ctx, self.audit)
        self.data = DataIndex(self.ctx)
        self.observers.add(FailureBurstDetector(db, clock, report=self.observers.security_event))

    # The parts every collaborator shares, for callers that manage the service itself.
    @property
    def db(self) -> Database:
        """The store."""
        return self.ctx.db

    @property
    def keyring(self) -> Keyring:
        """The root KEK in use and any older ones still needed to unwrap."""
        return self.ctx.material.keyring

    @property
    def policy(self) -> AlgorithmPolicy:
        """Algorithm statuses and the stored policy."""
        return self.ctx.policy

    @property
    def clock(self) -> Callable[[], datetime]:
        """The service's clock (UTC)."""
        return self.ctx.clock

    # ------------------------------------------------------------------ jobs
    def run_jobs(self, *, actor: str = "scheduler") -> JobReport:
        """One scheduler pass: due key jobs, then a checkpoint if the chain moved."""
        report: JobReport = dict(self.scheduler.run_due(actor=actor))
        checkpoint = self.audit.checkpoint_if_moved(actor=actor)
        report["checkpoint_seq"] = checkpoint.seq if checkpoint is not None else None
        return report

    # ------------------------------------------------------------------ policy
    def update_policy(
        self, update: PolicyUpdate, *, actor: str, dry_run: bool = False
    ) -> PolicyPlan:
        """Plan (``dry_run``) or apply and audit a policy change, in one transaction."""
        with self.db.session() as session:
            if dry_run:
                return self.policy.plan(session, update)
            plan = self.policy.apply(session, update, actor)
            self.ctx.record(session, "policy.update", actor, details={"changes": plan.changes[:32]})
            return plan

    def current_policy(self) -> dict[str, Any]:
        """The stored policy, with defaults filled in."""
        with self.db.read_session() as session:
            return self.policy.current(session)

    def benchmarks(self) -> dict[str, Any]:
        """The latest stored benchmark of each algorithm (measured at first start)."""
        with self.db.read_session() as session:
            stored = session.get(Policy, _BENCHMARKS)
            return dict(stored.value) if stored is not None else {}

    def store_benchmarks(self, results: dict[str, Any], *, actor: str) -> bool:
        """Keep ``results`` unless some are stored already; whether they were stored."""
        with self.db.session() as session:
            if session.get(Policy, _BENCHMARKS) is not None:
                return False
            session.add(Policy(name=_BENCHMARKS, value=results, updated_by=actor))
            return True

    # ------------------------------------------------------------------ health
    def store_reachable(self) -> bool:
        """Whether the store answers a trivial query."""
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def custody_health(self) -> CustodyHealth:
        """The root KEK's health (a real round trip); offline drops unwrapped keys at once."""
        return self.ctx.custody_health()

    def cache_stats(self) -> list[CacheStats]:
        """Size, hits, misses and evictions of every cache of the service."""
        return [
            *self.ctx.material.cache_stats(),
            self.ctx.snapshot_stats(),
            self.tokens.cache_stats(),
        ]

    def close(self) -> None:
        """Close the store's connections and the custody sessions."""
        self.db.dispose()
        self.keyring.close()
