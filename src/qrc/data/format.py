"""The data envelope of ``qrc.data``: layout, parsing and the text form (``docs/formats.md``,
"Data envelope (qrc.data)").

Only bytes here: no key service, no cache. :mod:`qrc.data.sdk` gets the DEK and calls
:func:`seal_value` / :func:`open_value`.
"""

from __future__ import annotations

import binascii
import os
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qrc.crypto.errors import DecryptionError

__all__ = [
    "MAGIC",
    "MAX_CONTEXT_SIZE",
    "MAX_TEXT_SIZE",
    "MAX_WRAPPED_SIZE",
    "MIN_BODY_SIZE",
    "SUITE_AES_256_GCM",
    "TEXT_PREFIX",
    "WRAP_CONTEXT",
    "DataHeader",
    "from_text",
    "header_bytes",
    "looks_encrypted",
    "open_body",
    "open_value",
    "parse",
    "replace_wrapped",
    "seal_after_header",
    "seal_value",
    "split",
    "to_text",
]

MAGIC: Final = b"QRD\x01"
SUITE_AES_256_GCM: Final = 0x01
WRAP_CONTEXT: Final = b"qrc.data/v1 data key"
TEXT_PREFIX: Final = "qrcd1:"
MAX_KEY_ID_SIZE: Final = 255
MAX_WRAPPED_SIZE: Final = 16384
MAX_CONTEXT_SIZE: Final = 0xFFFF
MAX_VALUE_SIZE: Final = 1 << 30
DEK_SIZE: Final = 32
_NONCE: Final = 12
_TAG: Final = 16
MIN_BODY_SIZE: Final = _NONCE + _TAG
"""Bytes after the header of the shortest envelope (nonce and tag of an empty value)."""
MAX_TEXT_SIZE: Final = 2 * MAX_VALUE_SIZE
_U32 = struct.Struct(">I")
_PREFIX_LENGTH: Final = len(TEXT_PREFIX)

_U16 = struct.Struct(">H")
_VERSION_AND_LENGTH = struct.Struct(">IH")


@dataclass(frozen=True)
class DataHeader:
    """What a data envelope says about itself; ``body`` is nonce || ciphertext || tag."""

    key_id: str
    key_version: int
    wrapped_key: bytes
    body: bytes


_AAD_PREFIX: Final = MAGIC + bytes([SUITE_AES_256_GCM])


def _aad(context: bytes) -> bytes:
    if len(context) > MAX_CONTEXT_SIZE:
        raise ValueError(f"a context holds at most {MAX_CONTEXT_SIZE} bytes")
    return _AAD_PREFIX + _U32.pack(len(context)) + context


def _header(key_id: str, key_version: int, wrapped_key: bytes) -> bytes:
    raw_id = key_id.encode("ascii")
    if not 1 <= len(raw_id) <= MAX_KEY_ID_SIZE:
        raise ValueError("key ID must be 1..255 ASCII bytes")
    if not 1 <= key_version <= 0xFFFFFFFF:
        raise ValueError("key version out of range")
    if not 1 <= len(wrapped_key) <= MAX_WRAPPED_SIZE:
        raise ValueError("wrapped data key out of range")
    return b"".join(
        (
            MAGIC,
            bytes([SUITE_AES_256_GCM, len(raw_id)]),
            raw_id,
            _U32.pack(key_version),
            _U16.pack(len(wrapped_key)),
            wrapped_key,
        )
    )


def seal_value(
    cipher: AESGCM,
    plaintext: bytes,
    *,
    context: bytes,
    key_id: str,
    key_version: int,
    wrapped_key: bytes,
) -> bytes:
    """The data envelope of ``plaintext`` under the DEK behind ``cipher``."""
    header = header_bytes(key_id, key_version, wrapped_key)
    return seal_after_header(cipher, header, plaintext, context)


def header_bytes(key_id: str, key_version: int, wrapped_key: bytes) -> bytes:
    """The header every value under one wrapped DEK shares (the SDK keeps it with the DEK)."""
    return _header(key_id, key_version, wrapped_key)


def seal_after_header(cipher: AESGCM, header: bytes, plaintext: bytes, context: bytes) -> bytes:
    """``header`` (from :func:`header_bytes`), a fresh nonce, the ciphertext and tag."""
    if len(plaintext) > MAX_VALUE_SIZE:
        raise ValueError("a data envelope holds at most 1 GiB; use the age format for files")
    nonce = os.urandom(_NONCE)
    return header + nonce + cipher.encrypt(nonce, plaintext, _aad(context))


def split(data: bytes) -> tuple[bytes, int, bytes, int]:
    """(raw key ID, key version, wrapped DEK, offset of the nonce) of a data envelope;
    ``DecryptionError`` if it does not parse. Plain slicing: this runs for every value read.
    """
    size = len(data)
    if size < 6 or data[:4] != MAGIC or data[4] != SUITE_AES_256_GCM:
        raise DecryptionError
    n = data[5]
    at = 6 + n
    if n == 0 or size < at + 6:
        raise DecryptionError
    raw_id = data[6:at]
    if not raw_id.isascii():
        raise DecryptionError
    version, m = _VERSION_AND_LENGTH.unpack_from(data, at)
    at += 6
    if version == 0 or not 1 <= m <= MAX_WRAPPED_SIZE or size < at + m + _NONCE + _TAG:
        raise DecryptionError
    return raw_id, version, data[at : at + m], at + m


def parse(data: bytes) -> DataHeader:
    """The header fields of a data envelope; ``DecryptionError`` if it does not parse."""
    raw_id, version, wrapped, body = split(data)
    return DataHeader(raw_id.decode("ascii"), version, wrapped, data[body:])


def open_body(cipher: AESGCM, data: bytes, body: int, context: bytes) -> bytes:
    """The plaintext of the nonce, ciphertext and tag at ``data[body:]``."""
    if len(context) > MAX_CONTEXT_SIZE:
        raise ValueError(f"a context holds at most {MAX_CONTEXT_SIZE} bytes")
    # One join, no intermediate bytes: this runs for every value read.
    aad = b"".join((_AAD_PREFIX, _U32.pack(len(context)), context))
    at = body + _NONCE
    try:
        return cipher.decrypt(data[body:at], data[at:], aad)
    except InvalidTag:
        raise DecryptionError from None


def open_value(cipher: AESGCM, header: DataHeader, *, context: bytes) -> bytes:
    """The plaintext of a parsed envelope; ``DecryptionError`` for every failure."""
    body = header.body
    try:
        return cipher.decrypt(body[:_NONCE], body[_NONCE:], _aad(context))
    except (InvalidTag, ValueError):
        raise DecryptionError from None


def replace_wrapped(data: bytes, key_id: str, key_version: int, wrapped_key: bytes) -> bytes:
    """``data`` with a new wrapped DEK (rewrap): the value's ciphertext is kept as it is."""
    return _header(key_id, key_version, wrapped_key) + parse(data).body


def to_text(data: bytes) -> str:
    """The text form: ``qrcd1:`` and standard base64 with padding."""
    return TEXT_PREFIX + binascii.b2a_base64(data, newline=False).decode("ascii")


def from_text(text: str) -> bytes:
    """The envelope bytes of a text form; ``DecryptionError`` if it is not one."""
    if not text.startswith(TEXT_PREFIX) or len(text) > MAX_TEXT_SIZE:
        raise DecryptionError
    try:
        return binascii.a2b_base64(text[_PREFIX_LENGTH:], strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: not ASCII
        raise DecryptionError from None


def looks_encrypted(value: str | bytes, key_id: str | None = None) -> bool:
    """Whether ``value`` parses as a data envelope (text or binary), optionally under
    ``key_id``: the marker by which a value already encrypted is recognised."""
    try:
        header = parse(from_text(value) if isinstance(value, str) else value)
    except DecryptionError:
        return False
    return key_id is None or header.key_id == key_id
