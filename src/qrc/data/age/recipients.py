"""age's native recipients and identities: mlkem768x25519 (post-quantum), X25519, scrypt.

Two narrow interfaces carry every key type, as in age: a :class:`Recipient` wraps a file
key into stanzas, an :class:`Identity` unwraps one from a header's stanzas. An identity
returns ``None`` when no stanza is addressed to it and raises :class:`HeaderFailure`
when a stanza of its type is malformed (the spec's "MUST reject").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from qrc.crypto.errors import DecryptionError, KeyFormatError
from qrc.crypto.hpke_suite import Suite, hpke_seal, key_schedule
from qrc.crypto.hybrid import HybridPrivateKey, HybridPublicKey, XWing
from qrc.data.age import bech32
from qrc.data.age.errors import HeaderFailure
from qrc.data.age.header import Stanza, b64decode, b64encode, hkdf_sha256

__all__ = [
    "DEFAULT_WORK_FACTOR",
    "FILE_KEY_SIZE",
    "MAX_WORK_FACTOR",
    "POSTQUANTUM",
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "Recipient",
    "ScryptIdentity",
    "ScryptRecipient",
    "X25519Identity",
    "X25519Recipient",
]

FILE_KEY_SIZE = 16
_WRAPPED = FILE_KEY_SIZE + 16
_ZERO_NONCE = bytes(12)
# The label of recipients that resist a quantum computer (age 1.3 and the plugin spec).
POSTQUANTUM = "postquantum"


@runtime_checkable
class Recipient(Protocol):
    """Wraps file keys (``Recipient.Wrap`` in age)."""

    def wrap(self, file_key: bytes) -> list[Stanza]:
        """Stanzas that carry ``file_key`` to this recipient."""
        ...

    @property
    def labels(self) -> frozenset[str]:
        """Recipients of one file must share their labels (see :func:`check_labels`)."""
        ...


@runtime_checkable
class Identity(Protocol):
    """Unwraps file keys (``Identity.Unwrap`` in age)."""

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key from a stanza addressed to this identity, or ``None``.

        Raises:
            HeaderFailure: a stanza of this identity's type is malformed.
        """
        ...


def _seal_file_key(key: bytes, file_key: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)


def _open_file_key(key: bytes, body: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def _bech32_key(text: str, hrp: str, size: int, what: str) -> bytes:
    try:
        found, data = bech32.decode(text)
    except bech32.Bech32Error as exc:
        raise KeyFormatError(f"malformed {what}: {exc}") from None
    if found != hrp.lower() or len(data) != size:
        raise KeyFormatError(f"not an {what}")
    return data


# --------------------------------------------------------------------------- X25519
_X25519_INFO = b"age-encryption.org/v1/X25519"
_X25519_HRP, _X25519_SECRET_HRP = "age", "AGE-SECRET-KEY-"


class X25519Recipient:
    """An ``age1...`` recipient."""

    labels: frozenset[str] = frozenset()

    def __init__(self, public: bytes) -> None:
        self._public = x25519.X25519PublicKey.from_public_bytes(public)
        self.public_bytes = bytes(public)

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        """From its ``age1`` string."""
        return cls(_bech32_key(text, _X25519_HRP, 32, "X25519 age recipient"))

    def __str__(self) -> str:
        return bech32.encode(_X25519_HRP, self.public_bytes)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        ephemeral = x25519.X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        secret = ephemeral.exchange(self._public)  # pyca refuses an all-zero result
        key = hkdf_sha256(secret, share + self.public_bytes, _X25519_INFO)
        return [Stanza("X25519", (b64encode(share),), _seal_file_key(key, file_key))]


class X25519Identity:
    """An ``AGE-SECRET-KEY-1...`` identity."""

    def __init__(self, secret: bytes) -> None:
        self._private = x25519.X25519PrivateKey.from_private_bytes(secret)
        self._public = self._private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> X25519Identity:
        """A new random identity."""
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        """From its ``AGE-SECRET-KEY-1`` string."""
        return cls(_bech32_key(text, _X25519_SECRET_HRP, 32, "X25519 age identity"))

    def __str__(self) -> str:
        return bech32.encode(_X25519_SECRET_HRP, self._private.private_bytes_raw()).upper()

    def __repr__(self) -> str:
        return f"X25519Identity({self.recipient()})"

    def recipient(self) -> X25519Recipient:
        """The matching recipient."""
        return X25519Recipient(self._public)

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != "X25519":
                continue
            if len(stanza.args) != 1 or len(stanza.body) != _WRAPPED:
                raise HeaderFailure
            share = b64decode(stanza.args[0])
            if len(share) != 32:
                raise HeaderFailure
            try:
                secret = self._private.exchange(x25519.X25519PublicKey.from_public_bytes(share))
            except ValueError:  # the all-zero shared secret of a low-order share: abort
                raise HeaderFailure from None
            key = hkdf_sha256(secret, share + self._public, _X25519_INFO)
            file_key = _open_file_key(key, stanza.body)
            if file_key is not None:
                return file_key
        return None


# --------------------------------------------------------------------------- mlkem768x25519
_HYBRID_INFO = b"age-encryption.org/mlkem768x25519"
_HYBRID_HRP, _HYBRID_SECRET_HRP = "age1pq", "AGE-SECRET-KEY-PQ-"
# HPKE MLKEM768-X25519, HKDF-SHA256, ChaCha20Poly1305
_HYBRID_SUITE = Suite(0x647A, 0x0001, 0x0003)
_HYBRID_ENC = 1120
_HYBRID_PUBLIC = 1216


class HybridRecipient:
    """An ``age1pq1...`` recipient: HPKE MLKEM768-X25519 (X-Wing), age 1.3."""

    labels = frozenset({POSTQUANTUM})

    def __init__(self, public: bytes) -> None:
        self._public: HybridPublicKey = XWing().load_public(public)

    @classmethod
    def parse(cls, text: str) -> HybridRecipient:
        """From its ``age1pq1`` string."""
        return cls(_bech32_key(text, _HYBRID_HRP, _HYBRID_PUBLIC, "age1pq recipient"))

    def __str__(self) -> str:
        return bech32.encode(_HYBRID_HRP, self._public.public_bytes())

    def wrap(self, file_key: bytes) -> list[Stanza]:
        sealed = hpke_seal(_HYBRID_SUITE, self._public, file_key, _HYBRID_INFO)
        enc, body = sealed[:_HYBRID_ENC], sealed[_HYBRID_ENC:]
        return [Stanza("mlkem768x25519", (b64encode(enc),), body)]


class HybridIdentity:
    """An ``AGE-SECRET-KEY-PQ-1...`` identity (a 32-byte X-Wing seed)."""

    def __init__(self, seed: bytes) -> None:
        self._private: HybridPrivateKey = XWing().load_private(seed)

    @classmethod
    def generate(cls) -> HybridIdentity:
        """A new random identity."""
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> HybridIdentity:
        """From its ``AGE-SECRET-KEY-PQ-1`` string."""
        return cls(_bech32_key(text, _HYBRID_SECRET_HRP, 32, "post-quantum age identity"))

    def __str__(self) -> str:
        return bech32.encode(_HYBRID_SECRET_HRP, self._private.private_bytes()).upper()

    def __repr__(self) -> str:
        fingerprint = hashlib.sha256(self._private.public_key().public_bytes()).hexdigest()
        return f"HybridIdentity(sha256:{fingerprint[:16]})"

    def recipient(self) -> HybridRecipient:
        """The matching recipient."""
        return HybridRecipient(self._private.public_key().public_bytes())

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != "mlkem768x25519":
                continue
            if len(stanza.args) != 1 or len(stanza.body) != _WRAPPED:
                raise HeaderFailure
            enc = b64decode(stanza.args[0])
            if len(enc) != _HYBRID_ENC:
                raise HeaderFailure
            try:
                # ML-KEM rejects implicitly; only an X25519 share of low order fails here.
                shared = self._private.decapsulate(enc)
            except DecryptionError:
                raise HeaderFailure from None
            key, nonce = key_schedule(_HYBRID_SUITE, shared, _HYBRID_INFO)
            try:
                return ChaCha20Poly1305(key).decrypt(nonce, stanza.body, None)
            except InvalidTag:
                continue
        return None


# --------------------------------------------------------------------------- scrypt
_SCRYPT_SALT_LABEL = b"age-encryption.org/v1/scrypt"
DEFAULT_WORK_FACTOR = 18  # age's default: about a second on a laptop
MAX_WORK_FACTOR = 22  # age's default limit when decrypting


def _scrypt(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        passphrase,
        salt=_SCRYPT_SALT_LABEL + salt,
        n=n,
        r=8,
        p=1,
        dklen=32,
        maxmem=128 * 8 * n + (1 << 20),
    )


class ScryptRecipient:
    """A passphrase. It must be the only recipient of a file."""

    def __init__(self, passphrase: bytes, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        if not passphrase:
            raise ValueError("empty passphrase")
        if not 1 <= work_factor <= MAX_WORK_FACTOR:
            raise ValueError(f"scrypt work factor must be 1..{MAX_WORK_FACTOR}")
        self._passphrase, self._work_factor = passphrase, work_factor
        # A label no other recipient has: scrypt stanzas mix with nothing.
        self.labels = frozenset({os.urandom(16).hex()})

    def wrap(self, file_key: bytes) -> list[Stanza]:
        salt = os.urandom(16)
        key = _scrypt(self._passphrase, salt, self._work_factor)
        body = _seal_file_key(key, file_key)
        return [Stanza("scrypt", (b64encode(salt), str(self._work_factor)), body)]


class ScryptIdentity:
    """A passphrase to try on ``scrypt`` stanzas, with a ceiling on the work factor."""

    def __init__(self, passphrase: bytes, max_work_factor: int = MAX_WORK_FACTOR) -> None:
        self._passphrase, self._max = passphrase, max_work_factor

    def __repr__(self) -> str:
        return "ScryptIdentity(<passphrase>)"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != "scrypt":
                continue
            if len(stanza.args) != 2 or len(stanza.body) != _WRAPPED:
                raise HeaderFailure
            salt, factor = b64decode(stanza.args[0]), stanza.args[1]
            if len(salt) != 16 or not factor.isascii() or not factor.isdigit():
                raise HeaderFailure
            if factor.startswith("0") or len(factor) > 2 or not 0 < int(factor) <= self._max:
                raise HeaderFailure
            key = _scrypt(self._passphrase, salt, int(factor))
            file_key = _open_file_key(key, stanza.body)
            if file_key is not None:
                return file_key
        return None
