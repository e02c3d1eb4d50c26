"""The backup file: layout, header, errors, row encoding, opening with shares.

A backup (``docs/formats.md``, "Backup v1") holds every key with its versions, policies, API
clients (token hashes only), security events, the encrypted data index and the whole audit
chain with its checkpoints. Layout::

    header (115 bytes, clear) || Envelope v1 (AES-256-GCM, key ID = backup ID,
                                              context = "qrc-backup-v1" || header)

The body is canonical JSON. A fresh random 256-bit backup key is split into Shamir shares
(:mod:`qrc.crypto.shamir`, optionally sealed to custodians); two keys are derived from it with
HKDF-SHA256: one seals the body, the other rewraps every private key version (AES-256-GCM,
bound to backup ID, key ID, version and algorithm). The backup therefore needs neither the
store's root KEK nor its HSM: restore rewraps every version under the target's current KEK.
Unwrapped material exists only in memory, one version at a time, while it is rewrapped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import JSON, Boolean, Integer, LargeBinary, String, Table

from qrc.crypto import shamir
from qrc.crypto.base import KemPublicKey
from qrc.crypto.envelope import open_symmetric
from qrc.crypto.errors import CryptoError, DecryptionError
from qrc.crypto.registry import Family, get_info
from qrc.keys.audit.log import VerificationReport, format_time
from qrc.keys.custody.keyring import key_aad
from qrc.keys.errors import InvalidRequest, KeyServiceError
from qrc.keys.store.db import Base, UTCDateTime
from qrc.keys.store.models import (
    ApiClient,
    AuditCheckpoint,
    AuditEvent,
    EncryptedDataIndex,
    Key,
    KeyVersion,
    Policy,
    SecurityEvent,
)

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
    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise BackupCorrupted(f"{where} is not a boolean")
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
