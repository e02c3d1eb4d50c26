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

This module is the store side; the byte formats and field validation are in
``qrc.keys.audit.format``, the chain verifier in ``qrc.keys.audit.verify``, the JSON lines
export in ``qrc.keys.audit.export`` and paged queries in ``qrc.keys.audit.query``. Their
public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Final, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.errors import CryptoError
from qrc.crypto.registry import Family, Kind, get_info
from qrc.keys.audit.export import verify_export, write_export
from qrc.keys.audit.format import (
    CHECKPOINT_CONTEXT,
    GENESIS_HASH,
    AuditError,
    AuditWriteError,
    InvalidAuditEvent,
    InvalidAuditQuery,
    canonical_event,
    checkpoint_message,
    event_hash,
    event_mac,
    format_time,
    validate_details,
)
from qrc.keys.audit.query import query_audit_events
from qrc.keys.audit.verify import (
    ChainBroken,
    ChainCheckpoint,
    ChainEvent,
    ChainVerifier,
    KeyLookup,
    VerificationReport,
    lookup_from,
    run_verifier,
)
from qrc.keys.store.db import utcnow
from qrc.keys.store.models import AuditCheckpoint, AuditEvent

_INSERT_EVENT = insert(cast(Table, AuditEvent.__table__))
_HEAD = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)

__all__ = [
    "CHECKPOINT_CONTEXT",
    "GENESIS_HASH",
    "PG_ADVISORY_LOCK_ID",
    "AuditError",
    "AuditLog",
    "AuditWriteError",
    "EventFields",
    "InvalidAuditEvent",
    "InvalidAuditQuery",
    "KeyLookup",
    "VerificationReport",
    "canonical_event",
    "checkpoint_message",
    "event_hash",
    "format_time",
    "unauthenticated_events",
    "validate_details",
    "verify_export",
]

#: ``pg_advisory_xact_lock`` key that serialises appends on PostgreSQL: "qrcaudit" as a
#: big-endian int64.
PG_ADVISORY_LOCK_ID: Final = int.from_bytes(b"qrcaudit", "big")


def _checkpoint_algorithm(algorithm: str) -> str:
    """Only post-quantum signatures sign checkpoints (ML-DSA, SLH-DSA, composites)."""
    try:
        info = get_info(algorithm, Kind.SIGNATURE)
    except CryptoError as exc:
        raise AuditError(f"{algorithm!r} cannot sign audit checkpoints") from exc
    if info.id != algorithm or info.family is Family.CLASSICAL:
        raise AuditError(f"{algorithm!r} cannot sign audit checkpoints (not post-quantum)")
    return info.id


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
_LATEST_CHECKPOINT = (
    select(*_CHECKPOINT_COLUMNS)
    .order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc())
    .limit(1)
)


@dataclasses.dataclass(frozen=True)
class EventFields:
    """One event to append: what :meth:`AuditLog.append` takes, for a batch."""

    event_type: str
    actor: str
    result: str
    key_id: str | None = None
    key_version: int | None = None
    algorithm: str | None = None
    details: Mapping[str, object] | None = None


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
        # The service's audit MAC key (None: events carry no MAC); set by the audit trail.
        self.mac_key: Callable[[Session], bytes | None] | None = None

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
        fields = EventFields(event_type, actor, result, key_id, key_version, algorithm, details)
        return self.append_many(session, [fields])[0]

    def append_many(self, session: Session, events: Sequence[EventFields]) -> list[AuditEvent]:
        """Append ``events`` in order, in ``session``'s transaction, with one head read and
        one insert (the group commit of key uses); as :meth:`append` otherwise."""
        cleaned = [validate_details(fields.details) for fields in events]
        # The caller's own pending writes fail with their own errors, not as audit errors.
        session.flush()
        rows: list[dict[str, object]] = []
        try:
            self.lock(session)
            seq, prev = self.head(session)
            mac_key = self.mac_key(session) if self.mac_key is not None else None
            for fields, clean in zip(events, cleaned, strict=True):
                seq += 1
                at = utcnow()  # after the lock, so times follow seq order across processes
                canonical = canonical_event(
                    seq=seq,
                    at=at,
                    event_type=fields.event_type,
                    actor=fields.actor,
                    result=fields.result,
                    key_id=fields.key_id,
                    key_version=fields.key_version,
                    algorithm=fields.algorithm,
                    details=clean,
                )
                digest = event_hash(prev, canonical)
                rows.append(
                    {
                        "seq": seq,
                        "at": at,
                        "event_type": fields.event_type,
                        "actor": fields.actor,
                        "key_id": fields.key_id,
                        "key_version": fields.key_version,
                        "algorithm": fields.algorithm,
                        "result": fields.result,
                        "details": clean,
                        "prev_hash": prev,
                        "hash": digest,
                        "mac": event_mac(mac_key, digest) if mac_key is not None else None,
                    }
                )
                prev = digest
            # A Core insert: the hot path of every key operation skips the ORM unit of work.
            session.execute(_INSERT_EVENT, rows)
        except SQLAlchemyError as exc:
            raise AuditWriteError("the audit event could not be written") from exc
        return [AuditEvent(**row) for row in rows]

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
    def _events(self, session: Session, after: int) -> Iterator[ChainEvent]:
        while True:
            rows = session.execute(
                select(*_EVENT_COLUMNS)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(self.page_size)
            ).all()
            for row in rows:
                yield ChainEvent(
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

    def _checkpoints(self, session: Session) -> Iterator[ChainCheckpoint]:
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
                yield ChainCheckpoint(
                    int(row[0]), bytes(row[1]), row[2], row[3], row[4], int(row[5]), bytes(row[6])
                )
            if len(rows) < self.page_size:
                return
            after = (int(rows[-1][0]), int(rows[-1][7]))

    def _stream(self, session: Session) -> Iterator[ChainEvent | ChainCheckpoint]:
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
        report = run_verifier(ChainVerifier(lookup_from(public_keys)), self._stream(session))
        if not report.valid and self.on_verification_failure is not None:
            self.on_verification_failure(report)
        return report

    def verify_since_checkpoint(
        self, session: Session, public_keys: KeyLookup
    ) -> VerificationReport:
        """Check the latest checkpoint, then recompute the chain only from its seq to the head.

        The latest checkpoint's signature must verify with ``public_keys`` (as in
        :meth:`verify`, but required here) and its signed head must equal the stored hash of
        the event at its seq; the events after it are then recomputed one by one (seq
        continuity, ``prev_hash``, hash). Cost: the events since that checkpoint, not the
        whole chain, so it suits a check before every new checkpoint. In the report
        ``events`` counts only the events after the checkpoint.

        The trade-off: the events up to the checkpoint are not re-read. An edit, deletion or
        insertion before it that leaves the stored hash of the checkpointed event as it was
        (the attacker did not re-hash the rest) passes here; only the full :meth:`verify`
        catches it, which is what ``qrc admin audit verify`` and ``GET /audit/verify`` run.
        If the checkpoint itself does not hold (bad signature, unknown signer, its head not
        the stored hash, its event gone), the full :meth:`verify` runs and its report (which
        names the first bad event) is returned. Without any checkpoint this is :meth:`verify`.
        A failed verification is passed to ``on_verification_failure``.
        """
        lookup = lookup_from(public_keys)
        if lookup is None:
            # Unsigned, the stored checkpoint row would vouch for nothing.
            raise ValueError("incremental verification needs the checkpoint signers' keys")
        row = session.execute(_LATEST_CHECKPOINT).first()
        if row is None:
            return self.verify(session, public_keys)
        checkpoint = ChainCheckpoint(
            int(row[0]), bytes(row[1]), row[2], row[3], row[4], int(row[5]), bytes(row[6])
        )
        verifier = ChainVerifier(lookup)
        verifier.resume(*self._last_at_or_before(session, checkpoint.seq))
        try:
            verifier.checkpoint(checkpoint)
        except ChainBroken:
            # The anchor does not hold: only the whole chain can say where it broke.
            return self.verify(session, public_keys)
        report = run_verifier(verifier, self._events(session, after=checkpoint.seq))
        if not report.valid:
            if self.on_verification_failure is not None:
                self.on_verification_failure(report)
            return report
        reason = (
            f"signed checkpoint at seq {checkpoint.seq} matches the chain; the {report.events} "
            "events after it form an intact chain (events up to it not re-read: the full "
            "verify does that)"
        )
        if verifier.seq > verifier.anchored_seq:
            reason += (
                f"; events {verifier.anchored_seq + 1}..{verifier.seq} are not yet covered by "
                "a signed checkpoint"
            )
        return dataclasses.replace(report, reason=reason)

    @staticmethod
    def _last_at_or_before(session: Session, seq: int) -> tuple[int, bytes]:
        """The ``(seq, hash)`` of the last event at or before ``seq`` (genesis if none)."""
        found = session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq <= seq)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        ).first()
        if found is None:
            return 0, GENESIS_HASH
        return int(found[0]), bytes(found[1])

    def export(
        self,
        session: Session,
        fp: IO[str],
        audit_keys: Mapping[tuple[str, int], VerifyingKey] | None = None,
    ) -> int:
        """Write the chain and its checkpoints as JSON lines (see ``docs/formats.md``), after
        the pinned ``audit_keys`` if given (a v2 export).

        Write a fresh :meth:`checkpoint` first, so that the export is covered to its end.
        Returns the number of lines written.
        """
        return write_export(fp, self._stream(session), audit_keys)

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
        """One page of events matching every given filter: :func:`~.query.query_audit_events`."""
        return query_audit_events(
            session,
            since=since,
            until=until,
            event_type=event_type,
            key_id=key_id,
            actor=actor,
            result=result,
            limit=limit,
            cursor=cursor,
            descending=descending,
        )


def unauthenticated_events(
    session: Session, key: bytes, from_seq: int, page_size: int = 1000
) -> Iterator[int]:
    """Seqs, from ``from_seq`` on, of events without a valid MAC under ``key`` (in order)."""
    after = from_seq - 1
    while True:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.hash, AuditEvent.mac)
            .where(AuditEvent.seq > after)
            .order_by(AuditEvent.seq)
            .limit(page_size)
        ).all()
        for seq, digest, mac in rows:
            expected = event_mac(key, bytes(digest))
            if mac is None or not hmac.compare_digest(bytes(mac), expected):
                yield int(seq)
        if len(rows) < page_size:
            return
        after = int(rows[-1][0])
