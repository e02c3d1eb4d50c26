"""Signature bundles: a signature that says which algorithm and key made it.

Layout (``docs/formats.md``, "Signature bundle v1"), all integers big-endian::

    magic   4 bytes  "QRCS"
    version 1 byte   0x01
    alg_len 1 byte   1..64
    alg     alg_len  registry ID, ASCII
    key     32 bytes SHA-256 of the signer's raw public key
    sig_len 4 bytes  1..MAX_SIGNATURE
    sig     sig_len  the standard signature bytes (FIPS 204/205, composite, ...)

The caller's context is not stored: it is bound into the signature and must be given
again to verify. Any malformed bundle, wrong key or bad signature raises the one
:class:`~qrc.crypto.errors.InvalidSignature`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.errors import InvalidSignature
from qrc.crypto.registry import Kind, get_info

__all__ = ["MAX_SIGNATURE", "SignatureBundle", "parse_bundle", "sign_bundle", "verify_bundle"]

MAGIC = b"QRCS"
VERSION = 1
MAX_SIGNATURE = 1 << 20  # larger than any registry signature (SLH-DSA-256f: 49 856 bytes)


@dataclass(frozen=True)
class SignatureBundle:
    """A parsed signature bundle."""

    algorithm: str
    key_hash: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """Serialise (the layout in the module docstring)."""
        alg = self.algorithm.encode("ascii")
        return (
            MAGIC
            + bytes([VERSION, len(alg)])
            + alg
            + self.key_hash
            + struct.pack(">I", len(self.signature))
            + self.signature
        )


def _key_hash(public: VerifyingKey) -> bytes:
    return hashlib.sha256(public.public_bytes()).digest()


def sign_bundle(key: SigningKey, message: bytes, context: bytes = b"") -> bytes:
    """Sign ``message`` and return the bundle bytes."""
    signature = key.sign(message, context)
    return SignatureBundle(key.algorithm, _key_hash(key.public_key()), signature).to_bytes()


def parse_bundle(data: bytes) -> SignatureBundle:
    """Parse strictly; raise :class:`InvalidSignature` if malformed."""
    try:
        if data[:4] != MAGIC or data[4] != VERSION:
            raise ValueError
        alg_len = data[5]
        if not 1 <= alg_len <= 64:
            raise ValueError
        offset = 6 + alg_len
        algorithm = data[6:offset].decode("ascii")
        info = get_info(algorithm, Kind.SIGNATURE)
        if info.id != algorithm:  # exact spelling: no second encoding of the same bundle
            raise ValueError
        key_hash = data[offset : offset + 32]
        (sig_len,) = struct.unpack(">I", data[offset + 32 : offset + 36])
        signature = data[offset + 36 :]
        if len(key_hash) != 32 or not 1 <= sig_len <= MAX_SIGNATURE or len(signature) != sig_len:
            raise ValueError
    except Exception:
        raise InvalidSignature from None
    return SignatureBundle(info.id, bytes(key_hash), bytes(signature))


def verify_bundle(
    public: VerifyingKey, bundle: bytes, message: bytes, context: bytes = b""
) -> None:
    """Verify a bundle made by :func:`sign_bundle`; raise :class:`InvalidSignature` if not valid."""
    parsed = parse_bundle(bundle)
    if parsed.algorithm != public.algorithm or not hmac.compare_digest(
        parsed.key_hash, _key_hash(public)
    ):
        raise InvalidSignature
    public.verify(parsed.signature, message, context)
