"""Wrapped key v1: the blob every custody returns from ``wrap`` (``docs/formats.md``).

Layout::

    "QRCW" || 0x01 || len8(kek_id) || nonce(12) || AES-256-GCM ciphertext || tag(16)

The header (magic, version, ``len8(kek_id)``) is self-delimiting, so the GCM associated data
``header || aad`` unambiguously binds the KEK ID and the caller's context (key ID, version,
algorithm). The blob names its KEK so that KEK rotation can find what still needs rewrapping
without trying to decrypt anything.

Every parsing or authentication failure raises the one opaque :class:`UnwrapError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qrc.keys.custody.base import UnwrapError

__all__ = [
    "MAGIC",
    "MAX_KEK_ID_SIZE",
    "MAX_PLAINTEXT_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "VERSION",
    "WrappedKey",
    "aesgcm_unwrap",
    "aesgcm_wrap",
    "blob_kek_id",
    "build_blob",
    "encode_header",
    "gcm_aad",
    "parse_blob",
    "validate_kek_id",
]

MAGIC = b"QRCW"
VERSION = 0x01
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_KEK_ID_SIZE = 255
# Private keys are at most a few tens of KiB (Classic McEliece ~14 KB); 1 MiB leaves room for
# PKCS#8 wrappers while keeping a hostile blob from costing real memory or HSM time.
MAX_PLAINTEXT_SIZE = 1 << 20
_MIN_HEADER = len(MAGIC) + 2
_MAX_BLOB = _MIN_HEADER + MAX_KEK_ID_SIZE + NONCE_SIZE + MAX_PLAINTEXT_SIZE + TAG_SIZE


@dataclass(frozen=True)
class WrappedKey:
    """A parsed blob. Unauthenticated until a custody unwraps it."""

    kek_id: str
    header: bytes
    nonce: bytes
    ciphertext: bytes  # includes the 16-byte GCM tag at the end


def validate_kek_id(kek_id: str) -> bytes:
    """Return the KEK ID's bytes; it must be 1..255 printable ASCII characters, no spaces.

    Raises:
        ValueError: the ID cannot be written into a blob.
    """
    if not isinstance(kek_id, str):
        raise TypeError("kek_id must be a str")
    # isascii first: encoding with errors="replace" would turn "é" into a printable "?".
    raw = kek_id.encode("ascii") if kek_id.isascii() else b""
    if not 1 <= len(raw) <= MAX_KEK_ID_SIZE or not _is_printable(raw):
        raise ValueError("kek_id must be 1..255 printable ASCII characters without spaces")
    return raw


def _is_printable(raw: bytes) -> bool:
    return all(0x21 <= byte <= 0x7E for byte in raw)


def encode_header(kek_id: str) -> bytes:
    """The blob header for ``kek_id``: magic, version, ``len8(kek_id)``."""
    raw = validate_kek_id(kek_id)
    return MAGIC + bytes([VERSION, len(raw)]) + raw


def gcm_aad(header: bytes, aad: bytes) -> bytes:
    """The GCM associated data: ``header || aad`` (unambiguous, the header self-delimits)."""
    return header + aad


def build_blob(header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """Assemble a blob from its parts (ciphertext includes the tag)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    if not TAG_SIZE <= len(ciphertext) <= MAX_PLAINTEXT_SIZE + TAG_SIZE:
        raise ValueError("ciphertext length out of range")
    return header + nonce + ciphertext


def parse_blob(blob: bytes) -> WrappedKey:
    """Parse a Wrapped key v1 blob strictly; every failure raises :class:`UnwrapError`."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise UnwrapError
    data = bytes(blob)
    # Bound the whole blob before looking inside it.
    if not _MIN_HEADER + 1 + NONCE_SIZE + TAG_SIZE <= len(data) <= _MAX_BLOB:
        raise UnwrapError
    if data[:4] != MAGIC or data[4] != VERSION:
        raise UnwrapError
    id_len = data[5]
    header_end = _MIN_HEADER + id_len
    if id_len == 0 or len(data) - header_end < NONCE_SIZE + TAG_SIZE:
        raise UnwrapError
    raw_id = data[_MIN_HEADER:header_end]
    if not _is_printable(raw_id):
        raise UnwrapError
    ciphertext = data[header_end + NONCE_SIZE :]
    if len(ciphertext) > MAX_PLAINTEXT_SIZE + TAG_SIZE:
        raise UnwrapError
    # No length field for the ciphertext: it runs to the end, so appended or removed bytes
    # fail GCM authentication rather than being silently ignored.
    return WrappedKey(
        kek_id=raw_id.decode("ascii"),
        header=data[:header_end],
        nonce=data[header_end : header_end + NONCE_SIZE],
        ciphertext=ciphertext,
    )


def blob_kek_id(blob: bytes) -> str:
    """The KEK ID a blob names (unauthenticated; for finding blobs to rewrap).

    Raises:
        UnwrapError: not a Wrapped key v1 blob.
    """
    return parse_blob(blob).kek_id


def _check_plaintext(plaintext: bytes) -> bytes:
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TypeError("plaintext must be bytes")
    data = bytes(plaintext)
    if len(data) > MAX_PLAINTEXT_SIZE:
        raise ValueError("plaintext larger than the 1 MiB a wrapped key may hold")
    return data


def _check_aad(aad: bytes) -> bytes:
    if not isinstance(aad, bytes | bytearray | memoryview):
        raise TypeError("aad must be bytes")
    return bytes(aad)


def aesgcm_wrap(kek: AESGCM, kek_id: str, plaintext: bytes, aad: bytes) -> bytes:
    """Wrap with an in-process AES-256-GCM KEK (local custody)."""
    data = _check_plaintext(plaintext)
    header = encode_header(kek_id)
    # A random 96-bit nonce per wrap: SP 800-38D §8.3 allows 2^32 wraps per KEK, far more
    # than a key store holds between KEK rotations.
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = kek.encrypt(nonce, data, gcm_aad(header, _check_aad(aad)))
    return build_blob(header, nonce, ciphertext)


def aesgcm_unwrap(kek: AESGCM, kek_id: str, blob: bytes, aad: bytes) -> bytes:
    """Unwrap with an in-process AES-256-GCM KEK; every failure is :class:`UnwrapError`."""
    parsed = parse_blob(blob)
    context = _check_aad(aad)
    # Checked before decrypting so that a blob of another KEK fails fast; the header is in
    # the AAD anyway, so this is not what makes the binding hold.
    if parsed.kek_id != kek_id:
        raise UnwrapError
    try:
        return kek.decrypt(parsed.nonce, parsed.ciphertext, gcm_aad(parsed.header, context))
    except InvalidTag:
        raise UnwrapError from None
