"""The tamper-evident audit log: a hash chain of events and signed checkpoints of its head.

Every event is appended in the caller's transaction, so an operation and its audit event
commit or fail together (fail closed). Each event's hash covers the previous hash and the
event's canonical encoding; checkpoints sign the chain head with the service's ML-DSA key.
Byte formats: ``docs/formats.md``, "Audit event v1" and "Audit checkpoint v1".

What the chain alone cannot show: an attacker with write access to the database can edit an
event and recompute every later hash, or append well-linked events, or cut the tail. Signed
checkpoints catch the first and the last up to the latest checkpoint; events after it are
covered only once the next checkpoint is written (and an exported checkpoint kept elsewhere
catches a store rolled back as a whole).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, TypeAlias, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.errors import CryptoError, InvalidSignature
from qrc.crypto.keyfile import load_public_pem
from qrc.crypto.registry import Family, Kind, get_info
from qrc.keys.db import utcnow
from qrc.keys.models import AuditCheckpoint, AuditEvent

_INSERT_EVENT = insert(cast(Table, AuditEvent.__table__))
_HEAD = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)

__all__ = [
    "CHECKPOINT_CONTEXT",
    "GENESIS_HASH",
    "PG_ADVISORY_LOCK_ID",
    "AuditError",
    "AuditLog",
    "AuditWriteError",
    "InvalidAuditEvent",
    "InvalidAuditQuery",
    "KeyLookup",
    "VerificationReport",
    "canonical_event",
    "checkpoint_message",
    "event_hash",
    "format_time",
    "validate_details",
    "verify_export",
]

EVENT_TAG: Final = b"qrc-audit-event-v1\x00"
CHECKPOINT_TAG: Final = b"qrc-audit-checkpoint-v1\x00"
#: The signature context (FIPS 204 ``ctx``) of every checkpoint signature.
CHECKPOINT_CONTEXT: Final = b"qrc-audit-checkpoint"
#: The ``prev_hash`` of event 1.
GENESIS_HASH: Final = bytes(32)
#: ``pg_advisory_xact_lock`` key that serialises appends on PostgreSQL: "qrcaudit" as a
#: big-endian int64.
PG_ADVISORY_LOCK_ID: Final = int.from_bytes(b"qrcaudit", "big")

EXPORT_FORMAT: Final = "qrc-audit-export"

_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,59}")
_RESULT = re.compile(r"[a-z][a-z0-9_]{0,19}")
_ALGORITHM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z")
_HEX32 = re.compile(r"[0-9a-f]{64}")
# Detail names that suggest a caller is about to log a secret rather than an ID.
_SECRET_WORDS = ("secret", "password", "passphrase", "plaintext", "private")

MAX_ACTOR = 200
MAX_DETAIL_KEYS = 32
MAX_DETAIL_STRING = 512
MAX_DETAIL_LIST = 32
MAX_DETAILS_BYTES = 4096
MAX_INT = 2**53 - 1  # exactly representable in every JSON reader (RFC 8785, I-JSON)
MAX_KEY_VERSION = 2**31 - 1
MAX_EXPORT_LINE = 256 * 1024
MAX_QUERY_LIMIT = 1000

Scalar: TypeAlias = str | int | bool | None
DetailValue: TypeAlias = Scalar | list[Scalar]
KeyLookup: TypeAlias = (
    Mapping[tuple[str, int], VerifyingKey] | Callable[[str, int], VerifyingKey | None]
)


class AuditError(Exception):
    """Base class of audit log errors."""


class InvalidAuditEvent(AuditError, ValueError):
    """An event field or detail is not allowed (wrong type, too long, bytes, secret-like)."""


class InvalidAuditQuery(AuditError, ValueError):
    """A query argument (cursor, limit, time bound) is not valid."""


class AuditWriteError(AuditError):
    """The audit event could not be written; the caller's transaction must not commit."""


# --------------------------------------------------------------------------- encoding
def format_time(at: datetime) -> str:
    """RFC 3339 UTC with exactly six fractional digits: ``2025-01-31T12:00:00.000000Z``."""
    if at.tzinfo is None:
        raise InvalidAuditEvent("audit times must be timezone-aware")
    t = at.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
    )


def _parse_time(text: str) -> datetime:
    match = _TIME.fullmatch(text)
    if match is None:
        raise InvalidAuditEvent("time is not RFC 3339 UTC with microseconds")
    try:
        year, month, day, hour, minute, second, micro = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as exc:
        raise InvalidAuditEvent("time out of range") from exc


def _check_text(name: str, value: object, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidAuditEvent(f"{name} must be a string")
    if not 0 < len(value) <= max_chars:
        raise InvalidAuditEvent(f"{name} must be 1..{max_chars} characters")
    for ch in value:
        code = ord(ch)
        # C0/C1 controls and lone surrogates have no place in IDs and would make the
        # canonical JSON escape-dependent (or not UTF-8 at all).
        if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF:
            raise InvalidAuditEvent(f"{name} contains a control or surrogate character")
    return value


def _check_pattern(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidAuditEvent(f"{name} must match {pattern.pattern}")
    return value


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidAuditEvent(f"{name} must be an integer in {low}..{high}")
    return value


def _check_scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _check_int(name, value, -MAX_INT, MAX_INT)
    if isinstance(value, str):
        if len(value) > MAX_DETAIL_STRING:
            raise InvalidAuditEvent(f"{name} is longer than {MAX_DETAIL_STRING} characters")
        return _check_text(name, value, MAX_DETAIL_STRING) if value else value
    if isinstance(value, bytes | bytearray | memoryview):
        raise InvalidAuditEvent(f"{name}: audit details never carry bytes; pass IDs, not data")
    raise InvalidAuditEvent(
        f"{name}: {type(value).__name__} is not an allowed audit detail type "
        "(str, int, bool, None, or a list of those)"
    )


def validate_details(details: Mapping[str, object] | None) -> dict[str, DetailValue]:
    """Check ``details`` against the allowlist and return a normalised copy.

    Allowed: up to 32 names matching ``[a-z][a-z0-9_]{0,63}`` (none containing ``secret``,
    ``password``, ``passphrase``, ``plaintext`` or ``private``), each mapped to a string of
    at most 512 characters, an integer of magnitude below 2^53, a boolean, null, or a list of
    at most 32 such scalars; at most 4096 bytes once encoded.

    Raises:
        InvalidAuditEvent: anything else, notably any ``bytes`` value.
    """
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise InvalidAuditEvent("details must be a mapping")
    if len(details) > MAX_DETAIL_KEYS:
        raise InvalidAuditEvent(f"details has more than {MAX_DETAIL_KEYS} entries")
    clean: dict[str, DetailValue] = {}
    for name, value in details.items():
        _check_pattern("detail name", name, _DETAIL_KEY)
        if any(word in name for word in _SECRET_WORDS):
            raise InvalidAuditEvent(f"detail name {name!r} suggests secret material")
        if isinstance(value, list | tuple):
            if len(value) > MAX_DETAIL_LIST:
                raise InvalidAuditEvent(f"details[{name}] has more than {MAX_DETAIL_LIST} items")
            clean[name] = [_check_scalar(f"details[{name}]", item) for item in value]
        else:
            clean[name] = _check_scalar(f"details[{name}]", value)
    if len(_json(clean)) > MAX_DETAILS_BYTES:
        raise InvalidAuditEvent(f"details are larger than {MAX_DETAILS_BYTES} bytes")
    return clean


def _json(value: object) -> bytes:
    # For the value domain the validators allow (ASCII names, ints below 2^53, strings
    # without control characters) this is exactly RFC 8785: sorted keys, no whitespace,
    # UTF-8, only '"' and '\' escaped.
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def canonical_event(
    *,
    seq: int,
    at: datetime,
    event_type: str,
    actor: str,
    result: str,
    key_id: str | None = None,
    key_version: int | None = None,
    algorithm: str | None = None,
    details: Mapping[str, object] | None = None,
) -> bytes:
    """The canonical encoding of one event (``docs/formats.md``, "Audit event v1").

    Raises:
        InvalidAuditEvent: a field is not allowed.
    """
    record = {
        "v": 1,
        "seq": _check_int("seq", seq, 1, 2**63 - 1),
        "at": format_time(at),
        "event_type": _check_pattern("event_type", event_type, _EVENT_TYPE),
        "actor": _check_text("actor", actor, MAX_ACTOR),
        "result": _check_pattern("result", result, _RESULT),
        "key_id": None if key_id is None else _check_pattern("key_id", key_id, _KEY_ID),
        "key_version": (
            None
            if key_version is None
            else _check_int("key_version", key_version, 0, MAX_KEY_VERSION)
        ),
        "algorithm": (
            None if algorithm is None else _check_pattern("algorithm", algorithm, _ALGORITHM)
        ),
        "details": validate_details(details),
    }
    return _json(record)


def event_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """``SHA-256("qrc-audit-event-v1" || 0x00 || prev_hash || canonical)``."""
    if len(prev_hash) != 32:
        raise InvalidAuditEvent("prev_hash must be 32 bytes")
    return hashlib.sha256(EVENT_TAG + prev_hash + canonical).digest()


def _len8(data: bytes) -> bytes:
    if not 0 < len(data) <= 255:
        raise InvalidAuditEvent("checkpoint field length out of range")
    return bytes([len(data)]) + data


def checkpoint_message(
    *,
    seq: int,
    head_hash: bytes,
    at: datetime,
    algorithm: str,
    signer_key_id: str,
    signer_key_version: int,
) -> bytes:
    """The bytes a checkpoint signs (``docs/formats.md``, "Audit checkpoint v1")."""
    if len(head_hash) != 32:
        raise InvalidAuditEvent("head_hash must be 32 bytes")
    return b"".join(
        (
            CHECKPOINT_TAG,
            struct.pack(">Q", _check_int("seq", seq, 0, 2**63 - 1)),
            head_hash,
            _len8(format_time(at).encode("ascii")),
            _len8(_check_pattern("algorithm", algorithm, _ALGORITHM).encode("ascii")),
            _len8(_check_pattern("signer_key_id", signer_key_id, _KEY_ID).encode("ascii")),
            struct.pack(">I", _check_int("signer_key_version", signer_key_version, 0, 2**32 - 1)),
        )
    )


def _checkpoint_algorithm(algorithm: str) -> str:
    """Only post-quantum signatures sign checkpoints (ML-DSA, SLH-DSA, composites)."""
    try:
        info = get_info(algorithm, Kind.SIGNATURE)
    except CryptoError as exc:
        raise AuditError(f"{algorithm!r} cannot sign audit checkpoints") from exc
    if info.id != algorithm or info.family is Family.CLASSICAL:
        raise AuditError(f"{algorithm!r} cannot sign audit checkpoints (not post-quantum)")
    return info.id


# --------------------------------------------------------------------------- verification
@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of :meth:`AuditLog.verify` / :func:`verify_export`.

    ``events`` counts the events that verified (before the first break, if any);
    ``first_bad_event`` is the seq of the first event that is missing, edited or out of
    place (``None`` when the chain is intact, or when only a checkpoint is at fault);
    ``checkpoints_verified`` counts checkpoints whose signature and head hash both held.
    """

    valid: bool
    events: int
    first_bad_event: int | None
    reason: str
    checkpoints_verified: int
    last_checkpoint_seq: int | None = None


@dataclass(slots=True)
class _Event:
    seq: int
    at: datetime
    event_type: str
    actor: str
    key_id: str | None
    key_version: int | None
    algorithm: str | None
    result: str
    details: Any
    prev_hash: bytes
    hash: bytes


@dataclass(slots=True)
class _Checkpoint:
    seq: int
    head_hash: bytes
    at: datetime
    algorithm: str
    signer_key_id: str
    signer_key_version: int
    signature: bytes


class _Broken(Exception):
    def __init__(self, first_bad_event: int | None, reason: str) -> None:
        super().__init__(reason)
        self.first_bad_event = first_bad_event
        self.reason = reason


class _ChainVerifier:
    """Consumes events and checkpoints in chain order (a checkpoint right after its seq)."""

    def __init__(self, lookup: Callable[[str, int], VerifyingKey | None] | None) -> None:
        self.lookup = lookup
        self.seq = 0
        self.head = GENESIS_HASH
        self.events = 0
        self.checkpoints = 0
        self.anchored_seq = 0  # the last seq a signed checkpoint (or head hash) vouched for
        self.last_checkpoint_seq: int | None = None

    def event(self, ev: _Event) -> None:
        expected = self.seq + 1
        if ev.seq != expected:
            if ev.seq > expected:
                raise _Broken(expected, _missing(expected, ev.seq - 1))
            raise _Broken(ev.seq, f"event {ev.seq} is out of order (after event {self.seq})")
        if not hmac.compare_digest(ev.prev_hash, self.head):
            raise _Broken(ev.seq, f"event {ev.seq}: prev_hash does not link to event {self.seq}")
        try:
            canonical = canonical_event(
                seq=ev.seq,
                at=ev.at,
                event_type=ev.event_type,
                actor=ev.actor,
                result=ev.result,
                key_id=ev.key_id,
                key_version=ev.key_version,
                algorithm=ev.algorithm,
                details=ev.details,
            )
        except InvalidAuditEvent as exc:
            raise _Broken(ev.seq, f"event {ev.seq} is malformed: {exc}") from None
        if not hmac.compare_digest(event_hash(self.head, canonical), ev.hash):
            raise _Broken(ev.seq, f"event {ev.seq}: hash does not match its contents (edited)")
        self.seq, self.head = ev.seq, ev.hash
        self.events += 1

    def checkpoint(self, cp: _Checkpoint) -> None:
        where = f"checkpoint at seq {cp.seq}"
        if self.lookup is not None:
            key = self.lookup(cp.signer_key_id, cp.signer_key_version)
            if key is None:
                raise _Broken(
                    None, f"{where}: signer {cp.signer_key_id} v{cp.signer_key_version} unknown"
                )
            try:
                if key.algorithm != cp.algorithm:
                    raise InvalidSignature
                message = checkpoint_message(
                    seq=cp.seq,
                    head_hash=cp.head_hash,
                    at=cp.at,
                    algorithm=cp.algorithm,
                    signer_key_id=cp.signer_key_id,
                    signer_key_version=cp.signer_key_version,
                )
                key.verify(cp.signature, message, CHECKPOINT_CONTEXT)
            except (InvalidSignature, InvalidAuditEvent):
                raise _Broken(None, f"{where}: signature is not valid") from None
        if cp.seq > self.seq:
            # A signed head beyond the chain's end: the events up to it were deleted.
            raise _Broken(self.seq + 1, _missing(self.seq + 1, cp.seq) + f" ({where})")
        if cp.seq < self.seq:
            raise _Broken(None, f"{where} is out of order (after event {self.seq})")
        if not hmac.compare_digest(cp.head_hash, self.head):
            first = self.anchored_seq + 1
            raise _Broken(
                first,
                f"events {first}..{cp.seq} do not match the signed {where} "
                "(edited and re-hashed, or replaced)",
            )
        self.anchored_seq = cp.seq
        self.last_checkpoint_seq = cp.seq
        if self.lookup is not None:
            self.checkpoints += 1

    def report(self, broken: _Broken | None) -> VerificationReport:
        if broken is not None:
            return VerificationReport(
                valid=False,
                events=self.events,
                first_bad_event=broken.first_bad_event,
                reason=broken.reason,
                checkpoints_verified=self.checkpoints,
                last_checkpoint_seq=self.last_checkpoint_seq,
            )
        reason = f"{self.events} events form an intact chain"
        if self.lookup is None:
            reason += "; checkpoint signatures not checked"
        else:
            reason += f"; {self.checkpoints} signed checkpoints verified"
        if self.seq > self.anchored_seq:
            reason += (
                f"; events {self.anchored_seq + 1}..{self.seq} are not yet covered by a "
                "signed checkpoint"
            )
        return VerificationReport(
            valid=True,
            events=self.events,
            first_bad_event=None,
            reason=reason,
            checkpoints_verified=self.checkpoints,
            last_checkpoint_seq=self.last_checkpoint_seq,
        )


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"event {first} is missing (deleted)"
    return f"events {first}..{last} are missing (deleted)"


def _run(verifier: _ChainVerifier, items: Iterable[_Event | _Checkpoint]) -> VerificationReport:
    try:
        for item in items:
            if isinstance(item, _Event):
                verifier.event(item)
            else:
                verifier.checkpoint(item)
    except _Broken as broken:
        return verifier.report(broken)
    return verifier.report(None)


def _lookup_from(keys: KeyLookup | None) -> Callable[[str, int], VerifyingKey | None] | None:
    if keys is None:
        return None
    if isinstance(keys, Mapping):
        mapping = keys

        def from_mapping(key_id: str, version: int) -> VerifyingKey | None:
            return mapping.get((key_id, version))

        return from_mapping
    return keys


# --------------------------------------------------------------------------- the log
_EVENT_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.at,
    AuditEvent.event_type,
    AuditEvent.actor,
    AuditEvent.key_id,
    AuditEvent.key_version,
    AuditEvent.algorithm,
    AuditEvent.result,
    AuditEvent.details,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)
_CHECKPOINT_COLUMNS = (
    AuditCheckpoint.seq,
    AuditCheckpoint.head_hash,
    AuditCheckpoint.at,
    AuditCheckpoint.algorithm,
    AuditCheckpoint.signer_key_id,
    AuditCheckpoint.signer_key_version,
    AuditCheckpoint.signature,
)


class AuditLog:
    """Append, checkpoint, verify, export and query the audit chain.

    Args:
        on_verification_failure: called with the report whenever :meth:`verify` finds the
            chain broken (the service records a security event there); its exceptions
            propagate.
        page_size: rows read per query while verifying or exporting (memory stays constant).
    """

    def __init__(
        self,
        *,
        on_verification_failure: Callable[[VerificationReport], None] | None = None,
        page_size: int = 1000,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.on_verification_failure = on_verification_failure
        self.page_size = page_size

    # ------------------------------------------------------------------ writing
    def append(
        self,
        session: Session,
        *,
        event_type: str,
        actor: str,
        result: str,
        key_id: str | None = None,
        key_version: int | None = None,
        algorithm: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        """Append one event in ``session``'s transaction and flush it.

        The caller's operation and its event commit together; if this raises, the caller's
        transaction must roll back (``Database.session()`` does). On PostgreSQL the append
        holds a transaction-level advisory lock until the transaction ends, so append late
        in a transaction.

        Raises:
            InvalidAuditEvent: a field or detail is not allowed (nothing is written).
            AuditWriteError: the database refused the event.
        """
        clean = validate_details(details)
        # The caller's own pending writes fail with their own errors, not as audit errors.
        session.flush()
        try:
            self.lock(session)
            seq, prev = self.head(session)
            seq += 1
            at = utcnow()  # after the lock, so times follow seq order across processes
            canonical = canonical_event(
                seq=seq,
                at=at,
                event_type=event_type,
                actor=actor,
                result=result,
                key_id=key_id,
                key_version=key_version,
                algorithm=algorithm,
                details=clean,
            )
            row = {
                "seq": seq,
                "at": at,
                "event_type": event_type,
                "actor": actor,
                "key_id": key_id,
                "key_version": key_version,
                "algorithm": algorithm,
                "result": result,
                "details": clean,
                "prev_hash": prev,
                "hash": event_hash(prev, canonical),
            }
            # A Core insert: the hot path of every key operation skips the ORM unit of work.
            session.execute(_INSERT_EVENT, [row])
        except SQLAlchemyError as exc:
            raise AuditWriteError("the audit event could not be written") from exc
        return AuditEvent(**row)

    @staticmethod
    def lock(session: Session) -> None:
        """Hold the audit lock until ``session``'s transaction ends: nothing appends beside."""
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            # Held until the caller's transaction ends: the next appender reads the head
            # only after this event is committed (or rolled back), so the chain never forks.
            session.execute(select(func.pg_advisory_xact_lock(PG_ADVISORY_LOCK_ID)))
        elif dialect != "sqlite":
            # SQLite: Database runs every transaction as BEGIN IMMEDIATE (the writer lock).
            raise AuditError(f"the audit log does not support {dialect!r} databases")

    @staticmethod
    def head(session: Session) -> tuple[int, bytes]:
        """The last event's ``(seq, hash)``, or ``(0, GENESIS_HASH)`` for an empty log."""
        row = session.execute(_HEAD).first()
        if row is None:
            return 0, GENESIS_HASH
        return int(row[0]), bytes(row[1])

    def checkpoint(
        self,
        session: Session,
        signer: SigningKey,
        signer_key_id: str,
        signer_key_version: int,
    ) -> AuditCheckpoint:
        """Sign the current chain head with ``signer`` and store the checkpoint.

        Raises:
            AuditError: ``signer`` is not a post-quantum signature key.
            AuditWriteError: the database refused the checkpoint.
        """
        algorithm = _checkpoint_algorithm(signer.algorithm)
        seq, head_hash = self.head(session)
        at = utcnow()
        message = checkpoint_message(
            seq=seq,
            head_hash=head_hash,
            at=at,
            algorithm=algorithm,
            signer_key_id=signer_key_id,
            signer_key_version=signer_key_version,
        )
        signature = signer.sign(message, CHECKPOINT_CONTEXT)
        # Check our own signature: a faulty signature would only surface at audit time.
        signer.public_key().verify(signature, message, CHECKPOINT_CONTEXT)
        checkpoint = AuditCheckpoint(
            seq=seq,
            head_hash=head_hash,
            at=at,
            algorithm=algorithm,
            signer_key_id=signer_key_id,
            signer_key_version=signer_key_version,
            signature=signature,
        )
        try:
            session.add(checkpoint)
            session.flush()
        except SQLAlchemyError as exc:
            raise AuditWriteError("the audit checkpoint could not be written") from exc
        return checkpoint

    # ------------------------------------------------------------------ reading
    def _events(self, session: Session, after: int) -> Iterator[_Event]:
        while True:
            rows = session.execute(
                select(*_EVENT_COLUMNS)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(self.page_size)
            ).all()
            for row in rows:
                yield _Event(
                    int(row[0]),
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                    row[8],
                    bytes(row[9]),
                    bytes(row[10]),
                )
            if len(rows) < self.page_size:
                return
            after = int(rows[-1][0])

    def _checkpoints(self, session: Session) -> Iterator[_Checkpoint]:
        after: tuple[int, int] = (-1, 0)
        while True:
            rows = session.execute(
                select(*_CHECKPOINT_COLUMNS, AuditCheckpoint.id)
                .where(
                    (AuditCheckpoint.seq > after[0])
                    | ((AuditCheckpoint.seq == after[0]) & (AuditCheckpoint.id > after[1]))
                )
                .order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
                .limit(self.page_size)
            ).all()
            for row in rows:
                yield _Checkpoint(
                    int(row[0]), bytes(row[1]), row[2], row[3], row[4], int(row[5]), bytes(row[6])
                )
            if len(rows) < self.page_size:
                return
            after = (int(rows[-1][0]), int(rows[-1][7]))

    def _stream(self, session: Session) -> Iterator[_Event | _Checkpoint]:
        """Events by seq, each checkpoint right after the event at its seq."""
        checkpoints = self._checkpoints(session)
        pending = next(checkpoints, None)
        last = 0
        while True:
            progressed = False
            for event in self._events(session, after=last):
                progressed = True
                while pending is not None and pending.seq < event.seq:
                    yield pending
                    pending = next(checkpoints, None)
                yield event
                last = event.seq
            if pending is None:
                return
            if not progressed:
                # No more events: what is left lies at or beyond the end of the chain.
                while pending is not None:
                    yield pending
                    pending = next(checkpoints, None)
                return
            # Events may have been appended while we read (a checkpoint beyond our last
            # page is then no sign of deletion): read on before judging the rest.

    def verify(self, session: Session, public_keys: KeyLookup | None = None) -> VerificationReport:
        """Recompute the whole chain and check every checkpoint, in constant memory.

        ``public_keys`` maps ``(signer_key_id, signer_key_version)`` to the verifying key,
        or is a function doing so (returning ``None`` for an unknown key). With ``None``,
        checkpoint head hashes are compared but signatures are not checked (and the report
        says so). A failed verification is passed to ``on_verification_failure``.
        """
        report = _run(_ChainVerifier(_lookup_from(public_keys)), self._stream(session))
        if not report.valid and self.on_verification_failure is not None:
            self.on_verification_failure(report)
        return report

    def export(self, session: Session, fp: IO[str]) -> int:
        """Write the chain and its checkpoints as JSON lines (see ``docs/formats.md``).

        Write a fresh :meth:`checkpoint` first, so that the export is covered to its end.
        Returns the number of lines written.
        """
        fp.write(_export_line({"format": EXPORT_FORMAT, "version": 1}))
        lines = 1
        for item in self._stream(session):
            if isinstance(item, _Event):
                record: dict[str, object] = {
                    "type": "event",
                    "seq": item.seq,
                    "at": format_time(item.at),
                    "event_type": item.event_type,
                    "actor": item.actor,
                    "key_id": item.key_id,
                    "key_version": item.key_version,
                    "algorithm": item.algorithm,
                    "result": item.result,
                    "details": item.details,
                    "prev_hash": item.prev_hash.hex(),
                    "hash": item.hash.hex(),
                }
            else:
                record = {
                    "type": "checkpoint",
                    "seq": item.seq,
                    "head_hash": item.head_hash.hex(),
                    "at": format_time(item.at),
                    "algorithm": item.algorithm,
                    "signer_key_id": item.signer_key_id,
                    "signer_key_version": item.signer_key_version,
                    "signature": base64.b64encode(item.signature).decode("ascii"),
                }
            fp.write(_export_line(record))
            lines += 1
        return lines

    def query(
        self,
        session: Session,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        event_type: str | None = None,
        key_id: str | None = None,
        actor: str | None = None,
        result: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> tuple[list[AuditEvent], str | None]:
        """One page of events matching every given filter, in seq order.

        ``since`` is inclusive, ``until`` exclusive. Pass the returned cursor back to get the
        next page; it is ``None`` after the last page.

        Raises:
            InvalidAuditQuery: a bad cursor, limit or naive datetime.
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidAuditQuery("limit must be an integer")
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise InvalidAuditQuery(f"limit must be 1..{MAX_QUERY_LIMIT}")
        stmt = select(AuditEvent)
        for bound in (since, until):
            if bound is not None and (not isinstance(bound, datetime) or bound.tzinfo is None):
                raise InvalidAuditQuery("since/until must be timezone-aware datetimes")
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= since)
        if until is not None:
            stmt = stmt.where(AuditEvent.at < until)
        if event_type is not None:
            stmt = stmt.where(AuditEvent.event_type == event_type)
        if key_id is not None:
            stmt = stmt.where(AuditEvent.key_id == key_id)
        if actor is not None:
            stmt = stmt.where(AuditEvent.actor == actor)
        if result is not None:
            stmt = stmt.where(AuditEvent.result == result)
        if cursor is not None:
            after = _decode_cursor(cursor)
            stmt = stmt.where(AuditEvent.seq < after if descending else AuditEvent.seq > after)
        order = AuditEvent.seq.desc() if descending else AuditEvent.seq
        events = list(session.scalars(stmt.order_by(order).limit(limit + 1)))
        if len(events) <= limit:
            return events, None
        events = events[:limit]
        return events, _encode_cursor(events[-1].seq)


def _export_line(record: Mapping[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


_CURSOR_PREFIX = "qrc-audit:"


def _encode_cursor(seq: int) -> str:
    raw = f"{_CURSOR_PREFIX}{seq}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        if not isinstance(cursor, str) or len(cursor) > 64:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError
        digits = raw[len(_CURSOR_PREFIX) :]
        if not digits.isdigit() or not digits.isascii() or len(digits) > 19:
            raise ValueError
        return int(digits)
    except (ValueError, binascii.Error):
        raise InvalidAuditQuery("invalid cursor") from None


# --------------------------------------------------------------------------- offline
_EVENT_FIELDS = frozenset(
    (
        "type",
        "seq",
        "at",
        "event_type",
        "actor",
        "key_id",
        "key_version",
        "algorithm",
        "result",
        "details",
        "prev_hash",
        "hash",
    )
)
_CHECKPOINT_FIELDS = frozenset(
    (
        "type",
        "seq",
        "head_hash",
        "at",
        "algorithm",
        "signer_key_id",
        "signer_key_version",
        "signature",
    )
)


class _BadLine(Exception):
    pass


def _int_field(record: Mapping[str, Any], name: str) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadLine(f"{name} is not a non-negative integer")
    return value


def _str_field(record: Mapping[str, Any], name: str) -> str:
    value = record[name]
    if not isinstance(value, str):
        raise _BadLine(f"{name} is not a string")
    return value


def _hash_field(record: Mapping[str, Any], name: str) -> bytes:
    value = _str_field(record, name)
    if _HEX32.fullmatch(value) is None:
        raise _BadLine(f"{name} is not 64 lowercase hex digits")
    return bytes.fromhex(value)


def _time_field(record: Mapping[str, Any], name: str) -> datetime:
    try:
        return _parse_time(_str_field(record, name))
    except InvalidAuditEvent as exc:
        raise _BadLine(f"{name}: {exc}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A JSON reader keeps one of two equal names, another may keep the other: refuse both.
    record = dict(pairs)
    if len(record) != len(pairs):
        raise _BadLine("duplicate name in a JSON object")
    return record


def _parse_line(line: str | bytes, number: int) -> Mapping[str, Any]:
    if len(line) > MAX_EXPORT_LINE:
        raise _BadLine(f"line {number} is longer than {MAX_EXPORT_LINE} bytes")
    try:
        record = json.loads(line, object_pairs_hook=_no_duplicates)
    except _BadLine as exc:
        raise _BadLine(f"line {number}: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise _BadLine(f"line {number} is not JSON") from None
    if not isinstance(record, dict):
        raise _BadLine(f"line {number} is not a JSON object")
    return record


def _parse_export(lines: Iterable[str | bytes]) -> Iterator[_Event | _Checkpoint]:
    number = 0
    header_seen = False
    for line in lines:
        number += 1
        if not line.strip():
            continue
        record = _parse_line(line, number)
        if not header_seen:
            if (
                record != {"format": EXPORT_FORMAT, "version": 1}
                or type(record["version"]) is not int
            ):
                raise _BadLine("line 1 is not a qrc-audit-export v1 header")
            header_seen = True
            continue
        kind = record.get("type")
        fields = _EVENT_FIELDS if kind == "event" else _CHECKPOINT_FIELDS
        if kind not in ("event", "checkpoint") or set(record) != fields:
            raise _BadLine(f"line {number} is not an event or checkpoint record")
        try:
            if kind == "event":
                key_version = record["key_version"]
                if key_version is not None:
                    key_version = _int_field(record, "key_version")
                for optional in ("key_id", "algorithm"):
                    if record[optional] is not None:
                        _str_field(record, optional)
                yield _Event(
                    seq=_int_field(record, "seq"),
                    at=_time_field(record, "at"),
                    event_type=_str_field(record, "event_type"),
                    actor=_str_field(record, "actor"),
                    key_id=record["key_id"],
                    key_version=key_version,
                    algorithm=record["algorithm"],
                    result=_str_field(record, "result"),
                    details=record["details"],
                    prev_hash=_hash_field(record, "prev_hash"),
                    hash=_hash_field(record, "hash"),
                )
            else:
                try:
                    signature = base64.b64decode(_str_field(record, "signature"), validate=True)
                except binascii.Error:
                    raise _BadLine("signature is not base64") from None
                yield _Checkpoint(
                    seq=_int_field(record, "seq"),
                    head_hash=_hash_field(record, "head_hash"),
                    at=_time_field(record, "at"),
                    algorithm=_str_field(record, "algorithm"),
                    signer_key_id=_str_field(record, "signer_key_id"),
                    signer_key_version=_int_field(record, "signer_key_version"),
                    signature=signature,
                )
        except _BadLine as exc:
            raise _BadLine(f"line {number}: {exc}") from None
    if not header_seen:
        raise _BadLine("the export is empty")


def verify_export(
    lines: Iterable[str | bytes],
    public_key: VerifyingKey | bytes | str | KeyLookup,
) -> VerificationReport:
    """Verify an :meth:`AuditLog.export` offline, one line at a time.

    ``public_key`` is the service's audit verifying key (a key object or its SPKI PEM, as
    ``qrc.crypto.keyfile.public_key_to_pem`` writes it), which must have signed every
    checkpoint; or a lookup by ``(signer_key_id, signer_key_version)`` as for
    :meth:`AuditLog.verify`. A malformed export is reported as invalid, never raised.
    """
    lookup: Callable[[str, int], VerifyingKey | None] | None
    if isinstance(public_key, bytes | str):
        loaded = load_public_pem(public_key, kind=Kind.SIGNATURE)
        if not isinstance(loaded, VerifyingKey):
            raise AuditError("the public key is not a signature key")
        public_key = loaded
    if isinstance(public_key, VerifyingKey):
        single = public_key

        def lookup(_key_id: str, _version: int) -> VerifyingKey | None:
            return single

    else:
        lookup = _lookup_from(public_key)
    verifier = _ChainVerifier(lookup)
    try:
        return _run(verifier, _parse_export(lines))
    except _BadLine as exc:
        return verifier.report(_Broken(None, f"malformed export: {exc}"))
