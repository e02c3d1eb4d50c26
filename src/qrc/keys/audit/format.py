"""The audit log's byte formats: canonical events, their hashes, and checkpoint messages.

Also the validation of every event field and detail (the allowlist that keeps secrets out of
the log) and the errors of the audit package. Byte formats: ``docs/formats.md``, "Audit event
v1" and "Audit checkpoint v1".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, TypeAlias

__all__ = [
    "CHECKPOINT_CONTEXT",
    "GENESIS_HASH",
    "AuditError",
    "AuditWriteError",
    "DetailValue",
    "InvalidAuditEvent",
    "InvalidAuditQuery",
    "Scalar",
    "canonical_event",
    "checkpoint_message",
    "event_hash",
    "event_mac",
    "format_time",
    "parse_time",
    "validate_details",
]

EVENT_TAG: Final = b"qrc-audit-event-v1\x00"
CHECKPOINT_TAG: Final = b"qrc-audit-checkpoint-v1\x00"
MAC_TAG: Final = b"qrc-audit-mac-v1\x00"
#: The signature context (FIPS 204 ``ctx``) of every checkpoint signature.
CHECKPOINT_CONTEXT: Final = b"qrc-audit-checkpoint"
#: The ``prev_hash`` of event 1.
GENESIS_HASH: Final = bytes(32)

_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,59}")
_RESULT = re.compile(r"[a-z][a-z0-9_]{0,19}")
_ALGORITHM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z")
# Detail names that suggest a caller is about to log a secret rather than an ID.
_SECRET_WORDS = ("secret", "password", "passphrase", "plaintext", "private")

MAX_ACTOR = 200
MAX_DETAIL_KEYS = 32
MAX_DETAIL_STRING = 512
MAX_DETAIL_LIST = 32
MAX_DETAILS_BYTES = 4096
MAX_INT = 2**53 - 1  # exactly representable in every JSON reader (RFC 8785, I-JSON)
MAX_KEY_VERSION = 2**31 - 1

Scalar: TypeAlias = str | int | bool | None
DetailValue: TypeAlias = Scalar | list[Scalar]


class AuditError(Exception):
    """Base class of audit log errors."""


class InvalidAuditEvent(AuditError, ValueError):
    """An event field or detail is not allowed (wrong type, too long, bytes, secret-like)."""


class InvalidAuditQuery(AuditError, ValueError):
    """A query argument (cursor, limit, time bound) is not valid."""


class AuditWriteError(AuditError):
    """The audit event could not be written; the caller's transaction must not commit."""


# --------------------------------------------------------------------------- encoding
def format_time(at: datetime) -> str:
    """RFC 3339 UTC with exactly six fractional digits: ``2025-01-31T12:00:00.000000Z``."""
    if at.tzinfo is None:
        raise InvalidAuditEvent("audit times must be timezone-aware")
    t = at.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
    )


def parse_time(text: str) -> datetime:
    """Parse what :func:`format_time` writes (and nothing else)."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise InvalidAuditEvent("time is not RFC 3339 UTC with microseconds")
    try:
        year, month, day, hour, minute, second, micro = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as exc:
        raise InvalidAuditEvent("time out of range") from exc


def _check_text(name: str, value: object, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidAuditEvent(f"{name} must be a string")
    if not 0 < len(value) <= max_chars:
        raise InvalidAuditEvent(f"{name} must be 1..{max_chars} characters")
    for ch in value:
        code = ord(ch)
        # C0/C1 controls and lone surrogates have no place in IDs and would make the
        # canonical JSON escape-dependent (or not UTF-8 at all).
        if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF:
            raise InvalidAuditEvent(f"{name} contains a control or surrogate character")
    return value


def _check_pattern(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidAuditEvent(f"{name} must match {pattern.pattern}")
    return value


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidAuditEvent(f"{name} must be an integer in {low}..{high}")
    return value


def _check_scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _check_int(name, value, -MAX_INT, MAX_INT)
    if isinstance(value, str):
        if len(value) > MAX_DETAIL_STRING:
            raise InvalidAuditEvent(f"{name} is longer than {MAX_DETAIL_STRING} characters")
        return _check_text(name, value, MAX_DETAIL_STRING) if value else value
    if isinstance(value, bytes | bytearray | memoryview):
        raise InvalidAuditEvent(f"{name}: audit details never carry bytes; pass IDs, not data")
    raise InvalidAuditEvent(
        f"{name}: {type(value).__name__} is not an allowed audit detail type "
        "(str, int, bool, None, or a list of those)"
    )


def validate_details(details: Mapping[str, object] | None) -> dict[str, DetailValue]:
    """Check ``details`` against the allowlist and return a normalised copy.

    Allowed: up to 32 names matching ``[a-z][a-z0-9_]{0,63}`` (none containing ``secret``,
    ``password``, ``passphrase``, ``plaintext`` or ``private``), each mapped to a string of
    at most 512 characters, an integer of magnitude below 2^53, a boolean, null, or a list of
    at most 32 such scalars; at most 4096 bytes once encoded.

    Raises:
        InvalidAuditEvent: anything else, notably any ``bytes`` value.
    """
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise InvalidAuditEvent("details must be a mapping")
    if len(details) > MAX_DETAIL_KEYS:
        raise InvalidAuditEvent(f"details has more than {MAX_DETAIL_KEYS} entries")
    clean: dict[str, DetailValue] = {}
    for name, value in details.items():
        _check_pattern("detail name", name, _DETAIL_KEY)
        if any(word in name for word in _SECRET_WORDS):
            raise InvalidAuditEvent(f"detail name {name!r} suggests secret material")
        if isinstance(value, list | tuple):
            if len(value) > MAX_DETAIL_LIST:
                raise InvalidAuditEvent(f"details[{name}] has more than {MAX_DETAIL_LIST} items")
            clean[name] = [_check_scalar(f"details[{name}]", item) for item in value]
        else:
            clean[name] = _check_scalar(f"details[{name}]", value)
    if len(_json(clean)) > MAX_DETAILS_BYTES:
        raise InvalidAuditEvent(f"details are larger than {MAX_DETAILS_BYTES} bytes")
    return clean


def _json(value: object) -> bytes:
    # For the value domain the validators allow (ASCII names, ints below 2^53, strings
    # without control characters) this is exactly RFC 8785: sorted keys, no whitespace,
    # UTF-8, only '"' and '\' escaped.
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def canonical_event(
    *,
    seq: int,
    at: datetime,
    event_type: str,
    actor: str,
    result: str,
    key_id: str | None = None,
    key_version: int | None = None,
    algorithm: str | None = None,
    details: Mapping[str, object] | None = None,
) -> bytes:
    """The canonical encoding of one event (``docs/formats.md``, "Audit event v1").

    Raises:
        InvalidAuditEvent: a field is not allowed.
    """
    record = {
        "v": 1,
        "seq": _check_int("seq", seq, 1, 2**63 - 1),
        "at": format_time(at),
        "event_type": _check_pattern("event_type", event_type, _EVENT_TYPE),
        "actor": _check_text("actor", actor, MAX_ACTOR),
        "result": _check_pattern("result", result, _RESULT),
        "key_id": None if key_id is None else _check_pattern("key_id", key_id, _KEY_ID),
        "key_version": (
            None
            if key_version is None
            else _check_int("key_version", key_version, 0, MAX_KEY_VERSION)
        ),
        "algorithm": (
            None if algorithm is None else _check_pattern("algorithm", algorithm, _ALGORITHM)
        ),
        "details": validate_details(details),
    }
    return _json(record)


def event_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """``SHA-256("qrc-audit-event-v1" || 0x00 || prev_hash || canonical)``."""
    if len(prev_hash) != 32:
        raise InvalidAuditEvent("prev_hash must be 32 bytes")
    return hashlib.sha256(EVENT_TAG + prev_hash + canonical).digest()


def event_mac(key: bytes, hash_: bytes) -> bytes:
    """``HMAC-SHA256(key, "qrc-audit-mac-v1" || 0x00 || event hash)``: the service wrote it."""
    return hmac.new(key, MAC_TAG + hash_, hashlib.sha256).digest()


def _len8(data: bytes) -> bytes:
    if not 0 < len(data) <= 255:
        raise InvalidAuditEvent("checkpoint field length out of range")
    return bytes([len(data)]) + data


def checkpoint_message(
    *,
    seq: int,
    head_hash: bytes,
    at: datetime,
    algorithm: str,
    signer_key_id: str,
    signer_key_version: int,
) -> bytes:
    """The bytes a checkpoint signs (``docs/formats.md``, "Audit checkpoint v1")."""
    if len(head_hash) != 32:
        raise InvalidAuditEvent("head_hash must be 32 bytes")
    return b"".join(
        (
            CHECKPOINT_TAG,
            struct.pack(">Q", _check_int("seq", seq, 0, 2**63 - 1)),
            head_hash,
            _len8(format_time(at).encode("ascii")),
            _len8(_check_pattern("algorithm", algorithm, _ALGORITHM).encode("ascii")),
            _len8(_check_pattern("signer_key_id", signer_key_id, _KEY_ID).encode("ascii")),
            struct.pack(">I", _check_int("signer_key_version", signer_key_version, 0, 2**32 - 1)),
        )
    )
