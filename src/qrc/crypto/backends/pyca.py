"""Algorithms implemented by pyca/cryptography (which bundles OpenSSL 4).

ML-KEM-768/1024 (FIPS 203), ML-DSA-44/65/87 (FIPS 204), Ed25519 and ECDSA, and the AEADs;
the classical X25519, P-256 and P-384 as RFC 9180 DHKEMs are in
:mod:`qrc.crypto.backends.pyca_dhkem`. Raw private encodings are the
standard seeds for ML-KEM (64 bytes, d||z) and ML-DSA (32 bytes, xi), the 32-byte X25519 and
Ed25519 keys, and the big-endian scalar for the NIST curves.

Every key object keeps the pyca object it wraps (``to_pyca()``), so the envelope and key
file code can hand it to pyca's HPKE and serialisation without re-deriving the key.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qrc.crypto.base import (
    AEAD,
    KEM,
    KemPrivateKey,
    KemPublicKey,
    SignatureScheme,
    SigningKey,
    VerifyingKey,
    _Scheme,
)
from qrc.crypto.errors import DecryptionError, InvalidSignature, KeyFormatError

__all__ = [
    "AES256GCM",
    "ECDSA_P256",
    "ECDSA_P384",
    "MLDSA44",
    "MLDSA65",
    "MLDSA87",
    "MLKEM768",
    "MLKEM1024",
    "SCHEMES",
    "ChaCha20Poly1305AEAD",
    "Ed25519",
]


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def _check_length(data: bytes, expected: int, what: str) -> None:
    if len(data) != expected:
        raise KeyFormatError(f"{what} must be {expected} bytes, not {len(data)}")


# --------------------------------------------------------------------------- key classes
class PycaKemPublicKey(KemPublicKey):
    """A KEM public key backed by a pyca object; ``scheme`` does the work."""

    __slots__ = ("_key", "_raw", "_scheme")

    def __init__(self, scheme: _PycaKem, key: Any, raw: bytes) -> None:
        self._scheme, self._key, self._raw = scheme, key, raw

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_bytes(self) -> bytes:
        return self._raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        return self._scheme._encapsulate(self)

    def to_pyca(self) -> Any:
        """The wrapped pyca public key object."""
        return self._key


class PycaKemPrivateKey(KemPrivateKey):
    """A KEM private key backed by a pyca object."""

    __slots__ = ("_key", "_public", "_scheme")

    def __init__(self, scheme: _PycaKem, key: Any, public: PycaKemPublicKey) -> None:
        self._scheme, self._key, self._public = scheme, key, public

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_key(self) -> PycaKemPublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._scheme._private_raw(self._key)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        return self._scheme._decapsulate(self, bytes(ciphertext))

    def to_pyca(self) -> Any:
        """The wrapped pyca private key object."""
        return self._key


class PycaVerifyingKey(VerifyingKey):
    """A verification key backed by a pyca object."""

    __slots__ = ("_key", "_raw", "_scheme")

    def __init__(self, scheme: _PycaSignature, key: Any, raw: bytes) -> None:
        self._scheme, self._key, self._raw = scheme, key, raw

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_bytes(self) -> bytes:
        return self._raw

    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> None:
        self._scheme._verify(self._key, bytes(signature), bytes(message), bytes(context))

    def to_pyca(self) -> Any:
        """The wrapped pyca public key object."""
        return self._key


class PycaSigningKey(SigningKey):
    """A signing key backed by a pyca object."""

    __slots__ = ("_key", "_public", "_scheme")

    def __init__(self, scheme: _PycaSignature, key: Any, public: PycaVerifyingKey) -> None:
        self._scheme, self._key, self._public = scheme, key, public

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_key(self) -> PycaVerifyingKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._scheme._private_raw(self._key)

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        return self._scheme._sign(self._key, bytes(message), bytes(context))

    def to_pyca(self) -> Any:
        """The wrapped pyca private key object."""
        return self._key


# --------------------------------------------------------------------------- KEMs
class _PycaKem(KEM):
    """Shared plumbing: wrap pyca objects in our key classes."""

    private_size: ClassVar[int]
    public_size: ClassVar[int]
    ciphertext_size: ClassVar[int]

    def _wrap(self, key: Any) -> PycaKemPrivateKey:
        pub = key.public_key()
        return PycaKemPrivateKey(self, key, PycaKemPublicKey(self, pub, self._public_raw(pub)))

    def generate(self) -> PycaKemPrivateKey:
        return self._wrap(self._generate())

    def load_private(self, data: bytes) -> PycaKemPrivateKey:
        _check_length(data, self.private_size, f"{self.algorithm} private key")
        try:
            return self._wrap(self._load_private(bytes(data)))
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} private key") from None

    def load_public(self, data: bytes) -> PycaKemPublicKey:
        _check_length(data, self.public_size, f"{self.algorithm} public key")
        try:
            key = self._load_public(bytes(data))
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} public key") from None
        return PycaKemPublicKey(self, key, bytes(data))

    def _generate(self) -> Any:
        raise NotImplementedError

    def _load_private(self, data: bytes) -> Any:
        raise NotImplementedError

    def _load_public(self, data: bytes) -> Any:
        raise NotImplementedError

    def _private_raw(self, key: Any) -> bytes:
        return bytes(key.private_bytes_raw())

    def _public_raw(self, key: Any) -> bytes:
        return bytes(key.public_bytes_raw())

    def _encapsulate(self, public: PycaKemPublicKey) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def _decapsulate(self, private: PycaKemPrivateKey, ciphertext: bytes) -> bytes:
        raise NotImplementedError


class _MLKEM(_PycaKem):
    private_size = 64
    _private_cls: ClassVar[Any]
    _public_cls: ClassVar[Any]

    def _generate(self) -> Any:
        return self._private_cls.generate()

    def _load_private(self, data: bytes) -> Any:
        return self._private_cls.from_seed_bytes(data)

    def _load_public(self, data: bytes) -> Any:
        # pyca applies the FIPS 203 encapsulation-key modulus check here.
        return self._public_cls.from_public_bytes(data)

    def _encapsulate(self, public: PycaKemPublicKey) -> tuple[bytes, bytes]:
        shared, ciphertext = public.to_pyca().encapsulate()
        return bytes(ciphertext), bytes(shared)

    def _decapsulate(self, private: PycaKemPrivateKey, ciphertext: bytes) -> bytes:
        if len(ciphertext) != self.ciphertext_size:
            raise DecryptionError
        try:
            return bytes(private.to_pyca().decapsulate(ciphertext))
        except ValueError:
            raise DecryptionError from None


class MLKEM768(_MLKEM):
    """ML-KEM-768 (FIPS 203, category 3)."""

    algorithm = "ML-KEM-768"
    public_size, ciphertext_size = 1184, 1088
    _private_cls, _public_cls = mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey


class MLKEM1024(_MLKEM):
    """ML-KEM-1024 (FIPS 203, category 5)."""

    algorithm = "ML-KEM-1024"
    public_size, ciphertext_size = 1568, 1568
    _private_cls, _public_cls = mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey


# --------------------------------------------------------------------------- signatures
class _PycaSignature(SignatureScheme):
    private_size: ClassVar[int]
    public_size: ClassVar[int]

    def _wrap(self, key: Any) -> PycaSigningKey:
        pub = key.public_key()
        return PycaSigningKey(self, key, PycaVerifyingKey(self, pub, self._public_raw(pub)))

    def generate(self) -> PycaSigningKey:
        return self._wrap(self._generate())

    def load_private(self, data: bytes) -> PycaSigningKey:
        _check_length(data, self.private_size, f"{self.algorithm} private key")
        try:
            return self._wrap(self._load_private(bytes(data)))
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} private key") from None

    def load_public(self, data: bytes) -> PycaVerifyingKey:
        _check_length(data, self.public_size, f"{self.algorithm} public key")
        try:
            key = self._load_public(bytes(data))
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} public key") from None
        return PycaVerifyingKey(self, key, bytes(data))

    def _check_context(self, context: bytes) -> None:
        if context and not self.supports_context:
            raise ValueError(f"{self.algorithm} does not take a context string")
        if len(context) > 255:
            raise ValueError("a context string is at most 255 bytes")

    def _sign(self, key: Any, message: bytes, context: bytes) -> bytes:
        self._check_context(context)
        return self._sign_raw(key, message, context)

    def _verify(self, key: Any, signature: bytes, message: bytes, context: bytes) -> None:
        if len(context) > 255 or (context and not self.supports_context):
            raise InvalidSignature
        try:
            self._verify_raw(key, signature, message, context)
        except (_PycaInvalidSignature, ValueError):
            raise InvalidSignature from None

    def _generate(self) -> Any:
        raise NotImplementedError

    def _load_private(self, data: bytes) -> Any:
        raise NotImplementedError

    def _load_public(self, data: bytes) -> Any:
        raise NotImplementedError

    def _private_raw(self, key: Any) -> bytes:
        return bytes(key.private_bytes_raw())

    def _public_raw(self, key: Any) -> bytes:
        return bytes(key.public_bytes_raw())

    def _sign_raw(self, key: Any, message: bytes, context: bytes) -> bytes:
        raise NotImplementedError

    def _verify_raw(self, key: Any, signature: bytes, message: bytes, context: bytes) -> None:
        raise NotImplementedError


class _MLDSA(_PycaSignature):
    private_size = 32
    _private_cls: ClassVar[Any]
    _public_cls: ClassVar[Any]

    def _generate(self) -> Any:
        return self._private_cls.generate()

    def _load_private(self, data: bytes) -> Any:
        return self._private_cls.from_seed_bytes(data)

    def _load_public(self, data: bytes) -> Any:
        return self._public_cls.from_public_bytes(data)

    def _sign_raw(self, key: Any, message: bytes, context: bytes) -> bytes:
        # Hedged signing (fresh randomness mixed in), the FIPS 204 default.
        return bytes(key.sign(message, context or None))

    def _verify_raw(self, key: Any, signature: bytes, message: bytes, context: bytes) -> None:
        key.verify(signature, message, context or None)


class MLDSA44(_MLDSA):
    """ML-DSA-44 (FIPS 204, category 2)."""

    algorithm, public_size = "ML-DSA-44", 1312
    _private_cls, _public_cls = mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey


class MLDSA65(_MLDSA):
    """ML-DSA-65 (FIPS 204, category 3)."""

    algorithm, public_size = "ML-DSA-65", 1952
    _private_cls, _public_cls = mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey


class MLDSA87(_MLDSA):
    """ML-DSA-87 (FIPS 204, category 5)."""

    algorithm, public_size = "ML-DSA-87", 2592
    _private_cls, _public_cls = mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey


class Ed25519(_PycaSignature):
    """Ed25519 (RFC 8032, pure). Classical: for composites and inventory; no context."""

    algorithm = "Ed25519"
    supports_context = False
    private_size = public_size = 32

    def _generate(self) -> Any:
        return ed25519.Ed25519PrivateKey.generate()

    def _load_private(self, data: bytes) -> Any:
        return ed25519.Ed25519PrivateKey.from_private_bytes(data)

    def _load_public(self, data: bytes) -> Any:
        return ed25519.Ed25519PublicKey.from_public_bytes(data)

    def _sign_raw(self, key: Any, message: bytes, context: bytes) -> bytes:
        return bytes(key.sign(message))

    def _verify_raw(self, key: Any, signature: bytes, message: bytes, context: bytes) -> None:
        key.verify(signature, message)


class _ECDSA(_PycaSignature):
    """ECDSA with DER (SEC 1 / X9.62) signatures; no context."""

    supports_context = False
    curve: ClassVar[ec.EllipticCurve]
    hash_cls: ClassVar[type[hashes.HashAlgorithm]]

    def _generate(self) -> Any:
        return ec.generate_private_key(self.curve)

    def _load_private(self, data: bytes) -> Any:
        return ec.derive_private_key(int.from_bytes(data, "big"), self.curve)

    def _load_public(self, data: bytes) -> Any:
        return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, data)

    def _private_raw(self, key: Any) -> bytes:
        return _i2osp(key.private_numbers().private_value, self.private_size)

    def _public_raw(self, key: Any) -> bytes:
        return bytes(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def _sign_raw(self, key: Any, message: bytes, context: bytes) -> bytes:
        return bytes(key.sign(message, ec.ECDSA(self.hash_cls())))

    def _verify_raw(self, key: Any, signature: bytes, message: bytes, context: bytes) -> None:
        key.verify(signature, message, ec.ECDSA(self.hash_cls()))


class ECDSA_P256(_ECDSA):
    """ECDSA on P-256 with SHA-256."""

    algorithm, curve, hash_cls = "ECDSA-P256", ec.SECP256R1(), hashes.SHA256
    private_size, public_size = 32, 65


class ECDSA_P384(_ECDSA):
    """ECDSA on P-384 with SHA-384."""

    algorithm, curve, hash_cls = "ECDSA-P384", ec.SECP384R1(), hashes.SHA384
    private_size, public_size = 48, 97


# --------------------------------------------------------------------------- AEADs
class _PycaAEAD(AEAD):
    _cipher: ClassVar[Any]

    def _make(self, key: bytes) -> Any:
        if len(key) != self.key_size:
            raise KeyFormatError(f"{self.algorithm} keys are {self.key_size} bytes")
        return self._cipher(key)

    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        if len(nonce) != self.nonce_size:
            raise ValueError(f"{self.algorithm} nonces are {self.nonce_size} bytes")
        return bytes(self._make(key).encrypt(nonce, plaintext, aad))

    def decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        if len(nonce) != self.nonce_size or len(ciphertext) < self.tag_size:
            raise DecryptionError
        try:
            return bytes(self._make(key).decrypt(nonce, ciphertext, aad))
        except (InvalidTag, ValueError, KeyFormatError):
            raise DecryptionError from None


class AES256GCM(_PycaAEAD):
    """AES-256-GCM (SP 800-38D) with 96-bit nonces and 128-bit tags."""

    algorithm, _cipher = "AES-256-GCM", AESGCM


class ChaCha20Poly1305AEAD(_PycaAEAD):
    """ChaCha20-Poly1305 (RFC 8439)."""

    algorithm, _cipher = "ChaCha20-Poly1305", ChaCha20Poly1305


SCHEMES: dict[str, type[_Scheme]] = {
    cls.algorithm: cls
    for cls in (
        MLKEM768, MLKEM1024,
        MLDSA44, MLDSA65, MLDSA87, Ed25519, ECDSA_P256, ECDSA_P384,
        AES256GCM, ChaCha20Poly1305AEAD,
    )
}  # fmt: skip
