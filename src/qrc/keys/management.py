"""Key lifecycle management: create, rotate, suspend, revoke, schedule and run destruction.

Every change runs in one transaction together with its audit event, so an operation whose
event cannot be written does not happen. Changes to one key lock its row (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite serialises writers), so concurrent callers and several
service processes see each change whole.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import Kind, Status, get_info
from qrc.keys.errors import Conflict, InvalidRequest, KeyStateError
from qrc.keys.events import EventType, Severity, record_event
from qrc.keys.keystore import KeyInfo, KeyStore, guarded, new_key_id
from qrc.keys.lifecycle import (
    IllegalTransition,
    KeyState,
    Purpose,
    RevocationReason,
    check_transition,
)
from qrc.keys.models import Key, KeyVersion, Policy

__all__ = ["DEFAULT_ALGORITHMS", "KeyManagement", "fault_point"]

# Hybrid by default (DESIGN.md): X-Wing for encryption, composite ML-DSA for signatures.
DEFAULT_ALGORITHMS: dict[Purpose, str] = {
    Purpose.ENCRYPTION: "X25519MLKEM768",
    Purpose.SIGNING: "MLDSA65-Ed25519-SHA512",
    Purpose.KEY_WRAPPING: "AES-256-GCM",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
_MAX_LABELS = 64


def fault_point(name: str) -> None:
    """Crash-test hook: with ``QRC_TEST_FAULT=<name>`` the process stops dead here.

    The crash tests start a real process with this variable and check that the store is
    consistent afterwards; in normal runs the variable is unset and this does nothing.
    """
    if os.environ.get("QRC_TEST_FAULT") == name:
        os._exit(70)


def _fits(purpose: Purpose, kind: Kind) -> bool:
    if purpose is Purpose.SIGNING:
        return kind is Kind.SIGNATURE
    return kind in (Kind.KEM, Kind.AEAD)


class KeyManagement(KeyStore):
    """Lifecycle operations (mixed into :class:`qrc.keys.service.KeyService`)."""

    # ------------------------------------------------------------------ create / read
    def default_algorithm(self, session: Session, purpose: Purpose) -> str:
        """The policy's default algorithm for ``purpose`` (hybrid unless changed)."""
        policy = session.get(Policy, "default_algorithms")
        if policy is not None and isinstance(policy.value, dict) and purpose in policy.value:
            return str(policy.value[purpose.value])
        return DEFAULT_ALGORITHMS[purpose]

    @guarded("key.create")
    def create_key(
        self,
        *,
        name: str,
        purpose: str,
        actor: str,
        algorithm: str | None = None,
        expires_at: datetime | None = None,
        rotation_period: timedelta | None = None,
        labels: dict[str, str] | None = None,
        activate: bool = True,
    ) -> KeyInfo:
        """Create a key and its first version (checked pairwise, wrapped under the KEK)."""
        try:
            purpose_enum = Purpose(purpose)
        except ValueError:
            choices = ", ".join(p.value for p in Purpose)
            raise InvalidRequest(f"unknown purpose {purpose!r}; choose one of {choices}") from None
        if not _NAME.match(name):
            raise InvalidRequest(
                "a key name is 1-200 characters: letters, digits and . _ : / -, "
                "starting with a letter or digit"
            )
        labels = dict(labels or {})
        if len(labels) > _MAX_LABELS or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 100 and len(v) <= 500
            for k, v in labels.items()
        ):
            raise InvalidRequest("labels are at most 64 string pairs (keys ≤ 100, values ≤ 500)")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("expires_at is in the past")
        if rotation_period is not None and rotation_period < timedelta(minutes=1):
            raise InvalidRequest("rotation_period must be at least one minute")
        with self.db.session() as session:
            algorithm_id = self._check_algorithm(
                algorithm or self.default_algorithm(session, purpose_enum), purpose_enum
            )
            if session.scalar(select(Key.id).where(Key.name == name)) is not None:
                raise Conflict(f"a key named {name!r} already exists")
            key_id = new_key_id()
            key = Key(
                id=key_id,
                name=name,
                algorithm=algorithm_id,
                purpose=purpose_enum.value,
                status=(KeyState.ACTIVE if activate else KeyState.PRE_ACTIVE).value,
                primary_version=1,
                min_decryption_version=1,
                labels=labels,
                created_at=now,
                updated_at=now,
                activated_at=now if activate else None,
                expires_at=expires_at,
                rotation_period_seconds=int(rotation_period.total_seconds())
                if rotation_period
                else None,
                next_rotation_at=now + rotation_period if rotation_period else None,
            )
            session.add(key)
            session.add(self._new_material(key_id, 1, algorithm_id, session))
            session.flush()
            self._audit(
                session,
                "key.create",
                actor,
                key=key,
                key_version=1,
                details={"purpose": key.purpose, "name": name},
            )
            return self.info(key, session)

    def _check_algorithm(self, algorithm: str, purpose: Purpose) -> str:
        try:
            info = get_info(algorithm)
        except UnsupportedAlgorithm as exc:
            raise InvalidRequest(str(exc)) from None
        if not _fits(purpose, info.kind):
            raise InvalidRequest(f"{info.id} is a {info.kind.value}: unfit for {purpose.value}")
        if info.status in (Status.DEPRECATED, Status.DISALLOWED):
            raise InvalidRequest(
                f"{info.id} is {info.status.value}: new keys must use an active algorithm "
                "(see GET /algorithms/status or `qrc algorithms`)"
            )
        return info.id

    def get_key(self, ref: str) -> KeyInfo:
        """A key by ID or name."""
        with self.db.session() as session:
            return self.info(self._find(session, ref), session)

    def list_keys(
        self,
        *,
        status: str | None = None,
        purpose: str | None = None,
        algorithm: str | None = None,
        name_prefix: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[KeyInfo], str | None]:
        """Keys ordered by ID, filtered; returns the page and the cursor of the next one."""
        limit = max(1, min(limit, 1000))
        with self.db.session() as session:
            statement = select(Key).order_by(Key.id).limit(limit + 1)
            if status == "pending_destruction":
                statement = statement.where(
                    Key.destruction_due_at.is_not(None), Key.status != KeyState.DESTROYED.value
                )
            elif status is not None:
                statement = statement.where(Key.status == status)
            if purpose is not None:
                statement = statement.where(Key.purpose == purpose)
            if algorithm is not None:
                statement = statement.where(Key.algorithm == algorithm)
            if name_prefix is not None:
                statement = statement.where(Key.name.startswith(name_prefix, autoescape=True))
            if after is not None:
                statement = statement.where(Key.id > after)
            rows = list(session.scalars(statement))
            page = [self.info(key, session) for key in rows[:limit]]
            return page, (rows[limit - 1].id if len(rows) > limit else None)

    # ------------------------------------------------------------------ versions
    @guarded("key.rotate")
    def rotate(self, ref: str, *, actor: str, expected_version: int | None = None) -> KeyInfo:
        """Add a version and make it primary.

        ``expected_version`` makes rotation conditional: if another caller rotated first,
        :class:`Conflict` is raised instead of adding a second version.
        """
        with self.db.session() as session:
            key = self._find(session, ref, lock=True)
            self._rotate_locked(session, key, actor, expected_version)
            return self.info(key, session)

    def _rotate_locked(
        self,
        session: Session,
        key: Key,
        actor: str,
        expected_version: int | None,
        now: datetime | None = None,
    ) -> None:
        if key.status not in (KeyState.ACTIVE, KeyState.PRE_ACTIVE, KeyState.SUSPENDED):
            raise KeyStateError(f"a key that is {key.status} cannot be rotated")
        if key.destruction_due_at is not None:
            raise KeyStateError("the key is pending destruction: cancel that first")
        if expected_version is not None and key.primary_version != expected_version:
            raise Conflict(
                f"key {key.name!r} is at version {key.primary_version}, not {expected_version}"
            )
        version = key.primary_version + 1
        session.add(self._new_material(key.id, version, key.algorithm, session))
        session.flush()
        fault_point("rotate-after-insert")
        now = now or self.clock()
        key.primary_version = version
        key.updated_at = now
        if key.rotation_period_seconds:
            key.next_rotation_at = now + timedelta(seconds=key.rotation_period_seconds)
        self._audit(session, "key.rotate", actor, key=key, key_version=version)

    @guarded("key.min_decryption_version")
    def set_min_decryption_version(self, ref: str, version: int, *, actor: str) -> KeyInfo:
        """Retire versions below ``version`` for decryption and verification."""
        with self.db.session() as session:
            key = self._find(session, ref, lock=True)
            if not 1 <= version <= key.primary_version:
                raise InvalidRequest(
                    f"min_decryption_version must be between 1 and {key.primary_version}"
                )
            key.min_decryption_version = version
            key.updated_at = self.clock()
            self._audit(
                session,
                "key.min_decryption_version",
                actor,
                key=key,
                details={"min_decryption_version": version},
            )
            return self.info(key, session)

    # ------------------------------------------------------------------ states
    def _transition(
        self,
        ref: str,
        target: KeyState,
        actor: str,
        event_type: str,
        details: dict[str, Any] | None = None,
    ) -> KeyInfo:
        with self.db.session() as session:
            key = self._find(session, ref, lock=True)
            self._move(key, target)
            if target is KeyState.ACTIVE and key.activated_at is None:
                key.activated_at = key.updated_at
            self._audit(session, event_type, actor, key=key, details=details)
            return self.info(key, session)

    def _move(self, key: Key, target: KeyState) -> None:
        try:
            check_transition(KeyState(key.status), target)
        except IllegalTransition as exc:
            raise KeyStateError(str(exc)) from None
        key.status = target.value
        key.updated_at = self.clock()

    @guarded("key.activate")
    def activate(self, ref: str, *, actor: str) -> KeyInfo:
        """``pre_active → active``."""
        return self._transition(ref, KeyState.ACTIVE, actor, "key.activate")

    @guarded("key.suspend")
    def suspend(self, ref: str, *, actor: str) -> KeyInfo:
        """``active → suspended``: no operation until resumed."""
        return self._transition(ref, KeyState.SUSPENDED, actor, "key.suspend")

    @guarded("key.resume")
    def resume(self, ref: str, *, actor: str) -> KeyInfo:
        """``suspended → active``."""
        with self.db.session() as session:
            if self._find(session, ref).status != KeyState.SUSPENDED:
                raise KeyStateError("only a suspended key can be resumed")
        return self._transition(ref, KeyState.ACTIVE, actor, "key.resume")

    @guarded("key.revoke")
    def revoke(self, ref: str, reason: str, *, actor: str) -> KeyInfo:
        """Revoke: ``key_compromise`` → compromised; otherwise → deactivated."""
        try:
            why = RevocationReason(reason)
        except ValueError:
            choices = ", ".join(r.value for r in RevocationReason)
            raise InvalidRequest(f"unknown reason {reason!r}; choose one of {choices}") from None
        target = (
            KeyState.COMPROMISED
            if why is RevocationReason.KEY_COMPROMISE
            else (KeyState.DEACTIVATED)
        )
        with self.db.session() as session:
            key = self._find(session, ref, lock=True)
            self._move(key, target)
            key.revocation_reason, key.revoked_at = why.value, self.clock()
            key.next_rotation_at = None
            self._audit(session, "key.revoke", actor, key=key, details={"reason": why.value})
            if why is RevocationReason.KEY_COMPROMISE:
                record_event(
                    session,
                    EventType.KEY_COMPROMISE,
                    Severity.HIGH,
                    actor,
                    key_id=key.id,
                    algorithm=key.algorithm,
                )
            info = self.info(key, session)
        self.forget_cached(info.id)
        return info

    # ------------------------------------------------------------------ destruction
    @guarded("key.schedule_destruction")
    def schedule_destruction(
        self, ref: str, *, actor: str, delay: timedelta | None = None
    ) -> KeyInfo:
        """Schedule crypto-shredding after a waiting period (default 7 days); cancellable."""
        wait = self.destruction_delay if delay is None else delay
        if wait < timedelta(0):
            raise InvalidRequest("the waiting period cannot be negative")
        with self.db.session() as session:
            key = self._find(session, ref, lock=True)
            if key.status == KeyState.DESTROYED:
                raise KeyStateError("the key is already destroyed")
            if key.destruction_due_at is not None:
                raise Conflict(f"destruction is already scheduled for {key.destruction_due_at}")
            key.destruction_due_at = self.clock() + wait
            key.updated_at = self.clock()
            self._audit(
                session,
                "key.schedule_destruction",
                actor,
                key=key,
                details={"due_at": key.destruction_due_at.isoformat()},
            )
            return self.info(key, session)

    @guarded("key.cancel_destruction")
    def cancel_destruction(self, ref: str, *, actor: str) -> KeyInfo:
        """Cancel a scheduled destruction; the key is as it was before."""
        with self.db.session() as session:
            key = self._find(session, ref, lock=True)
            if key.status == KeyState.DESTROYED or key.destruction_due_at is None:
                raise KeyStateError("no destruction is scheduled for this key")
            key.destruction_due_at = None
            key.updated_at = self.clock()
            self._audit(session, "key.cancel_destruction", actor, key=key)
            return self.info(key, session)

    def _destroy_locked(self, session: Session, key: Key, actor: str) -> None:
        versions = session.scalars(select(KeyVersion).where(KeyVersion.key_id == key.id))
        now = self.clock()
        for index, version in enumerate(versions):
            version.wrapped_private = None
            version.destroyed_at = now
            if index == 0:
                session.flush()
                fault_point("destroy-after-first-version")
        self._move(key, KeyState.DESTROYED)
        key.destroyed_at, key.next_rotation_at = now, None
        self._audit(session, "key.destroy", actor, key=key)

    def purge_freed_storage(self) -> None:
        """Ask the database to drop freed copies of erased material.

        SQLite runs with ``secure_delete`` (freed pages are zeroed) and is checkpointed so
        the write-ahead log lets go of old pages; PostgreSQL gets a ``VACUUM`` of the versions
        table. Copies in database backups and PostgreSQL's WAL archive are beyond reach:
        ``docs/key-management.md`` says how KEK rotation makes those useless too.
        """
        if self.db.is_sqlite:
            # Outside any transaction (ours begin with BEGIN IMMEDIATE), on the raw handle.
            raw = self.db.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
            return
        with self.db.engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.execute(text("VACUUM qrc_key_versions"))

    # ------------------------------------------------------------------ scheduler
    @guarded("scheduler.run")
    def run_due(self, *, actor: str = "scheduler", now: datetime | None = None) -> dict[str, int]:
        """Run due rotations, expiries and destructions; safe on several nodes at once.

        Each due key is handled in its own transaction under its row lock (on PostgreSQL
        ``FOR UPDATE SKIP LOCKED``: another node's key is skipped, not waited for) and the
        due condition is checked again under the lock, so each job runs exactly once.
        """
        moment = now or self.clock()
        counts = {"rotated": 0, "expired": 0, "destroyed": 0}
        for key_id in self._due_ids(Key.destruction_due_at, moment):
            if self._run_one(key_id, moment, actor, "destroy"):
                counts["destroyed"] += 1
        for key_id in self._due_ids(Key.expires_at, moment):
            if self._run_one(key_id, moment, actor, "expire"):
                counts["expired"] += 1
        for key_id in self._due_ids(Key.next_rotation_at, moment):
            if self._run_one(key_id, moment, actor, "rotate"):
                counts["rotated"] += 1
        if counts["destroyed"]:
            self.purge_freed_storage()
        return counts

    def _due_ids(self, column: Any, moment: datetime) -> list[str]:
        with self.db.session() as session:
            statement = select(Key.id).where(
                column.is_not(None), column <= moment, Key.status != KeyState.DESTROYED.value
            )
            return list(session.scalars(statement.order_by(Key.id).limit(1000)))

    def _run_one(self, key_id: str, moment: datetime, actor: str, job: str) -> bool:
        with self.db.session() as session:
            statement = select(Key).where(Key.id == key_id)
            statement = statement.with_for_update(skip_locked=not self.db.is_sqlite)
            key = session.scalars(statement).first()
            if key is None or key.status == KeyState.DESTROYED:
                return False
            if job == "destroy":
                if key.destruction_due_at is None or key.destruction_due_at > moment:
                    return False
                self._destroy_locked(session, key, actor)
                done = True
            elif job == "expire":
                if key.expires_at is None or key.expires_at > moment:
                    return False
                if key.status not in (KeyState.ACTIVE, KeyState.SUSPENDED, KeyState.PRE_ACTIVE):
                    return False
                self._move(key, KeyState.DEACTIVATED)
                key.next_rotation_at = None
                self._audit(session, "key.expire", actor, key=key)
                done = True
            else:
                due = key.next_rotation_at
                if due is None or due > moment or key.status != KeyState.ACTIVE:
                    return False
                if key.destruction_due_at is not None:
                    return False
                self._rotate_locked(session, key, actor, key.primary_version, moment)
                done = True
        if job == "destroy":
            self.forget_cached(key_id)
        return done

    def count_versions(self, ref: str) -> int:
        """How many versions a key has (all states)."""
        with self.db.session() as session:
            key = self._find(session, ref)
            return int(session.scalar(select(func.count()).where(KeyVersion.key_id == key.id)) or 0)
