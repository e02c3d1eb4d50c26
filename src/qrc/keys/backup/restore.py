"""Restoring a backup into an empty store, every key rewrapped under its current KEK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Table, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qrc.crypto import shamir
from qrc.crypto.errors import CryptoError
from qrc.crypto.registry import Kind, get_info
from qrc.crypto.schemes import get_kem, get_signature
from qrc.keys.audit.events import event_fields
from qrc.keys.audit.format import event_mac
from qrc.keys.audit.log import KeyLookup, format_time
from qrc.keys.backup.chain import checkpoint_in, lookup
from qrc.keys.backup.format import (
    _NONCE_SIZE,
    _SERIAL,
    _TABLES,
    _WRAP_LABEL,
    AuditChainBroken,
    BackupCorrupted,
    RestoreReport,
    StoreNotEmpty,
    _columns,
    _decode_value,
    _derive,
    _material_aad,
    _open,
    _table,
    _unb64,
)
from qrc.keys.context import ServiceContext
from qrc.keys.store.db import Base
from qrc.keys.store.keks import register_kek
from qrc.keys.store.models import key_strength
from qrc.keys.trail import AuditTrail


# --------------------------------------------------------------------------- restore
def _occupied(session: Session) -> list[str]:
    found = []
    for table, model in _TABLES:
        count = session.scalar(select(func.count()).select_from(_table(model))) or 0
        if count:
            found.append(f"{count} {table}")
    return found


def _require_empty(session: Session) -> None:
    found = _occupied(session)
    if found:
        raise StoreNotEmpty(
            "restore needs an empty store and this one holds "
            + ", ".join(found)
            + ": restore into a fresh database (nothing was written)"
        )


def restore_backup(
    ctx: ServiceContext,
    trail: AuditTrail,
    data: bytes,
    shares: Sequence[shamir.Share],
    *,
    actor: str,
    allow_broken_audit: bool = False,
    audit_public_keys: KeyLookup | None = None,
) -> RestoreReport:
    """Restore a backup into ``service``'s empty store, rewrapping every key under its KEK.

    IDs, versions, states, timestamps, audit events and checkpoints are restored exactly;
    the chain is verified (checkpoint signatures with the restored audit keys, or
    ``audit_public_keys``); then a ``backup.restore`` event is appended and, if the store has
    an audit key, a checkpoint over it. Everything happens in one transaction: any failure
    writes nothing.

    Raises:
        StoreNotEmpty: the store holds keys, audit events or other records.
        shamir.NotEnoughShares: fewer than the threshold.
        shamir.ShareMismatch / shamir.InvalidShare: shares of another backup, or altered.
        BackupCorrupted: the file is damaged or was altered.
        UnsupportedBackupVersion: a format version this release does not read.
        AuditChainBroken: the restored chain does not verify (unless ``allow_broken_audit``).
        CustodyUnavailable: the target's root KEK cannot be reached.
    """
    # A quick look first, so that an occupied store is reported before shares are asked for.
    with ctx.db.session() as session:
        _require_empty(session)
    header, body, backup_key = _open(data, shares)
    wrap_key = AESGCM(_derive(backup_key, _WRAP_LABEL, header.backup_id))
    tables: dict[str, list[dict[str, Any]]] = body["tables"]
    destroyed = 0
    with ctx.db.session() as session:
        ctx.audit_log.lock(session)  # no event is appended beside us
        _require_empty(session)
        for table, model in _TABLES:
            rows = [_decode_row(table, model, record) for record in tables[table]]
            if table == "qrc_key_versions":
                for row, record in zip(rows, tables[table], strict=True):
                    destroyed += _rewrap_for_store(ctx, header.backup_id, wrap_key, row, record)
            if table == "qrc_audit_events":
                _remac(ctx, session, rows)
            if rows:
                try:
                    session.execute(_table(model).insert(), rows)
                except SQLAlchemyError:
                    # No exception text: it would quote the rows.
                    raise BackupCorrupted(f"the store refused the rows of {table}") from None
        if not ctx.db.is_sqlite:
            _advance_sequences(session)
        head_seq, head_hash = ctx.audit_log.head(session)
        if head_hash != header.audit_head_hash or head_seq != body.get("audit_head_seq"):
            raise BackupCorrupted("the audit chain's head does not match the header")
        report = ctx.audit_log.verify(session, lookup(trail, session, audit_public_keys))
        if not report.valid and not allow_broken_audit:
            raise AuditChainBroken(
                f"the backup's audit chain does not verify ({report.reason}); nothing was "
                "restored. allow_broken_audit=True restores it as it is",
                report,
            )
        register_kek(
            session, ctx.material.keyring.current
        )  # the KEK everything is wrapped under now
        ctx.audit_log.append(
            session,
            event_type="backup.restore",
            actor=actor,
            result="success",
            details={
                "backup_id": header.backup_id,
                "backup_created_at": format_time(header.created_at),
                "keys": header.counts.keys,
                "key_versions": header.counts.key_versions,
                "audit_events": header.counts.audit_events,
                "kek_id": ctx.material.keyring.current.kek_id,
            },
        )
        # Signed with the restored audit key, now wrapped under the target's KEK.
        checkpoint_in(trail, session)
    for record in tables["qrc_keys"]:
        ctx.material.forget(record["id"])  # drop anything cached under these IDs
    return RestoreReport(
        backup_id=header.backup_id,
        created_at=header.created_at,
        restored_at=ctx.clock(),
        counts=header.counts,
        destroyed_versions=destroyed,
        audit=report,
        kek_id=ctx.material.keyring.current.kek_id,
    )


def _remac(ctx: ServiceContext, session: Session, rows: list[dict[str, Any]]) -> None:
    """Give restored events this store's MACs: the backup (sealed, its chain verified
    below) vouches for them, and the old store's MAC key does not come along."""
    mac_key = ctx.audit_log.mac_key(session) if ctx.audit_log.mac_key is not None else None
    for row in rows:
        row["mac"] = event_mac(mac_key, row["hash"]) if mac_key is not None else None


# Columns added by later migrations (0002: audit MACs; 0003: the data index fields; 0005:
# the story's key strength and security-event fields).
_ADDED_COLUMNS: dict[str, frozenset[str]] = {
    "qrc_audit_events": frozenset({"mac"}),
    "qrc_encrypted_data_index": frozenset(
        {"data_type", "location", "integrity_hash", "rewrapped_at"}
    ),
    "qrc_keys": frozenset({"key_strength"}),
    "qrc_security_events": frozenset({"description", "is_quantum_threat_related", "action_taken"}),
}


def _fill_added(table: str, record: dict[str, Any], missing: frozenset[str]) -> dict[str, Any]:
    """``record`` with the columns a backup predates, filled as migration 0005 fills them:
    a key's strength from the registry, an event's story fields from its type's defaults;
    any other added column is NULL (they are nullable)."""
    filled: dict[str, Any] = {**record, **dict.fromkeys(missing)}
    if table == "qrc_keys" and "key_strength" in missing:
        algorithm = record.get("algorithm")
        filled["key_strength"] = key_strength(algorithm) if isinstance(algorithm, str) else None
    if table == "qrc_security_events" and missing:
        event_type = record.get("event_type")
        description, quantum, action = event_fields(
            event_type if isinstance(event_type, str) else "", None, None, None
        )
        defaults = {
            "description": description,
            "is_quantum_threat_related": quantum,
            "action_taken": action,
        }
        filled.update({name: defaults[name] for name in missing if name in defaults})
    return filled


def _decode_row(table: str, model: type[Base], record: object) -> dict[str, Any]:
    columns = _columns(table, model)
    expected = {c.name for c in columns} | ({"material"} if table == "qrc_key_versions" else set())
    if isinstance(record, dict):
        # Columns added since a backup was made are filled as their migration filled them.
        missing = _ADDED_COLUMNS.get(table, frozenset()) - set(record)
        record = _fill_added(table, record, missing) if missing else record
    if not isinstance(record, dict) or set(record) != expected:
        raise BackupCorrupted(f"a row of {table} has unexpected fields")
    return {c.name: _decode_value(table, c, record[c.name]) for c in columns}


def _rewrap_for_store(
    ctx: ServiceContext, backup_id: str, wrap_key: AESGCM, row: dict[str, Any], record: Any
) -> int:
    """Fill ``row``'s wrapped blob and KEK ID from the backup's material; 1 if destroyed."""
    material = record["material"]
    if material is None:
        row["wrapped_private"], row["kek_id"] = None, None
        return 1
    key_id, version, algorithm = row["key_id"], row["version"], row["algorithm"]
    sealed = _unb64(material, "qrc_key_versions.material")
    try:
        get_info(algorithm)
        raw = wrap_key.decrypt(
            sealed[:_NONCE_SIZE],
            sealed[_NONCE_SIZE:],
            _material_aad(backup_id, key_id, version, algorithm),
        )
    except (InvalidTag, ValueError, CryptoError):
        raise BackupCorrupted(f"key {key_id} version {version} does not unwrap") from None
    _check_pair(algorithm, raw, row["public_key"], key_id, version)
    row["wrapped_private"], row["kek_id"] = ctx.material.keyring.wrap(
        key_id, version, algorithm, raw
    )
    return 0


def _check_pair(
    algorithm: str, raw: bytes, public: bytes | None, key_id: str, version: int
) -> None:
    """The restored private key must load and match the stored public key."""
    info = get_info(algorithm)
    try:
        if info.kind is Kind.AEAD:
            ok = public is None and len(raw) == info.private_key_size
        else:
            scheme = get_kem(info.id) if info.kind is Kind.KEM else get_signature(info.id)
            private = scheme.load_private(raw)
            ok = public is not None and private.public_key().public_bytes() == public
    except CryptoError:
        ok = False
    if not ok:
        raise BackupCorrupted(f"key {key_id} version {version} does not match its public key")


def _advance_sequences(session: Session) -> None:
    """Move PostgreSQL's ID sequences past the restored IDs (explicit IDs do not)."""
    for column in _SERIAL:
        table = cast(Table, column.table)
        highest = select(func.max(column)).scalar_subquery()
        session.execute(
            select(
                func.setval(
                    func.pg_get_serial_sequence(table.name, column.name),
                    func.coalesce(highest, 0) + 1,
                    False,
                )
            )
        )
