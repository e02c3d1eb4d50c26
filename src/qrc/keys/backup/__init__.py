"""Backup and disaster recovery: one encrypted file and k-of-n Shamir shares.

- :mod:`.format` — the file's layout, header, errors and row encoding; opening with shares;
- :mod:`.create` — backing the whole store up;
- :mod:`.restore` — restoring into an empty store under its own KEK.

:class:`Backups` is what the service exposes as ``service.backups``.
"""

from __future__ import annotations

from collections.abc import Sequence

from qrc.crypto import shamir
from qrc.crypto.base import KemPublicKey
from qrc.keys.audit.log import KeyLookup
from qrc.keys.backup.create import create_backup
from qrc.keys.backup.format import (
    AuditChainBroken,
    BackupCorrupted,
    BackupError,
    BackupHeader,
    BackupResult,
    RestoreReport,
    StoreNotEmpty,
    UnsupportedBackupVersion,
    read_header,
)
from qrc.keys.backup.restore import restore_backup
from qrc.keys.context import ServiceContext
from qrc.keys.trail import AuditTrail

__all__ = [
    "AuditChainBroken",
    "BackupCorrupted",
    "BackupError",
    "BackupHeader",
    "BackupResult",
    "Backups",
    "RestoreReport",
    "StoreNotEmpty",
    "UnsupportedBackupVersion",
    "read_header",
]


class Backups:
    """Back the store up and restore it (``service.backups``)."""

    def __init__(self, ctx: ServiceContext, trail: AuditTrail) -> None:
        self.ctx = ctx
        self.trail = trail

    def create(
        self,
        *,
        threshold: int,
        shares: int,
        actor: str,
        custodians: Sequence[KemPublicKey] | None = None,
        allow_broken_audit: bool = False,
        audit_public_keys: KeyLookup | None = None,
    ) -> BackupResult:
        """Back up the whole store (see :func:`qrc.keys.backup.create.create_backup`)."""
        return create_backup(
            self.ctx,
            self.trail,
            threshold=threshold,
            shares=shares,
            custodians=custodians,
            actor=actor,
            allow_broken_audit=allow_broken_audit,
            audit_public_keys=audit_public_keys,
        )

    def restore(
        self,
        data: bytes,
        shares: Sequence[shamir.Share],
        *,
        actor: str,
        allow_broken_audit: bool = False,
        audit_public_keys: KeyLookup | None = None,
    ) -> RestoreReport:
        """Restore into this empty store (see :func:`qrc.keys.backup.restore.restore_backup`)."""
        return restore_backup(
            self.ctx,
            self.trail,
            data,
            shares,
            actor=actor,
            allow_broken_audit=allow_broken_audit,
            audit_public_keys=audit_public_keys,
        )
