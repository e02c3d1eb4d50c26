"""Composite ML-DSA signatures (draft-ietf-lamps-pq-composite-sigs).

A composite key is an ML-DSA key and a traditional key (Ed25519 or ECDSA) used as one: a
signature is valid only if both component signatures are. Both components sign the
message representative

    M' = Prefix || Label || len(ctx) || ctx || SHA-512(M)

where ``Prefix`` is ``"CompositeAlgorithmSignatures2025"``, ``Label`` names the composite
(``"COMPSIG-MLDSA65-Ed25519-SHA512"``...) and ``len(ctx)`` is one byte. ML-DSA signs
``M'`` with ``Label`` as its FIPS 204 context, so an ML-DSA component signature is never
valid as a plain ML-DSA signature of ``M'``; the traditional algorithm signs ``M'``.

Encodings are plain concatenations: public key ``mldsaPK || tradPK``, private key
``mldsaSeed || tradSK``, signature ``mldsaSig || tradSig``. ``tradPK`` is the raw Ed25519 key
or the uncompressed SEC 1 point; ``tradSK`` is the raw Ed25519 key or a DER ``ECPrivateKey``
(RFC 5915) with the curve OID and without the public key; the ECDSA signature is DER.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qrc.crypto.base import SignatureScheme, SigningKey, VerifyingKey
from qrc.crypto.errors import InvalidSignature, KeyFormatError

__all__ = [
    "MLDSA65_ECDSA_P256_SHA512",
    "MLDSA87_ECDSA_P384_SHA512",
    "PREFIX",
    "SCHEMES",
    "CompositeSigningKey",
    "CompositeVerifyingKey",
    "MLDSA44_Ed25519_SHA512",
    "MLDSA65_Ed25519_SHA512",
]

PREFIX = b"CompositeAlgorithmSignatures2025"
_MLDSA_SEED_SIZE = 32
_MAX_CONTEXT = 255


# --------------------------------------------------------------------------- traditional parts
class _Traditional:
    """One traditional component algorithm: encodings, signing, verification."""

    public_size: int
    private_size: int

    def generate(self) -> Any:
        raise NotImplementedError

    def load_private(self, data: bytes) -> Any:
        """Parse ``tradSK``; ValueError if malformed."""
        raise NotImplementedError

    def private_bytes(self, key: Any) -> bytes:
        raise NotImplementedError

    def load_public(self, data: bytes) -> Any:
        """Parse ``tradPK``; ValueError if malformed."""
        raise NotImplementedError

    def public_bytes(self, key: Any) -> bytes:
        raise NotImplementedError

    def sign(self, key: Any, data: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, key: Any, signature: bytes, data: bytes) -> None:
        """Raise pyca's InvalidSignature (or ValueError) unless valid."""
        raise NotImplementedError


class _Ed25519(_Traditional):
    public_size = private_size = 32

    def generate(self) -> Any:
        return ed25519.Ed25519PrivateKey.generate()

    def load_private(self, data: bytes) -> Any:
        return ed25519.Ed25519PrivateKey.from_private_bytes(data)

    def private_bytes(self, key: Any) -> bytes:
        return bytes(key.private_bytes_raw())

    def load_public(self, data: bytes) -> Any:
        return ed25519.Ed25519PublicKey.from_public_bytes(data)

    def public_bytes(self, key: Any) -> bytes:
        return bytes(key.public_bytes_raw())

    def sign(self, key: Any, data: bytes) -> bytes:
        return bytes(key.sign(data))

    def verify(self, key: Any, signature: bytes, data: bytes) -> None:
        if len(signature) != 64:
            raise ValueError("Ed25519 signatures are 64 bytes")
        key.verify(signature, data)


class _ECDSA(_Traditional):
    """ECDSA on a NIST curve with the draft's hash for that curve."""

    def __init__(
        self,
        curve: ec.EllipticCurve,
        hash_algorithm: hashes.HashAlgorithm,
        curve_oid_der: bytes,
        order: int,
    ) -> None:
        self.curve, self.hash, self.order = curve, hash_algorithm, order
        self.scalar_size = (curve.key_size + 7) // 8
        self.public_size = 1 + 2 * self.scalar_size
        # ECPrivateKey ::= SEQUENCE { version INTEGER 1, privateKey OCTET STRING,
        #   parameters [0] namedCurve OID } -- no publicKey. Short-form DER lengths suffice.
        params = b"\xa0" + bytes([len(curve_oid_der)]) + curve_oid_der
        body_size = 3 + 2 + self.scalar_size + len(params)
        self._header = (
            b"\x30" + bytes([body_size]) + b"\x02\x01\x01\x04" + bytes([self.scalar_size])
        )
        self._trailer = params
        self.private_size = len(self._header) + self.scalar_size + len(params)

    def generate(self) -> Any:
        return ec.generate_private_key(self.curve)

    def load_private(self, data: bytes) -> Any:
        # Only the one DER encoding the draft allows: fixed header, scalar, curve OID.
        header, scalar = data[: len(self._header)], data[len(self._header) : -len(self._trailer)]
        if (
            len(data) != self.private_size
            or header != self._header
            or data[-len(self._trailer) :] != self._trailer
        ):
            raise ValueError("not an ECPrivateKey of this curve")
        return ec.derive_private_key(int.from_bytes(scalar, "big"), self.curve)

    def private_bytes(self, key: Any) -> bytes:
        value: int = key.private_numbers().private_value
        scalar = value.to_bytes(self.scalar_size, "big")
        return self._header + scalar + self._trailer

    def load_public(self, data: bytes) -> Any:
        if data[:1] != b"\x04":  # the draft requires the uncompressed point
            raise ValueError("not an uncompressed point")
        return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, data)

    def public_bytes(self, key: Any) -> bytes:
        return bytes(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def sign(self, key: Any, data: bytes) -> bytes:
        # Low-S: (r, s) and (r, n - s) both verify, so emit the one with s <= n/2. Our
        # composite signatures then have one canonical form; see docs/security-model.md
        # ("Composite ECDSA signatures are not strongly unforgeable") for why verification
        # still accepts high S.
        r, s = decode_dss_signature(bytes(key.sign(data, ec.ECDSA(self.hash))))
        if s > self.order // 2:
            s = self.order - s
        return encode_dss_signature(r, s)

    def verify(self, key: Any, signature: bytes, data: bytes) -> None:
        # Accepts high S too: the draft's vectors and other implementations emit it.
        key.verify(signature, data, ec.ECDSA(self.hash))


_P256_OID = bytes.fromhex("06082a8648ce3d030107")  # 1.2.840.10045.3.1.7
_P384_OID = bytes.fromhex("06052b81040022")  # 1.3.132.0.34
# Group orders n (SEC 2, FIPS 186-5).
_P256_ORDER = int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)


# --------------------------------------------------------------------------- key classes
class CompositeVerifyingKey(VerifyingKey):
    """A composite public key: ``mldsaPK || tradPK``."""

    __slots__ = ("_mldsa", "_raw", "_scheme", "_trad")

    def __init__(self, scheme: _Composite, raw: bytes, mldsa_key: Any, trad_key: Any) -> None:
        self._scheme, self._raw, self._mldsa, self._trad = scheme, raw, mldsa_key, trad_key

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_bytes(self) -> bytes:
        return self._raw

    def components(self) -> tuple[Any, Any]:
        """The pyca ML-DSA and traditional public keys."""
        return self._mldsa, self._trad

    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> None:
        scheme = self._scheme
        signature = bytes(signature)
        if len(context) > _MAX_CONTEXT or len(signature) <= scheme.mldsa_signature_size:
            raise InvalidSignature
        representative = scheme._representative(bytes(message), bytes(context))
        mldsa_sig = signature[: scheme.mldsa_signature_size]
        trad_sig = signature[scheme.mldsa_signature_size :]
        try:
            self._mldsa.verify(mldsa_sig, representative, scheme.label)
            scheme._trad.verify(self._trad, trad_sig, representative)
        except (_PycaInvalidSignature, ValueError):
            raise InvalidSignature from None


class CompositeSigningKey(SigningKey):
    """A composite private key: the ML-DSA seed and the traditional private key."""

    __slots__ = ("_mldsa", "_public", "_scheme", "_trad")

    def __init__(self, scheme: _Composite, mldsa_key: Any, trad_key: Any) -> None:
        self._scheme, self._mldsa, self._trad = scheme, mldsa_key, trad_key
        mldsa_public, trad_public = mldsa_key.public_key(), trad_key.public_key()
        raw = bytes(mldsa_public.public_bytes_raw()) + scheme._trad.public_bytes(trad_public)
        self._public = CompositeVerifyingKey(scheme, raw, mldsa_public, trad_public)

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_key(self) -> CompositeVerifyingKey:
        return self._public

    def private_bytes(self) -> bytes:
        return bytes(self._mldsa.private_bytes_raw()) + self._scheme._trad.private_bytes(self._trad)

    def components(self) -> tuple[Any, Any]:
        """The pyca ML-DSA and traditional private keys."""
        return self._mldsa, self._trad

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        if len(context) > _MAX_CONTEXT:
            raise ValueError(f"context is at most {_MAX_CONTEXT} bytes")
        scheme = self._scheme
        representative = scheme._representative(bytes(message), bytes(context))
        mldsa_sig = bytes(self._mldsa.sign(representative, scheme.label))
        return mldsa_sig + scheme._trad.sign(self._trad, representative)


# --------------------------------------------------------------------------- schemes
class _Composite(SignatureScheme):
    """One composite algorithm; subclasses name the label and the two components."""

    supports_context = True
    label: ClassVar[bytes]
    mldsa_public_size: ClassVar[int]
    mldsa_signature_size: ClassVar[int]
    _mldsa_private_cls: ClassVar[Any]
    _mldsa_public_cls: ClassVar[Any]
    _trad: ClassVar[_Traditional]

    def _representative(self, message: bytes, context: bytes) -> bytes:
        digest = hashlib.sha512(message).digest()
        return PREFIX + self.label + bytes([len(context)]) + context + digest

    def generate(self) -> CompositeSigningKey:
        return CompositeSigningKey(self, self._mldsa_private_cls.generate(), self._trad.generate())

    def load_private(self, data: bytes) -> CompositeSigningKey:
        data = bytes(data)
        size = _MLDSA_SEED_SIZE + self._trad.private_size
        if len(data) != size:
            raise KeyFormatError(f"{self.algorithm} private key must be {size} bytes")
        try:
            mldsa_key = self._mldsa_private_cls.from_seed_bytes(data[:_MLDSA_SEED_SIZE])
            trad_key = self._trad.load_private(data[_MLDSA_SEED_SIZE:])
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} private key") from None
        return CompositeSigningKey(self, mldsa_key, trad_key)

    def load_public(self, data: bytes) -> CompositeVerifyingKey:
        data = bytes(data)
        size = self.mldsa_public_size + self._trad.public_size
        if len(data) != size:
            raise KeyFormatError(f"{self.algorithm} public key must be {size} bytes")
        try:
            mldsa_key = self._mldsa_public_cls.from_public_bytes(data[: self.mldsa_public_size])
            trad_key = self._trad.load_public(data[self.mldsa_public_size :])
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} public key") from None
        return CompositeVerifyingKey(self, data, mldsa_key, trad_key)


class _MLDSA44(_Composite):
    mldsa_public_size, mldsa_signature_size = 1312, 2420
    _mldsa_private_cls, _mldsa_public_cls = mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey


class _MLDSA65(_Composite):
    mldsa_public_size, mldsa_signature_size = 1952, 3309
    _mldsa_private_cls, _mldsa_public_cls = mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey


class _MLDSA87(_Composite):
    mldsa_public_size, mldsa_signature_size = 2592, 4627
    _mldsa_private_cls, _mldsa_public_cls = mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey


class MLDSA44_Ed25519_SHA512(_MLDSA44):
    """ML-DSA-44 + Ed25519 (id-MLDSA44-Ed25519-SHA512, 1.3.6.1.5.5.7.6.39)."""

    algorithm = "MLDSA44-Ed25519-SHA512"
    label = b"COMPSIG-MLDSA44-Ed25519-SHA512"
    _trad = _Ed25519()


class MLDSA65_Ed25519_SHA512(_MLDSA65):
    """ML-DSA-65 + Ed25519 (id-MLDSA65-Ed25519-SHA512, 1.3.6.1.5.5.7.6.48)."""

    algorithm = "MLDSA65-Ed25519-SHA512"
    label = b"COMPSIG-MLDSA65-Ed25519-SHA512"
    _trad = _Ed25519()


class MLDSA65_ECDSA_P256_SHA512(_MLDSA65):
    """ML-DSA-65 + ECDSA P-256 with SHA-256 (id-MLDSA65-ECDSA-P256-SHA512, ...6.45)."""

    algorithm = "MLDSA65-ECDSA-P256-SHA512"
    label = b"COMPSIG-MLDSA65-ECDSA-P256-SHA512"
    _trad = _ECDSA(ec.SECP256R1(), hashes.SHA256(), _P256_OID, _P256_ORDER)


class MLDSA87_ECDSA_P384_SHA512(_MLDSA87):
    """ML-DSA-87 + ECDSA P-384 with SHA-384 (id-MLDSA87-ECDSA-P384-SHA512, ...6.49)."""

    algorithm = "MLDSA87-ECDSA-P384-SHA512"
    label = b"COMPSIG-MLDSA87-ECDSA-P384-SHA512"
    _trad = _ECDSA(ec.SECP384R1(), hashes.SHA384(), _P384_OID, _P384_ORDER)


SCHEMES: dict[str, type[SignatureScheme]] = {
    cls.algorithm: cls
    for cls in (
        MLDSA44_Ed25519_SHA512,
        MLDSA65_Ed25519_SHA512,
        MLDSA65_ECDSA_P256_SHA512,
        MLDSA87_ECDSA_P384_SHA512,
    )
}
