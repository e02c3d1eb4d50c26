"""The service's side of the audit chain: its signing key, checkpoints, verification.

Checkpoints are signed with the service's own ML-DSA-65 key, a managed key named
:data:`AUDIT_KEY_NAME` (created on first use, wrapped under the root KEK like any other).
Its public key can be exported for auditors to verify an exported chain offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.registry import Kind, get_info
from qrc.keys.audit import AuditError, VerificationReport
from qrc.keys.errors import KeyNotFound
from qrc.keys.events import EventType, Severity, record_event
from qrc.keys.keystore import expect
from qrc.keys.lifecycle import KeyState
from qrc.keys.management import KeyManagement
from qrc.keys.models import AuditCheckpoint, AuditEvent, Key
from qrc.keys.operations import KeyOperations

__all__ = ["AUDIT_KEY_ALGORITHM", "AUDIT_KEY_NAME", "KeyAuditing"]

AUDIT_KEY_NAME = "qrc-audit-signing"
AUDIT_KEY_ALGORITHM = "ML-DSA-65"


class KeyAuditing(KeyManagement, KeyOperations):
    """Audit checkpoints and verification, on top of lifecycle and operations."""

    def _audit_key(self, actor: str) -> Key:
        with self.db.session() as session:
            key = session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).first()
            if key is not None:
                return key
        self.create_key(
            name=AUDIT_KEY_NAME,
            purpose="signing",
            algorithm=AUDIT_KEY_ALGORITHM,
            actor=actor,
            labels={"qrc.system": "audit"},
        )
        with self.db.session() as session:
            return session.scalars(select(Key).where(Key.name == AUDIT_KEY_NAME)).one()

    def audit_checkpoint(self, *, actor: str = "system") -> AuditCheckpoint:
        """Sign the current chain head with the service's audit key (created if missing)."""
        self._audit_key(actor)
        with self.db.session() as session:
            checkpoint = self.checkpoint_in(session)
            if checkpoint is None:
                raise KeyNotFound("the audit signing key is not active: rotate or recreate it")
            return checkpoint

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
        self.audit.lock(session)
        report = self.audit.verify_since_checkpoint(session, self.audit_key_lookup(session))
        if not report.valid:
            raise AuditError(f"refusing to checkpoint a broken audit chain: {report.reason}")
        signer = expect(self._private_material(session, key, key.primary_version), SigningKey)
        return self.audit.checkpoint(session, signer, key.id, key.primary_version)

    def audit_key_lookup(self, session: Session) -> Callable[[str, int], VerifyingKey | None]:
        """Checkpoint signers' public keys, read from the store within ``session``."""
        return lambda key_id, version: self._verifying_key(session, key_id, version)

    def _verifying_key(self, session: Session, key_id: str, version: int) -> VerifyingKey | None:
        key = session.get(Key, key_id)
        if key is None or get_info(key.algorithm).kind is not Kind.SIGNATURE:
            return None
        try:
            public = self._public_key(session, key, version)
        except KeyNotFound:
            return None
        return public if isinstance(public, VerifyingKey) else None

    def verify_audit(self) -> VerificationReport:
        """Check the whole chain and every checkpoint signature; a failure is a security event."""
        with self.db.session() as session:
            report = self.audit.verify(session, self.audit_key_lookup(session))
        if not report.valid:
            with self.db.session() as session:
                details = {"first_bad_event": report.first_bad_event, "reason": report.reason[:500]}
                record_event(
                    session,
                    EventType.AUDIT_VERIFICATION_FAILURE,
                    Severity.CRITICAL,
                    "audit.verify",
                    details=details,
                )
        return report

    def audit_public_key_pem(self, *, actor: str = "system") -> str:
        """The audit signing key's public key (SPKI PEM), for offline verification."""
        key = self._audit_key(actor)
        return self.public_key_pem(key.id)

    def export_audit(self, fp: IO[str], *, actor: str = "system") -> int:
        """Write a checkpoint, then the chain as JSON lines; returns the lines written."""
        self.audit_checkpoint(actor=actor)
        with self.db.session() as session:
            return self.audit.export(session, fp)

    def query_audit(self, **filters: object) -> tuple[list[AuditEvent], str | None]:
        """Audit events by time range, type, key, actor, result; paged (see ``AuditLog.query``)."""
        with self.db.session() as session:
            events, cursor = self.audit.query(session, **filters)  # type: ignore[arg-type]
            return list(events), cursor
