"""What every part of the key service shares: the store, material, audit log, policy, observers.

A :class:`ServiceContext` is handed to each part (lifecycle, operations, audit trail,
tokens...) by :class:`qrc.keys.service.KeyService`; the parts never inherit from each other.
It finds keys, shows them (:class:`KeyInfo`), and records what happens: every change is
audited in the caller's transaction, and observers hear of it once that transaction has
committed.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from qrc.crypto.errors import AlgorithmNotAllowed
from qrc.crypto.keyfile import public_key_to_pem
from qrc.crypto.registry import Kind, get_info
from qrc.keys.audit.events import EventType, Severity, notice_of, record_event
from qrc.keys.audit.log import AuditLog
from qrc.keys.cache import BoundedCache, CacheStats
from qrc.keys.custody.base import CustodyHealth, CustodyUnavailable, HealthState
from qrc.keys.errors import Conflict, KeyNotFound, KeyStateError, OperationNotPermitted
from qrc.keys.material import KeyMaterial
from qrc.keys.observers import KeyUse, Observers, SecurityNotice, with_request_source
from qrc.keys.policy import AlgorithmPolicy
from qrc.keys.states import KeyState
from qrc.keys.store.db import Database, after_commit
from qrc.keys.store.models import Key

__all__ = [
    "KEY_ID_PATTERN",
    "PENDING_DESTRUCTION",
    "RESERVED_CONTEXT_PREFIX",
    "RESERVED_LABEL_PREFIX",
    "RESERVED_NAME_PREFIX",
    "SYSTEM_LABEL",
    "KeyInfo",
    "ServiceContext",
    "expect",
    "guarded",
    "is_reserved",
    "new_key_id",
    "refuse_reserved",
]

logger = logging.getLogger(__name__)

PENDING_DESTRUCTION = "pending_destruction"
# The service's own keys (the audit signing key; the CA keys later) carry this label, which
# only the service sets: no name starting with RESERVED_NAME_PREFIX and no label starting
# with RESERVED_LABEL_PREFIX is accepted from a caller, and no caller's signature may use a
# context starting with RESERVED_CONTEXT_PREFIX (the service's own signing domains).
SYSTEM_LABEL = "qrc.system"
RESERVED_NAME_PREFIX = "qrc-"
RESERVED_LABEL_PREFIX = "qrc."
RESERVED_CONTEXT_PREFIX = b"qrc-"
_OUTAGE_REPORT_SECONDS = 60.0
# Uses of a key (qrc.keys.operations) read it through a snapshot at most this old. That is
# safe because each use checks the key again, as committed, when its audit event commits
# (qrc.keys.usage): a stale snapshot can never let a revoked, suspended or retired key be
# used; it can only pick a primary version that another node rotated less than this ago.
# Changes made in this process drop the snapshot when they commit.
KEY_SNAPSHOT_SECONDS = 1.0
_MAX_SNAPSHOTS = 4096

# Built once: every key operation runs this lookup, and SQLAlchemy caches the compiled form
# on the statement object.
# Key IDs and names live in disjoint spaces (no name may look like an ID), so a reference is
# looked up as one or the other, never both: a key named like another's ID cannot stand in.
KEY_ID_PATTERN = re.compile(r"k_[0-9a-f]{32}")
_FIND_BY_ID = select(Key).where(Key.id == bindparam("ref"))
_FIND_BY_NAME = select(Key).where(Key.name == bindparam("ref"))
_FIND_BY_ID_LOCKED = _FIND_BY_ID.with_for_update()
_FIND_BY_NAME_LOCKED = _FIND_BY_NAME.with_for_update()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_T = TypeVar("_T")


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: metadata and public key, never private material."""

    id: str
    name: str
    algorithm: str
    purpose: str
    status: str
    state: str
    version: int
    min_decryption_version: int
    labels: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    rotation_period_seconds: int | None
    next_rotation_at: datetime | None
    revocation_reason: str | None
    revoked_at: datetime | None
    destruction_due_at: datetime | None
    destroyed_at: datetime | None
    public_key_pem: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (timestamps as ISO 8601)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


def expect(value: object, cls: type[_T]) -> _T:
    """``value`` as ``cls``; a mismatch is a bug (store and algorithm disagree), not input."""
    if not isinstance(value, cls):
        raise TypeError(f"expected {cls.__name__}, found {type(value).__name__}")
    return value


def is_reserved(key: Key) -> bool:
    """Whether ``key`` is one of the service's own keys (audit signing, CA)."""
    return bool(key.labels) and SYSTEM_LABEL in key.labels


def refuse_reserved(key: Key) -> None:
    """Raise :class:`OperationNotPermitted` for the service's own keys.

    They are used, rotated and retired only by their own audited procedures, never through
    the generic key and crypto calls: a caller who could sign with the audit key could
    forge checkpoints; one who could suspend it would stop them.
    """
    if is_reserved(key):
        raise OperationNotPermitted(
            f"key {key.name!r} is reserved for the service ({key.labels[SYSTEM_LABEL]}): "
            "it is managed only by its own procedure (e.g. `qrc admin audit rotate-key`)"
        )


def new_key_id() -> str:
    """A fresh, random, URL-safe key ID."""
    return "k_" + secrets.token_hex(16)


class ServiceContext:
    """The collaborators every part of the service uses, and the few things they share."""

    def __init__(
        self,
        db: Database,
        material: KeyMaterial,
        *,
        audit_log: AuditLog,
        policy: AlgorithmPolicy,
        observers: Observers,
        clock: Callable[[], datetime],
        node: str,
    ) -> None:
        self.db = db
        self.material = material
        self.audit_log = audit_log
        self.policy = policy
        self.observers = observers
        self.clock = clock
        self.node = node
        self._last_outage_report = -float("inf")
        self._snapshots: BoundedCache[str, Key] = BoundedCache(
            "key_snapshots", _MAX_SNAPSHOTS, ttl=KEY_SNAPSHOT_SECONDS
        )

    # ------------------------------------------------------------------ lookups
    def find(self, session: Session, ref: str, *, lock: bool = False) -> Key:
        """A key by ID or name (``lock``: its row locked until the transaction ends)."""
        if len(ref) > 200 or _CONTROL.search(ref):
            raise KeyNotFound("no key with that ID or name")
        self.policy.refresh(session)  # another process may have changed algorithm statuses
        if KEY_ID_PATTERN.fullmatch(ref):
            statement = _FIND_BY_ID_LOCKED if lock else _FIND_BY_ID
        else:
            statement = _FIND_BY_NAME_LOCKED if lock else _FIND_BY_NAME
        key = session.scalars(statement, {"ref": ref}).first()
        if key is None:
            raise KeyNotFound(f"no key with ID or name {ref!r}")
        return key

    def find_for_use(self, session: Session, ref: str) -> Key:
        """A key for a crypto operation: a snapshot up to :data:`KEY_SNAPSHOT_SECONDS` old.

        The object is shared between threads: read it, never change it.
        """
        key = self._snapshots.get(ref)
        if key is not None:
            self.policy.refresh(session)  # read at most every few seconds
            return key
        key = self.find(session, ref)
        session.expunge(key)  # detached: it outlives this session, unchanged
        self._snapshots.put(ref, key)
        return key

    def forget_snapshot(self, key: Key) -> None:
        """Drop the snapshots of ``key`` (it changed)."""
        self._snapshots.discard(lambda ref: ref in (key.id, key.name))

    def snapshot_stats(self) -> CacheStats:
        """How the key snapshots do."""
        return self._snapshots.stats()

    def info(self, key: Key, session: Session) -> KeyInfo:
        """The public view of ``key``."""
        pem = None
        if get_info(key.algorithm).kind is not Kind.AEAD:
            public = self.material.public_key(session, key, key.primary_version)
            pem = public_key_to_pem(public).decode("ascii")
        status = key.status
        if key.destruction_due_at is not None and key.status != KeyState.DESTROYED:
            status = PENDING_DESTRUCTION
        return KeyInfo(
            id=key.id,
            name=key.name,
            algorithm=key.algorithm,
            purpose=key.purpose,
            status=status,
            state=key.status,
            version=key.primary_version,
            min_decryption_version=key.min_decryption_version,
            labels=dict(key.labels or {}),
            created_at=key.created_at,
            expires_at=key.expires_at,
            rotation_period_seconds=key.rotation_period_seconds,
            next_rotation_at=key.next_rotation_at,
            revocation_reason=key.revocation_reason,
            revoked_at=key.revoked_at,
            destruction_due_at=key.destruction_due_at,
            destroyed_at=key.destroyed_at,
            public_key_pem=pem,
        )

    # ------------------------------------------------------------------ recording
    def record(
        self,
        session: Session,
        event_type: str,
        actor: str,
        *,
        result: str = "success",
        key: Key | None = None,
        key_version: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit event in ``session``'s transaction; observers hear after commit."""
        details = with_request_source(event_type, details)
        self.audit_log.append(
            session,
            event_type=event_type,
            actor=actor,
            result=result,
            key_id=key.id if key is not None else None,
            key_version=key_version,
            algorithm=key.algorithm if key is not None else None,
            details=details,
        )
        if key is not None:
            # Any change to a key is recorded here: later uses in this process see it.
            after_commit(session, functools.partial(self.forget_snapshot, key))
            use = KeyUse(
                operation=event_type.removeprefix("key."),
                result=result,
                actor=actor,
                key_id=key.id,
                algorithm=key.algorithm,
                key_version=key_version,
                source=(details or {}).get("source"),
            )
            after_commit(session, lambda: self.observers.key_used(use))

    def security_event(
        self,
        session: Session,
        event_type: EventType,
        severity: Severity,
        source: str,
        *,
        key: Key | None = None,
        details: dict[str, Any] | None = None,
        algorithm: str | None = None,
        description: str | None = None,
        is_quantum_threat_related: bool | None = None,
        action_taken: str | None = None,
    ) -> SecurityNotice:
        """Record a security event in ``session``'s transaction; observers hear after commit.

        ``source`` is the story's ``source_component``; ``algorithm`` (the story's
        ``qrc_algorithm_involved``) defaults to ``key``'s. ``description``,
        ``is_quantum_threat_related`` and ``action_taken`` left as None take the event
        type's defaults (``qrc.keys.audit.events.EVENT_DEFAULTS``). Returns the notice the
        observers will hear.
        """
        if algorithm is None and key is not None:
            algorithm = key.algorithm
        event = record_event(
            session,
            event_type,
            severity,
            source,
            key_id=key.id if key is not None else None,
            algorithm=algorithm,
            details=details,
            description=description,
            is_quantum_threat_related=is_quantum_threat_related,
            action_taken=action_taken,
        )
        notice = notice_of(event)
        after_commit(session, lambda: self.observers.security_event(notice))
        return notice

    def record_denied(self, event_type: str, actor: str, ref: object, exc: Exception) -> None:
        """Audit a refused request in a transaction of its own (the request's rolled back)."""
        try:
            with self.db.session() as session:
                key = None
                if isinstance(ref, str):
                    try:
                        key = self.find(session, ref)
                    except KeyNotFound:
                        key = None
                self.record(
                    session,
                    event_type,
                    actor,
                    result="denied",
                    key=key,
                    details={"reason": str(exc)[:300]},
                )
        except Exception:  # the refusal itself must reach the caller
            logger.exception("could not audit a refused %s", event_type)

    # ------------------------------------------------------------------ custody
    def custody_health(self) -> CustodyHealth:
        """The root KEK's health (a real round trip); offline drops unwrapped keys at once."""
        health = self.material.keyring.current.health()
        if health.state is HealthState.OFFLINE:
            self.report_outage(CustodyUnavailable(health.detail))
        return health

    def report_outage(self, exc: CustodyUnavailable) -> None:
        """The root KEK is unreachable: forget unwrapped keys, record it (once a minute)."""
        self.material.forget_all_private()
        now = time.monotonic()
        if now - self._last_outage_report < _OUTAGE_REPORT_SECONDS:
            return
        self._last_outage_report = now
        custody = self.material.keyring.current
        details = {"custody": custody.kind, "kek_id": custody.kek_id, "error": str(exc)[:300]}
        logger.error("root KEK unreachable (%s): %s", custody.kind, exc)
        try:
            with self.db.session() as session:
                self.security_event(
                    session, EventType.HSM_OFFLINE, Severity.CRITICAL, self.node, details=details
                )
                self.record(
                    session, "custody.unavailable", self.node, result="failure", details=details
                )
        except Exception:
            logger.exception("could not record the custody outage")


class _HasContext(Protocol):
    ctx: ServiceContext


_S = TypeVar("_S", bound=_HasContext)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def guarded(
    event_type: str,
) -> Callable[[Callable[Concatenate[_S, _P], _R]], Callable[Concatenate[_S, _P], _R]]:
    """Audit refused requests and report custody outages of a service method.

    A request the key's state or policy refuses rolls its transaction back, so the refusal
    is audited afterwards in a transaction of its own (result ``denied``). An unreachable
    root KEK becomes an ``hsm_offline`` security event (at most one a minute per process).
    """

    def decorate(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
        @functools.wraps(method)
        def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(self, *args, **kwargs)
            except (OperationNotPermitted, KeyStateError, Conflict, AlgorithmNotAllowed) as exc:
                ref = args[0] if args and isinstance(args[0], str) else kwargs.get("name")
                self.ctx.record_denied(event_type, str(kwargs.get("actor", "unknown")), ref, exc)
                raise
            except CustodyUnavailable as exc:
                self.ctx.report_outage(exc)
                raise

        return wrapper  # type: ignore[return-value]

    return decorate
