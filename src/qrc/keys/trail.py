"""The audit trail as the service offers it: checkpoints, verification, export, queries.

Checkpoints are signed with the service's own ML-DSA-65 key, a managed key named
:data:`AUDIT_KEY_NAME` (created on first use, wrapped under the root KEK like any other).
Its public key can be exported for auditors to verify an exported chain offline. Security
events (authentication failures, refused handshakes...) are recorded here too, each with
its audit event in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import IO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.keyfile import public_key_to_pem
from qrc.crypto.registry import Kind, get_info
from qrc.keys.audit.events import EventType, Severity, query_events
from qrc.keys.audit.log import AuditError, AuditLog, VerificationReport
from qrc.keys.context import ServiceContext, expect
from qrc.keys.errors import KeyNotFound
from qrc.keys.lifecycle.keys import KeyLifecycle
from qrc.keys.states import KeyState
from qrc.keys.store.models import AuditCheckpoint, AuditEvent, Key, SecurityEvent

__all__ = ["AUDIT_KEY_ALGORITHM", "AUDIT_KEY_NAME", "AuditTrail"]

AUDIT_KEY_NAME = "qrc-audit-signing"
AUDIT_KEY_ALGORITHM = "ML-DSA-65"
_DETAIL_CHARS = 100


class AuditTrail:
    """Checkpoints, verification, export and queries of the audit chain (``service.audit``)."""

    def __init__(self, ctx: ServiceContext, keys: KeyLifecycle) -> None:
        self.ctx = ctx
        self.keys = keys

    @property
    def log(self) -> AuditLog:
        """The chain itself (append, head, verify within a session)."""
        return self.ctx.audit_log

    # ------------------------------------------------------------------ checkpoints
    def _audit_key(self, actor: str) -> Key:
        with self.ctx.db.session() as session:
            key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
            if key is not None:
                return key
        self.keys.create_key(
            name=AUDIT_KEY_NAME,
            purpose="signing",
            algorithm=AUDIT_KEY_ALGORITHM,
            actor=actor,
            labels={"qrc.system": "audit"},
        )
        with self.ctx.db.session() as session:
            return session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).one()

    def checkpoint(self, *, actor: str = "system") -> AuditCheckpoint:
        """Sign the current chain head with the service's audit key (created if missing)."""
        self._audit_key(actor)
        with self.ctx.db.session() as session:
            checkpoint = self.checkpoint_in(session)
            if checkpoint is None:
                raise KeyNotFound("the audit signing key is not active: rotate or recreate it")
            return checkpoint

    def checkpoint_if_moved(self, *, actor: str = "system") -> AuditCheckpoint | None:
        """A checkpoint only if events were appended since the last one (else ``None``).

        An idle store gains nothing from more checkpoints of the same head.
        """
        with self.ctx.db.session() as session:
            head, _ = self.log.head(session)
            last = session.scalar(select(func.max(AuditCheckpoint.seq)))
        if last is not None and last >= head:
            return None
        return self.checkpoint(actor=actor)

    def checkpoint_in(self, session: Session) -> AuditCheckpoint | None:
        """Sign the chain head in the caller's transaction (``None`` without an active key).

        Before signing, the latest checkpoint and the events since are verified
        (:meth:`AuditLog.verify_since_checkpoint`), so the cost grows with the events since
        the last checkpoint, not with the chain. An edit before the latest checkpoint that
        leaves the checkpointed event's hash alone is not seen here: the full verify
        (``qrc admin audit verify``, ``GET /audit/verify``) catches it.

        Raises:
            AuditError: the chain or the latest checkpoint does not verify.
        """
        key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
        if key is None or key.status != KeyState.ACTIVE or key.destruction_due_at is not None:
            return None
        # Never vouch for a tampered chain: check the latest checkpoint and what follows it.
        # Hold the audit lock: no event may slip in between the check and the signature.
        self.log.lock(session)
        report = self.log.verify_since_checkpoint(session, self.key_lookup(session))
        if not report.valid:
            raise AuditError(f"refusing to checkpoint a broken audit chain: {report.reason}")
        private = self.ctx.material.private(session, key, key.primary_version)
        signer = expect(private, SigningKey)
        return self.log.checkpoint(session, signer, key.id, key.primary_version)

    def key_lookup(self, session: Session) -> Callable[[str, int], VerifyingKey | None]:
        """Checkpoint signers' public keys, read from the store within ``session``."""
        return lambda key_id, version: self._verifying_key(session, key_id, version)

    def _verifying_key(self, session: Session, key_id: str, version: int) -> VerifyingKey | None:
        key = session.get(Key, key_id)
        if key is None or get_info(key.algorithm).kind is not Kind.SIGNATURE:
            return None
        try:
            public = self.ctx.material.public_key(session, key, version)
        except KeyNotFound:
            return None
        return public if isinstance(public, VerifyingKey) else None

    # ------------------------------------------------------------------ verify, export
    def verify(self) -> VerificationReport:
        """Check the whole chain and every checkpoint signature; a failure is a security event."""
        with self.ctx.db.session() as session:
            report = self.log.verify(session, self.key_lookup(session))
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
        """The audit signing key's public key (SPKI PEM), for offline verification."""
        key = self._audit_key(actor)
        with self.ctx.db.session() as session:
            public = self.ctx.material.public_key(session, key, key.primary_version)
        return public_key_to_pem(public).decode("ascii")

    def export(self, fp: IO[str], *, actor: str = "system") -> int:
        """Write a checkpoint, then the chain as JSON lines; returns the lines written."""
        self.checkpoint(actor=actor)
        with self.ctx.db.session() as session:
            return self.log.export(session, fp)

    # ------------------------------------------------------------------ queries
    def query(
        self, *, key: str | None = None, **filters: object
    ) -> tuple[list[AuditEvent], str | None]:
        """Audit events by time range, type, key, actor, result; paged (see ``AuditLog.query``).

        ``key`` is a key ID or name; a reference that names no key is kept as it is (a filter
        like the others: it matches no event unless events carry that ID).
        """
        with self.ctx.db.session() as session:
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
        with self.ctx.db.session() as session:
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

    def record_tls_event(self, event_type: EventType, detail: str) -> None:
        """A classical or refused TLS handshake: a security event and its audit event."""
        details = {"detail": detail[:_DETAIL_CHARS]}
        with self.ctx.db.session() as session:
            self.ctx.security_event(session, event_type, Severity.MEDIUM, "tls", details=details)
            self.ctx.record(
                session, f"tls.{event_type.value}", "tls", result="failure", details=details
            )
