"""The audit trail as the service offers it: checkpoints, verification, export, queries.

Checkpoints are signed with the service's own ML-DSA-65 key, :data:`AUDIT_KEY_NAME`: a
reserved key (no generic key or crypto call can use, suspend, revoke or destroy it), created
on first use and wrapped under the root KEK like any other. Verification trusts only the
public keys pinned in the :class:`~qrc.keys.audit.anchor.AuditAnchor` (outside the
database), and compares the chain with the latest checkpoint its
:class:`~qrc.keys.audit.witness.Witness` holds (outside the database too), so a rewritten,
truncated or checkpoint-stripped store is found. Rotating the audit key is its own audited
procedure: the rotation event is signed into the chain by the old key, and the new public key
is pinned. Security events (authentication failures, refused handshakes...) are recorded
here too, each with its audit event in one transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.keyfile import public_key_to_pem
from qrc.keys.audit.anchor import (
    AuditAnchor,
    AuditMacKey,
    MemoryAnchor,
    PinnedKey,
    anchor_fingerprint,
)
from qrc.keys.audit.events import EventType, Severity, query_events
from qrc.keys.audit.log import (
    AuditError,
    AuditLog,
    VerificationReport,
    unauthenticated_events,
)
from qrc.keys.audit.note import InvalidNote, origin_for, sign_note, verify_note
from qrc.keys.audit.witness import Witness, WitnessRefused
from qrc.keys.context import ServiceContext, expect
from qrc.keys.errors import KeyNotFound
from qrc.keys.lifecycle.keys import KeyLifecycle
from qrc.keys.lifecycle.rotation import rotate_locked
from qrc.keys.states import KeyState
from qrc.keys.store.db import after_commit
from qrc.keys.store.models import AuditCheckpoint, AuditEvent, Key, KeyVersion, SecurityEvent

__all__ = ["AUDIT_KEY_ALGORITHM", "AUDIT_KEY_NAME", "AUDIT_KEY_ROTATE_EVENT", "AuditTrail"]

logger = logging.getLogger(__name__)

AUDIT_KEY_NAME = "qrc-audit-signing"
AUDIT_KEY_ALGORITHM = "ML-DSA-65"
AUDIT_KEY_ROTATE_EVENT = "audit.key_rotate"
_DETAIL_CHARS = 100


class AuditTrail:
    """Checkpoints, verification, export and queries of the audit chain (``service.audit``)."""

    def __init__(
        self,
        ctx: ServiceContext,
        keys: KeyLifecycle,
        *,
        anchor: AuditAnchor | None = None,
        witness: Witness | None = None,
        mac: AuditMacKey | None = None,
    ) -> None:
        self.ctx = ctx
        self.keys = keys
        self.anchor: AuditAnchor = anchor if anchor is not None else MemoryAnchor()
        self.witness = witness
        self.mac = mac
        if mac is not None:
            key = mac.key
            ctx.audit_log.mac_key = lambda _session: key

    @property
    def log(self) -> AuditLog:
        """The chain itself (append, head, verify within a session)."""
        return self.ctx.audit_log

    # ------------------------------------------------------------------ checkpoints
    def _audit_key(self, actor: str) -> Key:
        with self.ctx.db.read_session() as session:
            key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
            if key is not None:
                return key
        self.keys.create_system_key(
            name=AUDIT_KEY_NAME,
            purpose="signing",
            algorithm=AUDIT_KEY_ALGORITHM,
            role="audit",
            actor=actor,
        )
        with self.ctx.db.read_session() as session:
            return session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).one()

    def checkpoint(self, *, actor: str = "system") -> AuditCheckpoint:
        """Sign the current chain head with the service's audit key (created if missing)."""
        key = self._audit_key(actor)
        if key.status != KeyState.ACTIVE or key.destruction_due_at is not None:
            raise KeyNotFound("the audit signing key is not active")
        with self.ctx.db.session() as session:
            checkpoint = self.checkpoint_in(session)
            if checkpoint is not None:
                return checkpoint
            # The head is checkpointed already: that checkpoint is the answer.
            latest = session.scalars(
                select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
            ).first()
            if latest is None:
                raise KeyNotFound("the audit signing key is not active")
            return latest

    def checkpoint_if_moved(self, *, actor: str = "system") -> AuditCheckpoint | None:
        """A checkpoint only if events were appended since the last one (else ``None``).

        An idle store gains nothing from more checkpoints of the same head.
        """
        if not self.moved():
            return None
        self._audit_key(actor)
        with self.ctx.db.session() as session:
            return self.checkpoint_in(session)

    def moved(self) -> int:
        """How many events were appended since the latest checkpoint (0: none)."""
        with self.ctx.db.read_session() as session:
            head, _ = self.log.head(session)
            last = session.scalar(select(func.max(AuditCheckpoint.seq)))
        return max(0, head - (last or 0))

    def checkpoint_in(self, session: Session) -> AuditCheckpoint | None:
        """Sign the chain head in the caller's transaction (``None`` without an active key,
        or when the head is checkpointed already).

        Before signing, the latest checkpoint and the events since are verified with the
        pinned keys (:meth:`AuditLog.verify_since_checkpoint`), and the chain is compared
        with the witness, so the cost grows with the events since the last checkpoint, not
        with the chain. An edit before the latest checkpoint that leaves the checkpointed
        event's hash alone is not seen here: the full verify (``qrc admin audit verify``,
        ``GET /audit/verify``) catches it. Once committed, the checkpoint is published to the
        witness as a signed note.

        Raises:
            AuditError: the chain, the latest checkpoint or the witness comparison does not
                hold, or the store's audit key is not the pinned one.
        """
        key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
        if key is None or key.status != KeyState.ACTIVE or key.destruction_due_at is not None:
            return None
        # Never vouch for a tampered chain: check the latest checkpoint and what follows it.
        # Hold the audit lock: no event may slip in between the check and the signature, and
        # another node checkpointing the same head waits, then finds nothing to do.
        self.log.lock(session)
        head, _ = self.log.head(session)
        last = session.scalar(select(func.max(AuditCheckpoint.seq)))
        if last is not None and last >= head:
            return None
        trusted = self._trusted(session)
        if (key.id, key.primary_version) not in trusted:
            raise AuditError(
                f"the store's audit key {key.id} v{key.primary_version} is not pinned in the "
                "audit anchor: refusing to sign with a key the verifiers do not trust"
            )
        report = self.log.verify_since_checkpoint(session, trusted)
        if report.valid:
            report = self._compare_with_witness(session, report, trusted)
        if report.valid:
            report = self._check_macs(session, report, after=last or 0)
        if not report.valid:
            raise AuditError(f"refusing to checkpoint a broken audit chain: {report.reason}")
        private = self.ctx.material.private(session, key, key.primary_version)
        signer = expect(private, SigningKey)
        return self._sign(session, key, key.primary_version, signer)

    def _sign(
        self, session: Session, key: Key, version: int, signer: SigningKey
    ) -> AuditCheckpoint:
        checkpoint = self.log.checkpoint(session, signer, key.id, version)
        note = sign_note(origin_for(key.id), checkpoint.seq, checkpoint.head_hash, signer)
        if self.witness is not None:
            after_commit(session, lambda: self._publish(note))
        return checkpoint

    def _publish(self, note: bytes) -> None:
        if self.witness is None:
            return
        try:
            self.witness.publish(note)
        except WitnessRefused as exc:
            # Another node's later checkpoint got there first (harmless), or the store is
            # behind what was witnessed (a rollback): verification says which.
            logger.warning("the audit witness refused a checkpoint: %s", exc)
        except Exception:
            logger.exception("could not publish an audit checkpoint to the witness")

    def key_lookup(self, session: Session) -> Callable[[str, int], VerifyingKey | None]:
        """The pinned checkpoint signers' public keys (pinning on first use, see the module)."""
        trusted = self._trusted(session)
        return lambda key_id, version: trusted.get((key_id, version))

    def _trusted(self, session: Session) -> Mapping[PinnedKey, VerifyingKey]:
        """The pinned audit keys; on first use (nothing pinned) the store's audit key's."""
        pinned = self.anchor.keys()
        if pinned:
            return pinned
        for (key_id, version), public in self._store_keys(session).items():
            self.anchor.pin(key_id, version, public)
        return self.anchor.keys()

    def trusted_or_store(self, session: Session) -> Mapping[PinnedKey, VerifyingKey]:
        """The pinned keys, or, with nothing pinned yet, the store's (pinning nothing).

        For a backup's restore into a new data directory, whose transaction may still roll
        back: the keys are pinned at the first checkpoint or verification after it.
        """
        return self.anchor.keys() or self._store_keys(session)

    def _store_keys(self, session: Session) -> dict[PinnedKey, VerifyingKey]:
        key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
        if key is None:
            return {}
        found: dict[PinnedKey, VerifyingKey] = {}
        versions = select(KeyVersion.version).where(KeyVersion.key_id == key.id)
        for version in session.scalars(versions.order_by(KeyVersion.version)):
            public = self.ctx.material.public_key(session, key, version)
            if isinstance(public, VerifyingKey):
                found[(key.id, version)] = public
        return found

    def _compare_with_witness(
        self,
        session: Session,
        report: VerificationReport,
        trusted: Mapping[PinnedKey, VerifyingKey],
    ) -> VerificationReport:
        """``report``, made invalid if the store does not hold what the witness saw."""
        held = self.witness.latest() if self.witness is not None else None
        if held is None:
            return report

        def broken(reason: str, first_bad: int | None = None) -> VerificationReport:
            return dataclasses.replace(
                report, valid=False, first_bad_event=first_bad, reason=reason
            )

        try:
            note = verify_note(held, trusted.values())
        except InvalidNote as exc:
            return broken(f"the witnessed checkpoint does not hold: {exc}")
        key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
        if key is None or note.origin != origin_for(key.id):
            return broken(f"the witness holds a checkpoint of {note.origin}, not of this store")
        at_seq = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == note.seq))
        head, _ = self.log.head(session)
        if at_seq is None:
            return broken(
                f"the witness saw {note.seq} events but the chain ends at {head} "
                "(events were deleted from its end)",
                head + 1,
            )
        if bytes(at_seq) != note.head_hash:
            return broken(
                f"the chain up to event {note.seq} is not the one the witness saw (rewritten)",
                None,
            )
        last = session.scalar(select(func.max(AuditCheckpoint.seq)))
        if last is None or last < note.seq:
            return broken(
                f"the witness holds a checkpoint at event {note.seq} that the store no longer "
                "has (checkpoints were deleted)"
            )
        reason = report.reason + f"; matches the witnessed checkpoint at event {note.seq}"
        if head > note.seq:
            reason += f" (events {note.seq + 1}..{head} are not witnessed yet)"
        return dataclasses.replace(report, reason=reason, witnessed_seq=note.seq)

    def _check_macs(
        self, session: Session, report: VerificationReport, *, after: int
    ) -> VerificationReport:
        """``report``, made invalid if an event after ``after`` lacks the service's MAC."""
        if self.mac is None:
            return report
        start = max(after + 1, self.mac.from_seq)
        first = next(iter(unauthenticated_events(session, self.mac.key, start)), None)
        if first is None:
            return report
        return dataclasses.replace(
            report,
            valid=False,
            first_bad_event=first,
            reason=f"event {first} was not written by this service (its MAC is missing or "
            "wrong): an event was appended or altered by someone with access to the database",
        )

    # ------------------------------------------------------------------ audit key rotation
    def rotate_signing_key(self, *, actor: str) -> AuditCheckpoint:
        """Give the audit key a new version, by its own procedure (never the generic rotate).

        In one transaction: a new version, an ``audit.key_rotate`` event naming the new
        public key's SHA-256, and a checkpoint over that event signed with the *old* version.
        Then the new public key is pinned. A verifier that trusts the old key can so check,
        from the chain, that the change was made by the holder of the old key.
        """
        self._audit_key(actor)
        with self.ctx.db.session() as session:
            key = self.ctx.find(session, AUDIT_KEY_NAME, lock=True)
            self.log.lock(session)
            trusted = self._trusted(session)
            old = key.primary_version
            if (key.id, old) not in trusted:
                raise AuditError(f"the store's audit key {key.id} v{old} is not pinned")
            report = self.log.verify_since_checkpoint(session, trusted)
            if not report.valid:
                raise AuditError(f"refusing to rotate over a broken audit chain: {report.reason}")
            signer = expect(self.ctx.material.private(session, key, old), SigningKey)
            rotate_locked(self.ctx, session, key, actor, old)
            public = self.ctx.material.public_key(session, key, key.primary_version)
            fingerprint = hashlib.sha256(public.public_bytes()).hexdigest()
            self.ctx.record(
                session,
                AUDIT_KEY_ROTATE_EVENT,
                actor,
                key=key,
                key_version=key.primary_version,
                details={"from_version": old, "public_key_sha256": fingerprint},
            )
            checkpoint = self._sign(session, key, old, signer)
            new = (key.id, key.primary_version, expect(public, VerifyingKey))
        self.anchor.pin(*new)
        return checkpoint

    # ------------------------------------------------------------------ verify, export
    def verify(self) -> VerificationReport:
        """Check the whole chain and every checkpoint signature; a failure is a security event."""
        with self.ctx.db.read_session() as session:  # a long read: writers go on beside it
            trusted = self._trusted(session)
            report = self.log.verify(session, trusted)
            if report.valid:
                report = self._compare_with_witness(session, report, trusted)
            if report.valid:
                report = self._check_macs(session, report, after=0)
        if not report.valid:
            with self.ctx.db.session() as session:
                details = {"first_bad_event": report.first_bad_event, "reason": report.reason[:500]}
                self.ctx.security_event(
                    session,
                    EventType.AUDIT_VERIFICATION_FAILURE,
                    Severity.CRITICAL,
                    "audit.verify",
                    details=details,
                )
        return report

    def public_key_pem(self, *, actor: str = "system") -> str:
        """The pinned public key of the audit key's current version (SPKI PEM)."""
        key = self._audit_key(actor)
        with self.ctx.db.session() as session:
            public = self._trusted(session).get((key.id, key.primary_version))
        if public is None:
            raise AuditError(f"audit key {key.id} v{key.primary_version} is not pinned")
        return public_key_to_pem(public).decode("ascii")

    def export(self, fp: IO[str], *, actor: str = "system") -> int:
        """Write a checkpoint, then the chain as JSON lines; returns the lines written."""
        self.checkpoint(actor=actor)
        with self.ctx.db.read_session() as session:
            return self.log.export(session, fp, self._trusted(session))

    def anchor_fingerprint(self) -> str:
        """The SHA-256 of the pinned audit keys: tell auditors this, out of band."""
        with self.ctx.db.read_session() as session:
            return anchor_fingerprint(self._trusted(session))

    # ------------------------------------------------------------------ queries
    def query(
        self, *, key: str | None = None, **filters: object
    ) -> tuple[list[AuditEvent], str | None]:
        """Audit events by time range, type, key, actor, result; paged (see ``AuditLog.query``).

        ``key`` is a key ID or name; a reference that names no key is kept as it is (a filter
        like the others: it matches no event unless events carry that ID).
        """
        with self.ctx.db.read_session() as session:
            if key is not None:
                filters["key_id"] = self._key_id(session, key)
            events, cursor = self.log.query(session, **filters)  # type: ignore[arg-type]
            return list(events), cursor

    def security_events(
        self,
        *,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        event_type: str | None = None,
        severity: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[SecurityEvent]:
        """Security events, oldest first, filtered; page with ``after_id``."""
        with self.ctx.db.read_session() as session:
            return query_events(
                session,
                since=since,
                until=until,
                event_type=event_type,
                severity=severity,
                key_id=self._key_id(session, key) if key is not None else None,
                limit=limit,
                after_id=after_id,
            )

    def _key_id(self, session: Session, ref: str) -> str:
        try:
            return self.ctx.find(session, ref).id
        except KeyNotFound:
            return ref

    # ------------------------------------------------------------------ what the edges see
    def record_auth_failure(self, source: str, reason: str, path: str) -> None:
        """A request without a valid token: a security event and its audit event."""
        with self.ctx.db.session() as session:
            self.ctx.security_event(
                session,
                EventType.AUTHENTICATION_FAILURE,
                Severity.MEDIUM,
                source,
                details={"reason": reason, "path": path[:200]},
            )
            self.ctx.record(
                session,
                "auth.failure",
                f"anonymous@{source}",
                result="failure",
                details={"reason": reason},
            )

    def record_forbidden(self, actor: str, method: str, path: str) -> None:
        """A token whose role does not admit the request."""
        with self.ctx.db.session() as session:
            self.ctx.record(
                session,
                "api.forbidden",
                actor,
                result="denied",
                details={"method": method, "path": path[:200]},
            )

    def record_tls_event(self, event_type: EventType, detail: str, *, left_out: int = 0) -> None:
        """A classical or refused TLS handshake: a security event and its audit event.

        ``left_out``: this event stands for that many more handshakes of the same kind and
        detail (see :mod:`qrc.server.telemetry`).
        """
        details: dict[str, object] = {"detail": detail[:_DETAIL_CHARS]}
        if left_out:
            details["left_out"] = left_out
        # A classical handshake's detail starts with the group it negotiated.
        classical = event_type is EventType.CLASSICAL_TLS_HANDSHAKE
        group = detail.split(" ", 1)[0][:64] if classical and detail else None
        with self.ctx.db.session() as session:
            self.ctx.security_event(
                session, event_type, Severity.MEDIUM, "tls", details=details, algorithm=group
            )
            self.ctx.record(
                session, f"tls.{event_type.value}", "tls", result="failure", details=details
            )
