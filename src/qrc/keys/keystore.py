"""The shared core of the key service: lookups, key material, caches, audit plumbing.

:class:`KeyStore` is the base that :mod:`qrc.keys.management` (lifecycle) and
:mod:`qrc.keys.operations` (cryptographic use) build on; :class:`qrc.keys.service.KeyService`
combines them. Private key material is unwrapped only in memory, only when used, and is
cached by (key, version) for speed; every use still re-reads the key's state from the store,
so a key destroyed or revoked by another process stops working everywhere at once.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey
from qrc.crypto.keyfile import public_key_to_pem
from qrc.crypto.registry import Kind, get_info
from qrc.crypto.schemes import get_kem, get_scheme, get_signature
from qrc.keys import policy
from qrc.keys.audit import AuditLog
from qrc.keys.custody.base import CustodyHealth, CustodyUnavailable, HealthState
from qrc.keys.db import Database, utcnow
from qrc.keys.errors import Conflict, KeyNotFound, KeyStateError, OperationNotPermitted
from qrc.keys.events import EventType, Severity, record_event
from qrc.keys.kek import register_kek
from qrc.keys.lifecycle import KeyState
from qrc.keys.models import KekRecord, Key, KeyVersion
from qrc.keys.wrapping import Keyring

__all__ = [
    "DEFAULT_DESTRUCTION_DELAY",
    "KeyInfo",
    "KeyStore",
    "PrivateMaterial",
    "expect",
    "guarded",
]

logger = logging.getLogger(__name__)

DEFAULT_DESTRUCTION_DELAY = timedelta(days=7)
PENDING_DESTRUCTION = "pending_destruction"

PrivateMaterial = KemPrivateKey | SigningKey | bytes  # bytes: a symmetric (AEAD) key


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


_T = TypeVar("_T")
# Built once: every key operation runs this lookup, and SQLAlchemy caches the compiled form
# on the statement object.
_FIND_KEY = select(Key).where(or_(Key.id == bindparam("ref"), Key.name == bindparam("ref")))
_FIND_KEY_LOCKED = _FIND_KEY.with_for_update()


def expect(value: object, cls: type[_T]) -> _T:
    """``value`` as ``cls``; a mismatch is a bug (store and algorithm disagree), not input."""
    if not isinstance(value, cls):
        raise TypeError(f"expected {cls.__name__}, found {type(value).__name__}")
    return value


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(event_type: str) -> Callable[[_F], _F]:
    """Audit refused requests and report custody outages of a service method.

    A request the key's state or policy refuses rolls its transaction back, so the refusal
    is audited afterwards in a transaction of its own (result ``denied``). An unreachable
    root KEK becomes an ``hsm_offline`` security event (at most one a minute per process).
    """

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: KeyStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (OperationNotPermitted, KeyStateError, Conflict) as exc:
                ref = args[0] if args and isinstance(args[0], str) else kwargs.get("name")
                self._audit_denied(event_type, str(kwargs.get("actor", "unknown")), ref, exc)
                raise
            except CustodyUnavailable as exc:
                self._report_outage(exc)
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


def new_key_id() -> str:
    """A fresh, random, URL-safe key ID."""
    return "k_" + secrets.token_hex(16)


class KeyStore:
    """Store access shared by the management and operation halves of the service."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = utcnow,
        destruction_delay: timedelta = DEFAULT_DESTRUCTION_DELAY,
        node: str | None = None,
        key_cache_seconds: float = 300.0,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.audit = audit or AuditLog()
        self.clock = clock
        self.destruction_delay = destruction_delay
        self.node = node or "node-" + secrets.token_hex(4)
        # Unwrapped material, kept for ``key_cache_seconds`` so that the KEK (an HSM round
        # trip) is not asked on every use; dropped at once when the KEK is found unreachable.
        self._private_cache: OrderedDict[tuple[str, int], tuple[float, PrivateMaterial]] = (
            OrderedDict()
        )
        self.key_cache_seconds = key_cache_seconds
        self._public_cache: dict[tuple[str, int], KemPublicKey | VerifyingKey] = {}
        self._cache_lock = threading.Lock()
        self._last_outage_report = 0.0
        self._kek_checked_at = 0.0
        # Called with (operation, algorithm) after each audited use of a key: API metrics.
        self.on_operation: Callable[[str, str], None] | None = None

    # ------------------------------------------------------------------ lookups
    def _find(self, session: Session, ref: str, *, lock: bool = False) -> Key:
        policy.refresh(session)  # another process may have changed algorithm statuses
        statement = _FIND_KEY_LOCKED if lock else _FIND_KEY
        key = session.scalars(statement, {"ref": ref}).first()
        if key is None:
            raise KeyNotFound(f"no key with ID or name {ref!r}")
        return key

    def _version(self, session: Session, key: Key, version: int) -> KeyVersion:
        row = session.scalars(
            select(KeyVersion).where(KeyVersion.key_id == key.id, KeyVersion.version == version)
        ).first()
        if row is None:
            raise KeyNotFound(f"key {key.name!r} has no version {version}")
        return row

    def info(self, key: Key, session: Session) -> KeyInfo:
        """The public view of ``key``."""
        pem = None
        if get_info(key.algorithm).kind is not Kind.AEAD:
            public = self._public_key(session, key, key.primary_version)
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

    # ------------------------------------------------------------------ material
    def _follow_active_kek(self, session: Session) -> None:
        """Wrap under the KEK the store says is active (another process may have rotated).

        Checked at most every few seconds; a KEK this process cannot open stops new key
        material from being made under a retiring KEK.
        """
        now = time.monotonic()
        if now - self._kek_checked_at < 5:
            return
        active = session.scalar(select(KekRecord.id).where(KekRecord.status == "active"))
        self._kek_checked_at = now
        if active is None:  # a new store: record the KEK it starts with
            register_kek(session, self.keyring.current)
            return
        if active == self.keyring.current.kek_id:
            return
        custody = self.keyring.get(active)
        if custody is None:
            raise CustodyUnavailable(
                f"the root KEK was rotated to {active}, which this process cannot open; "
                "restart it with access to the new KEK"
            )
        self.keyring.set_current(custody)

    def _new_material(
        self, key_id: str, version: int, algorithm: str, session: Session | None = None
    ) -> KeyVersion:
        """Generate, pairwise-check and wrap fresh material for one version."""
        from qrc.crypto.selftest import generate_private_key  # noqa: PLC0415

        info = get_info(algorithm)
        if session is not None:
            self._follow_active_kek(session)
        if info.kind is Kind.AEAD:
            material = secrets.token_bytes(info.private_key_size)
            public = None
        else:
            private = generate_private_key(algorithm)
            material = private.private_bytes()
            public = private.public_key().public_bytes()
        blob, kek_id = self.keyring.wrap(key_id, version, algorithm, material)
        return KeyVersion(
            key_id=key_id,
            version=version,
            algorithm=algorithm,
            public_key=public,
            wrapped_private=blob,
            kek_id=kek_id,
            created_at=self.clock(),
        )

    def _public_key(self, session: Session, key: Key, version: int) -> KemPublicKey | VerifyingKey:
        cache_key = (key.id, version)
        cached = self._public_cache.get(cache_key)
        if cached is not None:
            return cached
        row = self._version(session, key, version)
        if row.public_key is None:
            raise KeyNotFound(f"key {key.name!r} version {version} has no public key")
        info = get_info(row.algorithm)
        scheme = get_kem(info.id) if info.kind is Kind.KEM else get_signature(info.id)
        public = scheme.load_public(row.public_key)
        self._public_cache[cache_key] = public
        return public

    def _private_material(self, session: Session, key: Key, version: int) -> PrivateMaterial:
        """Unwrapped material of one version (callers have checked the key's state)."""
        cache_key = (key.id, version)
        with self._cache_lock:
            cached = self._private_cache.get(cache_key)
            if cached is not None and time.monotonic() - cached[0] < self.key_cache_seconds:
                self._private_cache.move_to_end(cache_key)
                return cached[1]
        row = self._version(session, key, version)
        if row.wrapped_private is None:
            raise KeyNotFound(f"key {key.name!r} version {version} has been destroyed")
        raw = self.keyring.unwrap(key.id, version, row.algorithm, row.wrapped_private)
        scheme = get_scheme(row.algorithm)
        material: PrivateMaterial = (
            raw if get_info(row.algorithm).kind is Kind.AEAD else scheme.load_private(raw)  # type: ignore[attr-defined]
        )
        with self._cache_lock:
            self._private_cache[cache_key] = (time.monotonic(), material)
            while len(self._private_cache) > 1024:
                self._private_cache.popitem(last=False)
        return material

    def forget_cached(self, key_id: str) -> None:
        """Drop every cached object of a key (destroyed, compromised)."""
        with self._cache_lock:
            for cache_key in [k for k in self._private_cache if k[0] == key_id]:
                del self._private_cache[cache_key]
        for cache_key in [k for k in self._public_cache if k[0] == key_id]:
            del self._public_cache[cache_key]

    # ------------------------------------------------------------------ audit
    def _audit(
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
        if self.on_operation is not None and key is not None and result == "success":
            self.on_operation(event_type.removeprefix("key."), key.algorithm)
        self.audit.append(
            session,
            event_type=event_type,
            actor=actor,
            result=result,
            key_id=key.id if key is not None else None,
            key_version=key_version,
            algorithm=key.algorithm if key is not None else None,
            details=details,
        )

    def _audit_denied(self, event_type: str, actor: str, ref: object, exc: Exception) -> None:
        try:
            with self.db.session() as session:
                key = None
                if isinstance(ref, str):
                    try:
                        key = self._find(session, ref)
                    except KeyNotFound:
                        key = None
                self._audit(
                    session,
                    event_type,
                    actor,
                    result="denied",
                    key=key,
                    details={"reason": str(exc)[:300]},
                )
        except Exception:  # the refusal itself must reach the caller
            logger.exception("could not audit a refused %s", event_type)

    def custody_health(self) -> CustodyHealth:
        """The root KEK's health (a real round trip); offline drops unwrapped keys at once."""
        health = self.keyring.current.health()
        if health.state is HealthState.OFFLINE:
            self._report_outage(CustodyUnavailable(health.detail))
        return health

    def _report_outage(self, exc: CustodyUnavailable) -> None:
        # With the KEK gone, nothing unwrapped under it stays usable here either.
        with self._cache_lock:
            self._private_cache.clear()
        now = time.monotonic()
        if now - self._last_outage_report < 60:
            return
        self._last_outage_report = now
        custody = self.keyring.current
        details = {"custody": custody.kind, "kek_id": custody.kek_id, "error": str(exc)[:300]}
        logger.error("root KEK unreachable (%s): %s", custody.kind, exc)
        try:
            with self.db.session() as session:
                record_event(
                    session, EventType.HSM_OFFLINE, Severity.CRITICAL, self.node, details=details
                )
                self._audit(
                    session, "custody.unavailable", self.node, result="failure", details=details
                )
        except Exception:
            logger.exception("could not record the custody outage")
