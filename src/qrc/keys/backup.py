"""Backup and disaster recovery of the key store: one encrypted file and k-of-n Shamir shares.

A backup (``docs/formats.md``, "Backup v1") holds every key with its versions, policies, API
clients (token hashes only), security events, the encrypted data index and the whole audit
chain with its checkpoints. Layout::

    header (115 bytes, clear) || Envelope v1 (AES-256-GCM, key ID = backup ID,
                                              context = "qrc-backup-v1" || header)

The body is canonical JSON. A fresh random 256-bit backup key is split into Shamir shares
(:mod:`qrc.keys.shamir`, optionally sealed to custodians); two keys are derived from it with
HKDF-SHA256: one seals the body, the other rewraps every private key version (AES-256-GCM,
bound to backup ID, key ID, version and algorithm). The backup therefore needs neither the
store's root KEK nor its HSM: restore rewraps every version under the target's current KEK.
Unwrapped material exists only in memory, one version at a time, while it is rewrapped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import JSON, Integer, LargeBinary, String, Table, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qrc.crypto.base import KemPublicKey
from qrc.crypto.envelope import open_symmetric, seal_symmetric
from qrc.crypto.errors import CryptoError, DecryptionError
from qrc.crypto.registry import Family, Kind, get_info
from qrc.crypto.schemes import get_kem, get_signature
from qrc.keys import shamir
from qrc.keys.audit import KeyLookup, VerificationReport, format_time
from qrc.keys.db import Base, UTCDateTime
from qrc.keys.errors import InvalidRequest, KeyServiceError
from qrc.keys.kek import register_kek
from qrc.keys.models import (
    ApiClient,
    AuditCheckpoint,
    AuditEvent,
    EncryptedDataIndex,
    Key,
    KeyVersion,
    Policy,
    SecurityEvent,
)
from qrc.keys.service import KeyService
from qrc.keys.wrapping import key_aad

__all__ = [
    "CONTEXT",
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "AuditChainBroken",
    "BackupCorrupted",
    "BackupCounts",
    "BackupError",
    "BackupHeader",
    "BackupResult",
    "RestoreReport",
    "StoreNotEmpty",
    "UnsupportedBackupVersion",
    "create_backup",
    "read_header",
    "restore_backup",
]

MAGIC: Final = b"QRCB"
VERSION: Final = 1
#: Envelope context prefix; the full context is ``CONTEXT || header``.
CONTEXT: Final = b"qrc-backup-v1"
BODY_FORMAT: Final = "qrc-backup"
ENVELOPE_ALGORITHM: Final = "AES-256-GCM"
KEY_SIZE: Final = 32
_ENVELOPE_LABEL: Final = b"qrc-backup-v1 envelope\x00"
_WRAP_LABEL: Final = b"qrc-backup-v1 key-wrap\x00"
_MATERIAL_TAG: Final = b"qrc-backup-key-v1"
_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_ID_SIZE: Final = 16
_ID_PREFIX: Final = "b_"
# magic, version, backup_id, created_at, k, n, set_id, head hash, 1 u64 + 7 u32 counts.
_HEADER = struct.Struct(">4sB16sQBB16s32sQIIIIIII")
HEADER_SIZE: Final = _HEADER.size  # 115
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z")
_CORRUPTED: Final = "backup is corrupted or was altered"

# The tables a backup holds, in restore order (parents before children), each read in
# primary-key order. Job leases and KEK records belong to the running installation, not to
# the data: the target has its own.
_TABLES: Final[tuple[tuple[str, type[Base]], ...]] = (
    ("qrc_keys", Key),
    ("qrc_key_versions", KeyVersion),
    ("qrc_encrypted_data_index", EncryptedDataIndex),
    ("qrc_security_events", SecurityEvent),
    ("qrc_policies", Policy),
    ("qrc_api_clients", ApiClient),
    ("qrc_audit_events", AuditEvent),
    ("qrc_audit_checkpoints", AuditCheckpoint),
)
# Key versions leave their KEK-wrapped blob and KEK ID behind; "material" (rewrapped under
# the backup's key-wrapping key) takes their place.
_OMITTED: Final = {"qrc_key_versions": frozenset({"wrapped_private", "kek_id"})}
# Autoincrement IDs restored explicitly: PostgreSQL's sequences must then move past them.
_SERIAL: Final = (
    KeyVersion.__table__.c.id,
    EncryptedDataIndex.__table__.c.id,
    SecurityEvent.__table__.c.id,
    AuditCheckpoint.__table__.c.id,
    AuditEvent.__table__.c.seq,
)


# --------------------------------------------------------------------------- errors
class BackupError(KeyServiceError):
    """Base class of backup and restore errors (share errors are :class:`shamir.ShareError`)."""


class BackupCorrupted(BackupError):
    """The backup file does not parse or authenticate: damaged, truncated or altered."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(_CORRUPTED + (f" ({detail})" if detail else ""))


class UnsupportedBackupVersion(BackupError):
    """The file is a backup of a format version this release does not read."""


class StoreNotEmpty(BackupError):
    """Restore needs an empty store; this one holds keys, events or other records."""


class AuditChainBroken(BackupError):
    """The audit chain does not verify (refused unless ``allow_broken_audit``)."""

    def __init__(self, message: str, report: VerificationReport) -> None:
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class BackupCounts:
    """How many records of each kind a backup holds."""

    keys: int
    key_versions: int
    audit_events: int
    audit_checkpoints: int
    policies: int
    api_clients: int
    security_events: int
    data_index: int


@dataclass(frozen=True)
class BackupHeader:
    """The clear header of a backup: which backup, which share set, what it holds.

    Safe to show: it carries no secret. It is authenticated only once the backup is opened
    with its shares (it is the envelope's context).
    """

    backup_id: str
    created_at: datetime
    threshold: int
    shares: int
    set_id: bytes
    audit_head_hash: bytes
    counts: BackupCounts

    def to_bytes(self) -> bytes:
        """The 115-byte header (``docs/formats.md``, "Backup v1")."""
        c = self.counts
        return _HEADER.pack(
            MAGIC,
            VERSION,
            _id_bytes(self.backup_id),
            (self.created_at - _EPOCH) // _MICROSECOND,
            self.threshold,
            self.shares,
            self.set_id,
            self.audit_head_hash,
            c.audit_events,
            c.keys,
            c.key_versions,
            c.audit_checkpoints,
            c.policies,
            c.api_clients,
            c.security_events,
            c.data_index,
        )


@dataclass(frozen=True)
class BackupResult:
    """A new backup: the file's bytes and the shares of its key.

    With custodians, ``shares`` is empty and ``sealed_shares`` holds one Sealed share v1 per
    custodian (in the custodians' order): the plain shares never leave :func:`create_backup`.
    Without, ``shares`` holds the ``n`` plain shares and ``sealed_shares`` is empty.
    """

    data: bytes = field(repr=False)
    backup_id: str
    summary: BackupHeader
    shares: list[shamir.Share] = field(default_factory=list)
    sealed_shares: list[bytes] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class RestoreReport:
    """What a restore wrote; ``audit`` is the restored chain's verification."""

    backup_id: str
    created_at: datetime
    restored_at: datetime
    counts: BackupCounts
    destroyed_versions: int
    audit: VerificationReport
    kek_id: str


# --------------------------------------------------------------------------- helpers
def _id_bytes(backup_id: str) -> bytes:
    if not backup_id.startswith(_ID_PREFIX):
        raise ValueError("a backup ID is 'b_' and 32 hex digits")
    raw = bytes.fromhex(backup_id[len(_ID_PREFIX) :])
    if len(raw) != _ID_SIZE:
        raise ValueError("a backup ID is 'b_' and 32 hex digits")
    return raw


def _derive(backup_key: bytes, label: bytes, backup_id: str) -> bytes:
    # Separate keys for the body and for the key material: one key, one job.
    return HKDF(
        hashes.SHA256(), KEY_SIZE, salt=None, info=label + backup_id.encode("ascii")
    ).derive(backup_key)


def _material_aad(backup_id: str, key_id: str, version: int, algorithm: str) -> bytes:
    bid = backup_id.encode("ascii")
    return _MATERIAL_TAG + bytes([len(bid)]) + bid + key_aad(key_id, version, algorithm)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise BackupCorrupted(f"{where} is not base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BackupCorrupted(f"{where} is not base64") from None


def _parse_time(value: object, where: str) -> datetime:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BackupCorrupted(f"{where} is not an RFC 3339 UTC time")
    try:
        y, mo, d, h, mi, s, us = (int(g) for g in match.groups())
        return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)
    except ValueError:
        raise BackupCorrupted(f"{where} is out of range") from None


def _canonical_json(value: object) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _columns(table: str, model: type[Base]) -> list[Any]:
    omitted = _OMITTED.get(table, frozenset())
    return [c for c in _table(model).columns if c.name not in omitted]


def _encode_value(column: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, UTCDateTime):
        return format_time(value)
    if isinstance(column.type, LargeBinary):
        return _b64(bytes(value))
    return value  # str, int, or a JSON value


def _decode_value(table: str, column: Any, value: Any) -> Any:
    where = f"{table}.{column.name}"
    kind = column.type
    if value is None:
        if not column.nullable:
            raise BackupCorrupted(f"{where} is null")
        return None
    if isinstance(kind, UTCDateTime):
        return _parse_time(value, where)
    if isinstance(kind, LargeBinary):
        return _unb64(value, where)
    if isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BackupCorrupted(f"{where} is not an integer")
        return value
    if isinstance(kind, String):
        if not isinstance(value, str) or (kind.length is not None and len(value) > kind.length):
            raise BackupCorrupted(f"{where} is not a string of at most {kind.length} characters")
        return value
    if isinstance(kind, JSON):
        return value
    raise TypeError(f"{where}: no backup encoding for {kind!r}")  # a new column type: a bug


def _check_threshold(threshold: object, shares: object) -> tuple[int, int]:
    if (
        isinstance(threshold, bool)
        or isinstance(shares, bool)
        or not isinstance(threshold, int)
        or not isinstance(shares, int)
        or not 2 <= threshold <= shares <= 255
    ):
        raise InvalidRequest("a backup needs 2 <= threshold <= shares <= 255 (e.g. 3 of 5)")
    return threshold, shares


def _check_custodians(custodians: Sequence[KemPublicKey], shares: int) -> list[KemPublicKey]:
    keys = list(custodians)
    if len(keys) != shares:
        raise InvalidRequest(f"{shares} shares need {shares} custodian keys, not {len(keys)}")
    for key in keys:
        if not isinstance(key, KemPublicKey):
            raise InvalidRequest("custodian keys are KEM public keys (X25519MLKEM768)")
        # A classical KEM would let a future quantum adversary open the shares and so the
        # backup: custodians must hold post-quantum or hybrid keys.
        if get_info(key.algorithm).family is Family.CLASSICAL:
            raise InvalidRequest(
                f"custodian key {key.algorithm} is not post-quantum: use X25519MLKEM768"
            )
    return keys


def _lookup(service: KeyService, session: Session, explicit: KeyLookup | None) -> KeyLookup:
    """The caller's checkpoint keys, else the store's own (the audit key is a managed key)."""
    return explicit if explicit is not None else service.audit_key_lookup(session)


def _checkpoint(service: KeyService, session: Session) -> bool:
    """Sign the chain head in the caller's transaction; whether a checkpoint was written."""
    return service.checkpoint_in(session) is not None


# --------------------------------------------------------------------------- create
def create_backup(
    service: KeyService,
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
    created_at = service.clock().astimezone(UTC)
    wrap_key = AESGCM(_derive(backup_key, _WRAP_LABEL, backup_id))
    sealed = (
        None
        if keys is None
        else [shamir.seal_share(share, key) for share, key in zip(split, keys, strict=True)]
    )

    with service.db.session() as session:
        # Appending first takes the audit lock (PostgreSQL advisory lock; SQLite's writer
        # lock is already held): every change that commits an audit event waits for us, so
        # what we read below is one consistent state, with this event at the chain's end.
        service.audit.append(
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
        _checkpoint(service, session)
        report = service.audit.verify(session, _lookup(service, session, audit_public_keys))
        if not report.valid and not allow_broken_audit:
            raise AuditChainBroken(
                f"the audit chain does not verify ({report.reason}); no backup was made. "
                "Investigate first; allow_broken_audit=True backs it up as it is",
                report,
            )
        tables = {
            table: _export_table(session, service, table, model, backup_id, wrap_key)
            for table, model in _TABLES
        }
        head_seq, head_hash = service.audit.head(session)
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
    service: KeyService,
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
            record["material"] = _rewrap_for_backup(service, row, backup_id, wrap_key)
        rows.append(record)
    return rows


def _rewrap_for_backup(service: KeyService, row: Any, backup_id: str, wrap_key: AESGCM) -> Any:
    """Unwrap one version under the root KEK and wrap it under the backup's key."""
    blob = row["wrapped_private"]
    if blob is None:
        return None  # destroyed: nothing to keep, and it stays destroyed
    key_id, version, algorithm = row["key_id"], row["version"], row["algorithm"]
    raw = service.keyring.unwrap(key_id, version, algorithm, bytes(blob))
    nonce = os.urandom(_NONCE_SIZE)
    sealed = wrap_key.encrypt(nonce, raw, _material_aad(backup_id, key_id, version, algorithm))
    return _b64(nonce + sealed)


def _counts(tables: dict[str, list[dict[str, Any]]]) -> BackupCounts:
    return BackupCounts(
        keys=len(tables["qrc_keys"]),
        key_versions=len(tables["qrc_key_versions"]),
        audit_events=len(tables["qrc_audit_events"]),
        audit_checkpoints=len(tables["qrc_audit_checkpoints"]),
        policies=len(tables["qrc_policies"]),
        api_clients=len(tables["qrc_api_clients"]),
        security_events=len(tables["qrc_security_events"]),
        data_index=len(tables["qrc_encrypted_data_index"]),
    )


# --------------------------------------------------------------------------- read
def read_header(data: bytes) -> BackupHeader:
    """Parse a backup's clear header (no shares needed; not yet authenticated).

    Raises:
        BackupCorrupted: not a backup, or a malformed header.
        UnsupportedBackupVersion: a backup of another format version.
    """
    data = bytes(data)
    if len(data) < 5 or data[:4] != MAGIC:
        raise BackupCorrupted("not a qrc backup file: no QRCB header")
    if data[4] != VERSION:
        raise UnsupportedBackupVersion(
            f"backup format version {data[4]} is not supported (this release reads {VERSION})"
        )
    if len(data) <= HEADER_SIZE:
        raise BackupCorrupted("truncated")
    (_, _, raw_id, micros, k, n, set_id, head_hash, events, keys, versions, checkpoints,
     policies, clients, security, index) = _HEADER.unpack_from(data)  # fmt: skip
    if not 2 <= k <= n:
        raise BackupCorrupted("threshold and share count out of range")
    try:
        created_at = _EPOCH + micros * _MICROSECOND
    except OverflowError:
        raise BackupCorrupted("creation time out of range") from None
    counts = BackupCounts(keys, versions, events, checkpoints, policies, clients, security, index)
    return BackupHeader(_ID_PREFIX + raw_id.hex(), created_at, k, n, set_id, head_hash, counts)


def _backup_key(header: BackupHeader, shares: Sequence[shamir.Share]) -> bytes:
    for share in shares:
        if not isinstance(share, shamir.Share):
            raise TypeError("restore takes Share objects (Share.from_text / open_sealed_share)")
        if share.set_id != header.set_id:
            raise shamir.ShareMismatch(
                f"{share.label} does not belong to backup {header.backup_id}, whose shares "
                f"are of set {header.set_id.hex()}"
            )
        if (share.k, share.n) != (header.threshold, header.shares):
            raise shamir.ShareMismatch(
                f"{share.label} is not a share of this backup ({header.threshold} of "
                f"{header.shares})"
            )
    secret = shamir.combine(shares)
    if len(secret) != KEY_SIZE:
        raise shamir.InvalidShare("the shares rebuild a secret that is not a backup key")
    return secret


def _open(
    data: bytes, shares: Sequence[shamir.Share]
) -> tuple[BackupHeader, dict[str, Any], bytes]:
    """Header, parsed body and backup key; every failure before shares is a clear error."""
    data = bytes(data)
    header = read_header(data)
    backup_key = _backup_key(header, shares)
    try:
        plain = open_symmetric(
            _derive(backup_key, _ENVELOPE_LABEL, header.backup_id),
            data[HEADER_SIZE:],
            context=CONTEXT + data[:HEADER_SIZE],
            algorithm=ENVELOPE_ALGORITHM,
            key_id=header.backup_id,
            key_version=1,
        )
    except (DecryptionError, CryptoError):
        raise BackupCorrupted from None
    try:
        body = json.loads(plain)
    except (ValueError, UnicodeDecodeError):
        raise BackupCorrupted("the body is not JSON") from None
    if (
        not isinstance(body, dict)
        or body.get("format") != BODY_FORMAT
        or body.get("version") != VERSION
        or body.get("backup_id") != header.backup_id
        or not isinstance(body.get("tables"), dict)
        or set(body["tables"]) != {t for t, _ in _TABLES}
        or not all(isinstance(rows, list) for rows in body["tables"].values())
    ):
        raise BackupCorrupted("the body is not a qrc-backup v1 body of this backup")
    if _counts(body["tables"]) != header.counts:
        raise BackupCorrupted("the header's counts do not match the body")
    return header, body, backup_key


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
    service: KeyService,
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
    with service.db.session() as session:
        _require_empty(session)
    header, body, backup_key = _open(data, shares)
    wrap_key = AESGCM(_derive(backup_key, _WRAP_LABEL, header.backup_id))
    tables: dict[str, list[dict[str, Any]]] = body["tables"]
    destroyed = 0
    with service.db.session() as session:
        service.audit.lock(session)  # no event is appended beside us
        _require_empty(session)
        for table, model in _TABLES:
            rows = [_decode_row(table, model, record) for record in tables[table]]
            if table == "qrc_key_versions":
                for row, record in zip(rows, tables[table], strict=True):
                    destroyed += _rewrap_for_store(service, header.backup_id, wrap_key, row, record)
            if rows:
                try:
                    session.execute(_table(model).insert(), rows)
                except SQLAlchemyError:
                    # No exception text: it would quote the rows.
                    raise BackupCorrupted(f"the store refused the rows of {table}") from None
        if not service.db.is_sqlite:
            _advance_sequences(session)
        head_seq, head_hash = service.audit.head(session)
        if head_hash != header.audit_head_hash or head_seq != body.get("audit_head_seq"):
            raise BackupCorrupted("the audit chain's head does not match the header")
        report = service.audit.verify(session, _lookup(service, session, audit_public_keys))
        if not report.valid and not allow_broken_audit:
            raise AuditChainBroken(
                f"the backup's audit chain does not verify ({report.reason}); nothing was "
                "restored. allow_broken_audit=True restores it as it is",
                report,
            )
        register_kek(session, service.keyring.current)  # the KEK everything is wrapped under now
        service.audit.append(
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
                "kek_id": service.keyring.current.kek_id,
            },
        )
        # Signed with the restored audit key, now wrapped under the target's KEK.
        _checkpoint(service, session)
    for record in tables["qrc_keys"]:
        service.forget_cached(record["id"])  # drop anything cached under these IDs
    return RestoreReport(
        backup_id=header.backup_id,
        created_at=header.created_at,
        restored_at=service.clock(),
        counts=header.counts,
        destroyed_versions=destroyed,
        audit=report,
        kek_id=service.keyring.current.kek_id,
    )


def _decode_row(table: str, model: type[Base], record: object) -> dict[str, Any]:
    columns = _columns(table, model)
    expected = {c.name for c in columns} | ({"material"} if table == "qrc_key_versions" else set())
    if not isinstance(record, dict) or set(record) != expected:
        raise BackupCorrupted(f"a row of {table} has unexpected fields")
    return {c.name: _decode_value(table, c, record[c.name]) for c in columns}


def _rewrap_for_store(
    service: KeyService, backup_id: str, wrap_key: AESGCM, row: dict[str, Any], record: Any
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
    row["wrapped_private"], row["kek_id"] = service.keyring.wrap(key_id, version, algorithm, raw)
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
