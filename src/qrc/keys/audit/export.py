"""Exporting the audit chain as JSON lines, and verifying such an export offline.

The format is ``docs/formats.md``, "Audit checkpoint v1" > "Export (JSON lines)";
:func:`verify_export` reads it one line at a time (constant memory) and checks it with the
same verifier as the store.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final

from qrc.crypto.base import VerifyingKey
from qrc.crypto.keyfile import load_public_pem
from qrc.crypto.registry import Kind
from qrc.keys.audit.anchor import PinnedKey, anchor_fingerprint, parse_pinned, pinned_line
from qrc.keys.audit.format import AuditError, InvalidAuditEvent, format_time, parse_time
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

__all__ = ["EXPORT_FORMAT", "ExportedKey", "verify_export", "write_export"]


@dataclass(frozen=True)
class ExportedKey:
    """A pinned audit key carried by a v2 export (trusted only through its fingerprint)."""

    key_id: str
    version: int
    public: VerifyingKey


EXPORT_FORMAT: Final = "qrc-audit-export"
MAX_EXPORT_LINE = 256 * 1024

_HEX32 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- writing
def write_export(
    fp: IO[str],
    items: Iterable[ChainEvent | ChainCheckpoint],
    audit_keys: Mapping[PinnedKey, VerifyingKey] | None = None,
) -> int:
    """Write the header, the pinned ``audit_keys`` (v2) and ``items`` (in chain order) as JSON
    lines; return the line count."""
    fp.write(_export_line({"format": EXPORT_FORMAT, "version": 2 if audit_keys else 1}))
    lines = 1
    for (key_id, version), public in sorted((audit_keys or {}).items()):
        pinned = json.loads(pinned_line(key_id, version, public))
        fp.write(_export_line({"type": "audit_key", **pinned}))
        lines += 1
    for item in items:
        if isinstance(item, ChainEvent):
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


def _export_line(record: Mapping[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------- reading
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
        return parse_time(_str_field(record, name))
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


def _parse_export(
    lines: Iterable[str | bytes],
) -> Iterator[ChainEvent | ChainCheckpoint | ExportedKey]:
    number = 0
    version = 0
    chain_started = False
    for line in lines:
        number += 1
        if not line.strip():
            continue
        record = _parse_line(line, number)
        if not version:
            if (
                record
                not in (
                    {"format": EXPORT_FORMAT, "version": 1},
                    {"format": EXPORT_FORMAT, "version": 2},
                )
                or type(record["version"]) is not int
            ):
                raise _BadLine("line 1 is not a qrc-audit-export v1 or v2 header")
            version = record["version"]
            continue
        kind = record.get("type")
        if kind == "audit_key":
            if version < 2 or chain_started:
                raise _BadLine(f"line {number}: an audit key where none may be")
            body = {k: v for k, v in record.items() if k != "type"}
            try:
                key_id, key_version, public = parse_pinned(
                    json.dumps(body).encode("ascii"), f"line {number}"
                )
            except (AuditError, UnicodeEncodeError) as exc:
                raise _BadLine(str(exc)) from None
            yield ExportedKey(key_id, key_version, public)
            continue
        chain_started = True
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
                yield ChainEvent(
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
                yield ChainCheckpoint(
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
    if not version:
        raise _BadLine("the export is empty")


def verify_export(
    lines: Iterable[str | bytes],
    public_key: VerifyingKey | bytes | str | KeyLookup | None = None,
    *,
    anchor_sha256: str | None = None,
) -> VerificationReport:
    """Verify an :meth:`AuditLog.export` offline, one line at a time.

    The trusted keys come from the caller, never from the export alone: ``public_key`` is
    the service's audit verifying key (a key object or its SPKI PEM, as
    ``qrc.crypto.keyfile.public_key_to_pem`` writes it), which must have signed every
    checkpoint, or a lookup by ``(signer_key_id, signer_key_version)`` as for
    :meth:`AuditLog.verify`; or ``anchor_sha256``, the fingerprint (told out of band) of the
    pinned keys a v2 export carries, which are then trusted if and only if they match it.
    A malformed export is reported as invalid, never raised.
    """
    if (public_key is None) == (anchor_sha256 is None):
        raise AuditError("give the trusted keys: a public key (or lookup) or an anchor fingerprint")
    if public_key is None:
        return _verify_with_fingerprint(lines, (anchor_sha256 or "").strip().lower())
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
        lookup = lookup_from(public_key)
    verifier = ChainVerifier(lookup)
    chain = (item for item in _parse_export(lines) if not isinstance(item, ExportedKey))
    try:
        return run_verifier(verifier, chain)
    except _BadLine as exc:
        return verifier.report(ChainBroken(None, f"malformed export: {exc}"))


def _verify_with_fingerprint(lines: Iterable[str | bytes], expected: str) -> VerificationReport:
    exported: dict[PinnedKey, VerifyingKey] = {}
    checked = False

    def lookup(key_id: str, version: int) -> VerifyingKey | None:
        return exported.get((key_id, version))

    verifier = ChainVerifier(lookup)

    def chain() -> Iterator[ChainEvent | ChainCheckpoint]:
        nonlocal checked
        for item in _parse_export(lines):
            if isinstance(item, ExportedKey):
                exported[(item.key_id, item.version)] = item.public
                continue
            if not checked:
                if not hmac.compare_digest(anchor_fingerprint(exported), expected):
                    raise _BadLine("its audit keys do not match the anchor fingerprint given")
                checked = True
            yield item

    try:
        return run_verifier(verifier, chain())
    except _BadLine as exc:
        return verifier.report(ChainBroken(None, f"malformed export: {exc}"))
