"""The lifecycle calls of the key service: create, read, rotate, change state, destroy.

Every change runs in one transaction together with its audit event, so an operation whose
event cannot be written does not happen. Changes to one key lock its row (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite serialises writers), so concurrent callers and several
service processes see each change whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from qrc.crypto.base import SigningKey
from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import Kind, get_info
from qrc.keys.audit.events import EventType, Severity
from qrc.keys.context import (
    KEY_ID_PATTERN,
    PENDING_DESTRUCTION,
    RESERVED_LABEL_PREFIX,
    RESERVED_NAME_PREFIX,
    SYSTEM_LABEL,
    KeyInfo,
    ServiceContext,
    expect,
    guarded,
    new_key_id,
    refuse_reserved,
)
from qrc.keys.errors import Conflict, InvalidRequest, KeyStateError
from qrc.keys.lifecycle.rotation import rotate_locked
from qrc.keys.lifecycle.transition import move_to
from qrc.keys.states import KeyState, Purpose, RevocationReason
from qrc.keys.store.models import Key, KeyVersion

__all__ = ["DEFAULT_DESTRUCTION_DELAY", "MIN_DESTRUCTION_DELAY", "KeyLifecycle", "VersionInfo"]

DEFAULT_DESTRUCTION_DELAY = timedelta(days=7)
# The shortest waiting period a caller may ask for: a stolen key-manager token must not be
# able to shred keys at once. Configurable (QRC_MIN_DESTRUCTION_DELAY_DAYS), never zero there.
MIN_DESTRUCTION_DELAY = timedelta(days=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
_MAX_LABELS = 64


def _version_info(key: Key, row: KeyVersion) -> VersionInfo:
    if row.destroyed_at is not None or key.status == KeyState.DESTROYED.value:
        state = "destroyed"
    elif row.version == key.primary_version:
        state = "primary"
    elif row.version < key.min_decryption_version:
        state = "retired"
    else:
        state = "active"
    return VersionInfo(row.version, row.algorithm, state, row.created_at, row.destroyed_at)


def _fits(purpose: Purpose, kind: Kind) -> bool:
    if purpose is Purpose.SIGNING:
        return kind is Kind.SIGNATURE
    return kind in (Kind.KEM, Kind.AEAD)


@dataclass(frozen=True)
class NewKey:
    """What a new key is to be."""

    name: str
    purpose: str
    algorithm: str | None = None
    expires_at: datetime | None = None
    rotation_period: timedelta | None = None
    labels: dict[str, str] | None = None
    activate: bool = True


@dataclass(frozen=True)
class VersionInfo:
    """One version of a key, as it may be shown (no key material).

    ``state``: ``primary`` (encrypts and signs), ``active`` (decrypts and verifies only),
    ``retired`` (below the key's minimum decryption version) or ``destroyed``.
    """

    version: int
    algorithm: str
    state: str
    created_at: datetime
    destroyed_at: datetime | None


class KeyLifecycle:
    """Keys from creation to destruction (``service.keys``)."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        destruction_delay: timedelta = DEFAULT_DESTRUCTION_DELAY,
        min_destruction_delay: timedelta = MIN_DESTRUCTION_DELAY,
    ) -> None:
        self.ctx = ctx
        self.min_destruction_delay = min_destruction_delay
        self.destruction_delay = max(destruction_delay, min_destruction_delay)

    # ------------------------------------------------------------------ create / read
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
        if name.startswith(RESERVED_NAME_PREFIX):
            raise InvalidRequest(f"key names starting with {RESERVED_NAME_PREFIX!r} are reserved")
        if any(isinstance(k, str) and k.startswith(RESERVED_LABEL_PREFIX) for k in labels or {}):
            raise InvalidRequest(f"labels starting with {RESERVED_LABEL_PREFIX!r} are reserved")
        spec = NewKey(name, purpose, algorithm, expires_at, rotation_period, labels, activate)
        return self._create(spec, actor)

    def create_system_key(
        self, *, name: str, purpose: str, algorithm: str, role: str, actor: str
    ) -> KeyInfo:
        """Create one of the service's own keys (reserved: see :func:`refuse_reserved`)."""
        return self._create(NewKey(name, purpose, algorithm, labels={SYSTEM_LABEL: role}), actor)

    def system_signing_key(
        self, *, name: str, algorithm: str, role: str, actor: str, purpose: str
    ) -> SigningKey:
        """The private key of one of the service's own signing keys (created on first use),
        for the service's own signing (the private CA's certificates and CRLs). Each use is
        audited (``<role>.key_use`` with ``purpose``); the key must carry ``role``.

        Raises:
            KeyStateError: the key exists but is not active, or belongs to another role.
        """
        with self.ctx.db.read_session() as session:
            key = session.scalars(select(Key).where(Key.name == name)).first()
        if key is None:
            self.create_system_key(
                name=name, purpose="signing", algorithm=algorithm, role=role, actor=actor
            )
        with self.ctx.db.session() as session:
            key = session.scalars(select(Key).where(Key.name == name)).one()
            if (key.labels or {}).get(SYSTEM_LABEL) != role or key.algorithm != algorithm:
                raise KeyStateError(f"key {name!r} is not the service's {role} key ({algorithm})")
            if key.status != KeyState.ACTIVE or key.destruction_due_at is not None:
                raise KeyStateError(f"the {role} key {name!r} is not active")
            private = expect(
                self.ctx.material.private(session, key, key.primary_version), SigningKey
            )
            self.ctx.record(
                session, f"{role}.key_use", actor, key=key, details={"purpose": purpose[:200]}
            )
            return private

    def _create(self, spec: NewKey, actor: str) -> KeyInfo:
        name, purpose, algorithm, labels = spec.name, spec.purpose, spec.algorithm, spec.labels
        expires_at, rotation_period, activate = spec.expires_at, spec.rotation_period, spec.activate
        try:
            purpose_enum = Purpose(purpose)
        except ValueError:
            choices = ", ".join(p.value for p in Purpose)
            raise InvalidRequest(f"unknown purpose {purpose!r}; choose one of {choices}") from None
        if KEY_ID_PATTERN.fullmatch(name):
            raise InvalidRequest("a key name cannot look like a key ID (k_ and 32 hex digits)")
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
        ctx = self.ctx
        now = ctx.clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("expires_at is in the past")
        if rotation_period is not None and rotation_period < timedelta(minutes=1):
            raise InvalidRequest("rotation_period must be at least one minute")
        with ctx.db.session() as session:
            ctx.policy.refresh(session)
            wanted = algorithm or ctx.policy.default_algorithm(session, purpose_enum)
            # The private CA's ECDSA chain is classical by design (for browsers): its reserved
            # keys are exempt from the policy's "no new deprecated keys" rule.
            exempt = labels.get(SYSTEM_LABEL) == "ca"
            algorithm_id = self._check_algorithm(wanted, purpose_enum, policy=not exempt)
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
            session.add(ctx.material.new_version(session, key_id, 1, algorithm_id))
            session.flush()
            ctx.record(
                session,
                "key.create",
                actor,
                key=key,
                key_version=1,
                details={"purpose": key.purpose, "name": name},
            )
            return ctx.info(key, session)

    def _check_algorithm(self, algorithm: str, purpose: Purpose, *, policy: bool = True) -> str:
        try:
            info = get_info(algorithm)
        except UnsupportedAlgorithm as exc:
            raise InvalidRequest(str(exc)) from None
        if not _fits(purpose, info.kind):
            raise InvalidRequest(f"{info.id} is a {info.kind.value}: unfit for {purpose.value}")
        if policy:
            self.ctx.policy.check_fit_for_new_keys(info.id)
        return info.id

    def get_key(self, ref: str) -> KeyInfo:
        """A key by ID or name."""
        with self.ctx.db.read_session() as session:
            return self.ctx.info(self.ctx.find(session, ref), session)

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
        with self.ctx.db.read_session() as session:
            statement = select(Key).order_by(Key.id).limit(limit + 1)
            if status == PENDING_DESTRUCTION:
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
            page = [self.ctx.info(key, session) for key in rows[:limit]]
            return page, (rows[limit - 1].id if len(rows) > limit else None)

    def count_versions(self, ref: str) -> int:
        """How many versions a key has (all states)."""
        with self.ctx.db.read_session() as session:
            key = self.ctx.find(session, ref)
            return int(session.scalar(select(func.count()).where(KeyVersion.key_id == key.id)) or 0)

    def versions(self, ref: str) -> list[VersionInfo]:
        """Every version of a key, newest first, with its algorithm and what it may still do."""
        with self.ctx.db.read_session() as session:
            key = self.ctx.find(session, ref)
            rows = session.scalars(
                select(KeyVersion)
                .where(KeyVersion.key_id == key.id)
                .order_by(KeyVersion.version.desc())
            )
            return [_version_info(key, row) for row in rows]

    # ------------------------------------------------------------------ versions
    @guarded("key.rotate")
    def rotate(
        self,
        ref: str,
        *,
        actor: str,
        expected_version: int | None = None,
        algorithm: str | None = None,
    ) -> KeyInfo:
        """Add a version and make it primary.

        ``expected_version`` makes rotation conditional: if another caller rotated first,
        :class:`Conflict` is raised instead of adding a second version. ``algorithm`` moves
        the key to another algorithm fit for its purpose and active under the policy (a
        key may always leave a deprecated or disallowed algorithm, never move to one);
        older versions keep theirs, so old ciphertexts and signatures still work.
        """
        with self.ctx.db.session() as session:
            key = self.ctx.find(session, ref, lock=True)
            refuse_reserved(key)
            target = None
            if algorithm is not None:
                target = self._check_algorithm(algorithm, Purpose(key.purpose))
            rotate_locked(self.ctx, session, key, actor, expected_version, algorithm=target)
            return self.ctx.info(key, session)

    @guarded("key.min_decryption_version")
    def set_min_decryption_version(self, ref: str, version: int, *, actor: str) -> KeyInfo:
        """Retire versions below ``version`` for decryption and verification."""
        with self.ctx.db.session() as session:
            key = self.ctx.find(session, ref, lock=True)
            refuse_reserved(key)
            if not 1 <= version <= key.primary_version:
                raise InvalidRequest(
                    f"min_decryption_version must be between 1 and {key.primary_version}"
                )
            key.min_decryption_version = version
            key.updated_at = self.ctx.clock()
            self.ctx.record(
                session,
                "key.min_decryption_version",
                actor,
                key=key,
                details={"min_decryption_version": version},
            )
            return self.ctx.info(key, session)

    # ------------------------------------------------------------------ states
    def _transition(
        self,
        ref: str,
        target: KeyState,
        actor: str,
        event_type: str,
        details: dict[str, Any] | None = None,
    ) -> KeyInfo:
        with self.ctx.db.session() as session:
            key = self.ctx.find(session, ref, lock=True)
            refuse_reserved(key)
            move_to(key, target, self.ctx.clock())
            if target is KeyState.ACTIVE and key.activated_at is None:
                key.activated_at = key.updated_at
            self.ctx.record(session, event_type, actor, key=key, details=details)
            return self.ctx.info(key, session)

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
        # "only a suspended key can be resumed": active is reached from pre_active too.
        with self.ctx.db.session() as session:
            if self.ctx.find(session, ref).status != KeyState.SUSPENDED:
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
        compromised = why is RevocationReason.KEY_COMPROMISE
        target = KeyState.COMPROMISED if compromised else KeyState.DEACTIVATED
        ctx = self.ctx
        with ctx.db.session() as session:
            key = ctx.find(session, ref, lock=True)
            refuse_reserved(key)
            move_to(key, target, ctx.clock())
            key.revocation_reason, key.revoked_at = why.value, ctx.clock()
            key.next_rotation_at = None
            ctx.record(session, "key.revoke", actor, key=key, details={"reason": why.value})
            if compromised:
                ctx.security_event(session, EventType.KEY_COMPROMISE, Severity.HIGH, actor, key=key)
            info = ctx.info(key, session)
        ctx.material.forget(info.id)
        return info

    # ------------------------------------------------------------------ destruction
    @guarded("key.schedule_destruction")
    def schedule_destruction(
        self, ref: str, *, actor: str, delay: timedelta | None = None
    ) -> KeyInfo:
        """Schedule crypto-shredding after a waiting period (default 7 days); cancellable."""
        wait = self.destruction_delay if delay is None else delay
        if wait < self.min_destruction_delay:
            days = self.min_destruction_delay / timedelta(days=1)
            raise InvalidRequest(f"the waiting period is at least {days:g} days")
        ctx = self.ctx
        with ctx.db.session() as session:
            key = ctx.find(session, ref, lock=True)
            refuse_reserved(key)
            if key.status == KeyState.DESTROYED:
                raise KeyStateError("the key is already destroyed")
            if key.destruction_due_at is not None:
                raise Conflict(f"destruction is already scheduled for {key.destruction_due_at}")
            key.destruction_due_at = ctx.clock() + wait
            key.updated_at = ctx.clock()
            ctx.record(
                session,
                "key.schedule_destruction",
                actor,
                key=key,
                details={"due_at": key.destruction_due_at.isoformat()},
            )
            return ctx.info(key, session)

    @guarded("key.cancel_destruction")
    def cancel_destruction(self, ref: str, *, actor: str) -> KeyInfo:
        """Cancel a scheduled destruction; the key is as it was before."""
        ctx = self.ctx
        with ctx.db.session() as session:
            key = ctx.find(session, ref, lock=True)
            refuse_reserved(key)
            if key.status == KeyState.DESTROYED or key.destruction_due_at is None:
                raise KeyStateError("no destruction is scheduled for this key")
            key.destruction_due_at = None
            key.updated_at = ctx.clock()
            ctx.record(session, "key.cancel_destruction", actor, key=key)
            return ctx.info(key, session)
