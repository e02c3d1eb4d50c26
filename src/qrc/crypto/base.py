"""The narrow interfaces every algorithm implements, one per role.

* KEM: :class:`KEM` (``generate``, ``load_private``, ``load_public``) with
  :class:`KemPublicKey.encapsulate` and :class:`KemPrivateKey.decapsulate`.
* Signature: :class:`SignatureScheme` with :class:`SigningKey.sign` and
  :class:`VerifyingKey.verify`, both with an optional context string.
* AEAD: :class:`AEAD` with ``encrypt``/``decrypt`` under a 32-byte key.

One concrete :class:`KEM` or :class:`SignatureScheme` subclass exists per parameter set
(``MLKEM768``, ``SLHDSA_SHA2_128s``...). Key objects never show their bytes in ``repr``
and refuse to be pickled: reading raw private key material takes an explicit
``private_bytes()`` call.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from typing import ClassVar, NoReturn

from qrc.crypto.errors import InvalidSignature
from qrc.crypto.registry import AlgorithmInfo, Kind, get_info

__all__ = [
    "AEAD",
    "KEM",
    "KemPrivateKey",
    "KemPublicKey",
    "SignatureScheme",
    "SigningKey",
    "VerifyingKey",
]


class _Key:
    """Common behaviour of key handles: algorithm ID, safe ``repr``, no pickling."""

    __slots__ = ()

    @property
    @abstractmethod
    def algorithm(self) -> str:
        """The registry ID of this key's algorithm."""

    @abstractmethod
    def _public_bytes_for_fingerprint(self) -> bytes: ...

    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 over the raw public key: safe to show and log."""
        return hashlib.sha256(self._public_bytes_for_fingerprint()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.algorithm} {self.fingerprint()}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} objects cannot be pickled (key material)")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self.__reduce__()


class KemPublicKey(_Key):
    """A KEM public (encapsulation) key."""

    __slots__ = ()

    @abstractmethod
    def public_bytes(self) -> bytes:
        """The standard raw encoding (FIPS 203 ``ek``, X-Wing ``pk``, ...)."""

    @abstractmethod
    def encapsulate(self) -> tuple[bytes, bytes]:
        """Return ``(ciphertext, shared_secret)``."""

    def _public_bytes_for_fingerprint(self) -> bytes:
        return self.public_bytes()


class KemPrivateKey(_Key):
    """A KEM private (decapsulation) key."""

    __slots__ = ()

    @abstractmethod
    def public_key(self) -> KemPublicKey:
        """The matching public key."""

    @abstractmethod
    def private_bytes(self) -> bytes:
        """The standard raw private encoding (a seed where the standard defines one)."""

    @abstractmethod
    def decapsulate(self, ciphertext: bytes) -> bytes:
        """Return the shared secret.

        ML-KEM uses implicit rejection: a malformed ciphertext of the right length yields a
        pseudorandom secret rather than an error. A ciphertext of the wrong length raises
        :class:`~qrc.crypto.errors.DecryptionError`.
        """

    def _public_bytes_for_fingerprint(self) -> bytes:
        return self.public_key().public_bytes()


class VerifyingKey(_Key):
    """A signature public (verification) key."""

    __slots__ = ()

    @abstractmethod
    def public_bytes(self) -> bytes:
        """The standard raw encoding of the public key."""

    @abstractmethod
    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> None:
        """Return if valid; raise :class:`~qrc.crypto.errors.InvalidSignature` otherwise."""

    def is_valid(self, signature: bytes, message: bytes, context: bytes = b"") -> bool:
        """``verify`` as a boolean."""
        try:
            self.verify(signature, message, context)
        except InvalidSignature:
            return False
        return True

    def _public_bytes_for_fingerprint(self) -> bytes:
        return self.public_bytes()


class SigningKey(_Key):
    """A signature private (signing) key."""

    __slots__ = ()

    @abstractmethod
    def public_key(self) -> VerifyingKey:
        """The matching verification key."""

    @abstractmethod
    def private_bytes(self) -> bytes:
        """The standard raw private encoding (a seed where the standard defines one)."""

    @abstractmethod
    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        """Sign ``message``, binding the optional ``context`` (at most 255 bytes).

        Raises:
            ValueError: a context was given to an algorithm that has none (Ed25519, ECDSA).
        """

    def _public_bytes_for_fingerprint(self) -> bytes:
        return self.public_key().public_bytes()


class _Scheme(ABC):
    """Common part of the per-parameter-set classes."""

    algorithm: ClassVar[str]
    kind: ClassVar[Kind]

    @property
    def info(self) -> AlgorithmInfo:
        """This algorithm's registry entry (current status included)."""
        return get_info(self.algorithm)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.algorithm}>"


class KEM(_Scheme):
    """A key encapsulation mechanism, one subclass per parameter set."""

    kind = Kind.KEM

    @abstractmethod
    def generate(self) -> KemPrivateKey:
        """A fresh key pair from the OS CSPRNG."""

    @abstractmethod
    def load_private(self, data: bytes) -> KemPrivateKey:
        """Load the raw private encoding; raises ``KeyFormatError`` if malformed."""

    @abstractmethod
    def load_public(self, data: bytes) -> KemPublicKey:
        """Load the raw public encoding; raises ``KeyFormatError`` if malformed."""


class SignatureScheme(_Scheme):
    """A signature algorithm, one subclass per parameter set."""

    kind = Kind.SIGNATURE
    supports_context: ClassVar[bool] = True

    @abstractmethod
    def generate(self) -> SigningKey:
        """A fresh key pair from the OS CSPRNG."""

    @abstractmethod
    def load_private(self, data: bytes) -> SigningKey:
        """Load the raw private encoding; raises ``KeyFormatError`` if malformed."""

    @abstractmethod
    def load_public(self, data: bytes) -> VerifyingKey:
        """Load the raw public encoding; raises ``KeyFormatError`` if malformed."""


class AEAD(_Scheme):
    """An authenticated cipher with a 32-byte key and a 12-byte nonce."""

    kind = Kind.AEAD
    key_size: ClassVar[int] = 32
    nonce_size: ClassVar[int] = 12
    tag_size: ClassVar[int] = 16

    def generate_key(self) -> bytes:
        """A fresh random key from the OS CSPRNG."""
        return os.urandom(self.key_size)

    @abstractmethod
    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext with the tag appended."""

    @abstractmethod
    def decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Return plaintext; raise ``DecryptionError`` on any failure."""
