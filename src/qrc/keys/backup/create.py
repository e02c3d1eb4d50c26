"""Making a backup: the whole store, sealed, its key split into Shamir shares."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.crypto import shamir
from qrc.crypto.base import KemPublicKey
from qrc.crypto.envelope import seal_symmetric
from qrc.keys.audit.log import KeyLookup
from qrc.keys.backup.chain import checkpoint_in, lookup
from qrc.keys.backup.format import (
    _ENVELOPE_LABEL,
    _ID_PREFIX,
    _ID_SIZE,
    _NONCE_SIZE,
    _TABLES,
    _WRAP_LABEL,
    BODY_FORMAT,
    CONTEXT,
    ENVELOPE_ALGORITHM,
    KEY_SIZE,
    VERSION,
    AuditChainBroken,
    BackupHeader,
    BackupResult,
    _b64,
    _canonical_json,
    _check_custodians,
    _check_threshold,
    _columns,
    _counts,
    _derive,
    _encode_value,
    _material_aad,
    _table,
)
from qrc.keys.context import ServiceContext
from qrc.keys.store.db import Base
from qrc.keys.trail import AuditTrail


# --------------------------------------------------------------------------- create
def create_backup(
    ctx: ServiceContext,
    trail: AuditTrail,
    *,
    threshold: int,
    shares: int,
    custodians: Sequence[KemPublicKey] | None = None,
    actor: str,
    allow_broken_audit: bool = False,
    audit_public_keys: KeyLookup | None = None,
) -> BackupResult:
    """Back up the whole store under a fresh key split into ``shares`` shares (any
    ``threshold`` rebuild it), each sealed to its custodian's key when ``custodians`` are
    given.

    The backup is recorded as a ``backup.create`` audit event, appended in the same
    transaction before the store is read (and covered by a checkpoint signed with the
    service's audit key, if the store has one), so the backup holds the chain up to and
    including it. Checkpoint signatures are verified with the store's own audit keys, or with
    ``audit_public_keys`` (as for :meth:`AuditLog.verify`) when given.

    Raises:
        InvalidRequest: bad threshold, share count or custodian keys.
        AuditChainBroken: the audit chain does not verify (unless ``allow_broken_audit``);
            nothing is written.
        CustodyUnavailable: the root KEK cannot be reached; nothing is written.
    """
    k, n = _check_threshold(threshold, shares)
    keys = _check_custodians(custodians, n) if custodians is not None else None
    backup_key = os.urandom(KEY_SIZE)
    split = shamir.split(backup_key, k, n)
    set_id = split[0].set_id
    backup_id = _ID_PREFIX + os.urandom(_ID_SIZE).hex()
    created_at = ctx.clock().astimezone(UTC)
    wrap_key = AESGCM(_derive(backup_key, _WRAP_LABEL, backup_id))
    sealed = (
        None
        if keys is None
        else [shamir.seal_share(share, key) for share, key in zip(split, keys, strict=True)]
    )

    with ctx.db.session() as session:
        # Appending first takes the audit lock (PostgreSQL advisory lock; SQLite's writer
        # lock is already held): every change that commits an audit event waits for us, so
        # what we read below is one consistent state, with this event at the chain's end.
        ctx.audit_log.append(
            session,
            event_type="backup.create",
            actor=actor,
            result="success",
            details={
                "backup_id": backup_id,
                "threshold": k,
                "shares": n,
                "share_set": set_id.hex(),
                "sealed_to_custodians": keys is not None,
            },
        )
        # A signed checkpoint over this event covers the whole backed-up chain to its end.
        checkpoint_in(trail, session)
        report = ctx.audit_log.verify(session, lookup(trail, session, audit_public_keys))
        if not report.valid and not allow_broken_audit:
            raise AuditChainBroken(
                f"the audit chain does not verify ({report.reason}); no backup was made. "
                "Investigate first; allow_broken_audit=True backs it up as it is",
                report,
            )
        tables = {
            table: _export_table(session, ctx, table, model, backup_id, wrap_key)
            for table, model in _TABLES
        }
        head_seq, head_hash = ctx.audit_log.head(session)
        header = BackupHeader(backup_id, created_at, k, n, set_id, head_hash, _counts(tables))
        header_bytes = header.to_bytes()
        body = {
            "format": BODY_FORMAT,
            "version": VERSION,
            "backup_id": backup_id,
            "created_by": actor,
            "audit_head_seq": head_seq,
            "tables": tables,
        }
        # Sealed inside the transaction: if this fails, the backup.create event is not kept.
        envelope = seal_symmetric(
            _derive(backup_key, _ENVELOPE_LABEL, backup_id),
            _canonical_json(body),
            algorithm=ENVELOPE_ALGORITHM,
            context=CONTEXT + header_bytes,
            key_id=backup_id,
            key_version=1,
        )
    data = header_bytes + envelope
    if sealed is None:
        return BackupResult(data, backup_id, header, shares=split)
    return BackupResult(data, backup_id, header, sealed_shares=sealed)


def _export_table(
    session: Session,
    ctx: ServiceContext,
    table: str,
    model: type[Base],
    backup_id: str,
    wrap_key: AESGCM,
) -> list[dict[str, Any]]:
    columns = _columns(table, model)
    order = list(_table(model).primary_key.columns)
    rows = []
    for row in session.execute(select(_table(model)).order_by(*order)).mappings():
        record = {c.name: _encode_value(c, row[c.name]) for c in columns}
        if table == "qrc_key_versions":
            record["material"] = _rewrap_for_backup(ctx, row, backup_id, wrap_key)
        rows.append(record)
    return rows


def _rewrap_for_backup(ctx: ServiceContext, row: Any, backup_id: str, wrap_key: AESGCM) -> Any:
    """Unwrap one version under the root KEK and wrap it under the backup's key."""
    blob = row["wrapped_private"]
    if blob is None:
        return None  # destroyed: nothing to keep, and it stays destroyed
    key_id, version, algorithm = row["key_id"], row["version"], row["algorithm"]
    raw = ctx.material.keyring.unwrap(key_id, version, algorithm, bytes(blob))
    nonce = os.urandom(_NONCE_SIZE)
    sealed = wrap_key.encrypt(nonce, raw, _material_aad(backup_id, key_id, version, algorithm))
    return _b64(nonce + sealed)
