"""Hybrid KEMs: ML-KEM combined with an elliptic-curve Diffie-Hellman.

* ``X25519MLKEM768`` is X-Wing (draft-connolly-cfrg-xwing-kem), which is also the HPKE KEM
  ``MLKEM768-X25519`` (0x647a) of draft-ietf-hpke-pq.
* ``P384MLKEM1024`` is the HPKE KEM ``MLKEM1024-P384`` (0x0051) of draft-ietf-hpke-pq.

Both follow one pattern. The private key is a 32-byte seed that SHAKE256 expands into the
64-byte ML-KEM seed followed by the classical private key (32 bytes for X25519, a 48-byte
P-384 scalar). The public key is ``pk_M || pk_T``, the ciphertext ``ct_M || ct_T``, and the
shared secret ``SHA3-256(ss_M || ss_T || ct_T || pk_T || Label)``: it stays secret as long
as either ML-KEM or the curve holds.

Keys expose ``to_hpke()``, the matching pyca HPKE key object, and ``hpke_kem``, the pyca
``hpke.KEM`` member, so that :mod:`qrc.crypto.envelope` can run HPKE with them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any, ClassVar

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qrc.crypto.base import KEM, KemPrivateKey, KemPublicKey
from qrc.crypto.errors import DecryptionError, KeyFormatError

__all__ = [
    "P384MLKEM1024",
    "SCHEMES",
    "HybridPrivateKey",
    "HybridPublicKey",
    "XWing",
]

_SEED_SIZE = 32
_MLKEM_SEED_SIZE = 64
# SEC 1 order of the P-384 group.
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)


class HybridPublicKey(KemPublicKey):
    """A hybrid KEM public key: ``pk_M || pk_T``."""

    __slots__ = ("_mlkem", "_raw", "_scheme", "_trad")

    def __init__(self, scheme: _HybridKem, raw: bytes, mlkem_key: Any, trad_key: Any) -> None:
        self._scheme, self._raw, self._mlkem, self._trad = scheme, raw, mlkem_key, trad_key

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    @property
    def hpke_kem(self) -> hpke.KEM:
        """The pyca HPKE KEM for this algorithm (for ``hpke.Suite``)."""
        return self._scheme.hpke_kem

    def public_bytes(self) -> bytes:
        return self._raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        shared, ciphertext = self._mlkem.encapsulate()
        return self._scheme._finish_encapsulation(
            self, bytes(ciphertext), bytes(shared), self._scheme._trad_generate()
        )

    def to_hpke(self) -> Any:
        """The pyca HPKE public key (``hpke.MLKEM768X25519PublicKey`` or ``MLKEM1024P384...``)."""
        return self._scheme._hpke_public_cls(self._mlkem, self._trad)


class HybridPrivateKey(KemPrivateKey):
    """A hybrid KEM private key, held as its 32-byte seed and the two expanded keys."""

    __slots__ = ("_mlkem", "_public", "_scheme", "_seed", "_trad")

    def __init__(self, scheme: _HybridKem, seed: bytes, mlkem_key: Any, trad_key: Any) -> None:
        self._scheme, self._seed, self._mlkem, self._trad = scheme, seed, mlkem_key, trad_key
        mlkem_public, trad_public = mlkem_key.public_key(), trad_key.public_key()
        raw = bytes(mlkem_public.public_bytes_raw()) + scheme._trad_public_bytes(trad_public)
        self._public = HybridPublicKey(scheme, raw, mlkem_public, trad_public)

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    @property
    def hpke_kem(self) -> hpke.KEM:
        """The pyca HPKE KEM for this algorithm (for ``hpke.Suite``)."""
        return self._scheme.hpke_kem

    def public_key(self) -> HybridPublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        return self._seed

    def decapsulate(self, ciphertext: bytes) -> bytes:
        scheme = self._scheme
        ciphertext = bytes(ciphertext)
        if len(ciphertext) != scheme._mlkem_ct_size + scheme._trad_size:
            raise DecryptionError
        ct_m, ct_t = ciphertext[: scheme._mlkem_ct_size], ciphertext[scheme._mlkem_ct_size :]
        try:
            # ML-KEM rejects implicitly (a pseudorandom ss_M for a bad ct_M); only the
            # classical half can fail: a point off the curve, or of low order for X25519.
            ss_m = bytes(self._mlkem.decapsulate(ct_m))
            ss_t = scheme._trad_exchange(self._trad, scheme._trad_public_from_bytes(ct_t))
        except ValueError:
            raise DecryptionError from None
        pk_t = self._public.public_bytes()[scheme._mlkem_pk_size :]
        return scheme._combine(ss_m, ss_t, ct_t, pk_t)

    def to_hpke(self) -> Any:
        """The pyca HPKE private key (``hpke.MLKEM768X25519PrivateKey`` or ``MLKEM1024P384...``)."""
        return self._scheme._hpke_private_cls(self._mlkem, self._trad)


class _HybridKem(KEM):
    """The shared construction; subclasses supply the curve and the ML-KEM parameter set."""

    label: ClassVar[bytes]
    hpke_kem: ClassVar[hpke.KEM]
    _trad_seed_size: ClassVar[int]
    _trad_size: ClassVar[int]  # encoded public key = ephemeral public key in the ciphertext
    _mlkem_pk_size: ClassVar[int]
    _mlkem_ct_size: ClassVar[int]
    _mlkem_private_cls: ClassVar[Any]
    _mlkem_public_cls: ClassVar[Any]
    _hpke_private_cls: ClassVar[Any]
    _hpke_public_cls: ClassVar[Any]

    # --- the classical group, per subclass
    def _trad_from_seed(self, seed: bytes) -> Any:
        """The private key derived from seed bytes; ValueError if they give no valid key."""
        raise NotImplementedError

    def _trad_generate(self) -> Any:
        raise NotImplementedError

    def _trad_public_bytes(self, public: Any) -> bytes:
        raise NotImplementedError

    def _trad_public_from_bytes(self, data: bytes) -> Any:
        """Parse a public element; ValueError if it is not a valid one."""
        raise NotImplementedError

    def _trad_exchange(self, private: Any, public: Any) -> bytes:
        """The shared secret; ValueError if it is degenerate."""
        raise NotImplementedError

    # --- the construction
    def _expand(self, seed: bytes) -> HybridPrivateKey:
        expanded = hashlib.shake_256(seed).digest(_MLKEM_SEED_SIZE + self._trad_seed_size)
        mlkem_key = self._mlkem_private_cls.from_seed_bytes(expanded[:_MLKEM_SEED_SIZE])
        trad_key = self._trad_from_seed(expanded[_MLKEM_SEED_SIZE:])
        return HybridPrivateKey(self, seed, mlkem_key, trad_key)

    def _combine(self, ss_m: bytes, ss_t: bytes, ct_t: bytes, pk_t: bytes) -> bytes:
        return hashlib.sha3_256(ss_m + ss_t + ct_t + pk_t + self.label).digest()

    def _finish_encapsulation(
        self, public: HybridPublicKey, ct_m: bytes, ss_m: bytes, ephemeral: Any
    ) -> tuple[bytes, bytes]:
        ct_t = self._trad_public_bytes(ephemeral.public_key())
        try:
            ss_t = self._trad_exchange(ephemeral, public._trad)
        except ValueError:  # load_public rejects such keys; a defensive second check
            raise KeyFormatError(f"degenerate {self.algorithm} public key") from None
        pk_t = public.public_bytes()[self._mlkem_pk_size :]
        return ct_m + ct_t, self._combine(ss_m, ss_t, ct_t, pk_t)

    # --- the KEM interface
    def generate(self) -> HybridPrivateKey:
        while True:
            try:
                return self._expand(os.urandom(_SEED_SIZE))
            except ValueError:  # P-384 scalar out of range: probability below 2^-190
                continue

    def load_private(self, data: bytes) -> HybridPrivateKey:
        data = bytes(data)
        if len(data) != _SEED_SIZE:
            raise KeyFormatError(f"{self.algorithm} private key must be {_SEED_SIZE} bytes")
        try:
            return self._expand(data)
        except ValueError:
            raise KeyFormatError(f"{self.algorithm} seed gives no valid key") from None

    def load_public(self, data: bytes) -> HybridPublicKey:
        data = bytes(data)
        size = self._mlkem_pk_size + self._trad_size
        if len(data) != size:
            raise KeyFormatError(f"{self.algorithm} public key must be {size} bytes")
        try:
            # pyca applies the FIPS 203 modulus check to the ML-KEM key.
            mlkem_key = self._mlkem_public_cls.from_public_bytes(data[: self._mlkem_pk_size])
            trad_key = self._trad_public_from_bytes(data[self._mlkem_pk_size :])
            # Refuse a degenerate classical key now (X25519 of low order) rather than at
            # every encapsulation: one exchange with a throwaway key finds it.
            self._trad_exchange(self._trad_generate(), trad_key)
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} public key") from None
        return HybridPublicKey(self, data, mlkem_key, trad_key)


class XWing(_HybridKem):
    """X-Wing: ML-KEM-768 + X25519 (HPKE ``MLKEM768-X25519``)."""

    algorithm = "X25519MLKEM768"
    label = b"\\.//^\\"  # the X-Wing label, 5c2e2f2f5e5c
    hpke_kem = hpke.KEM.MLKEM768_X25519
    _trad_seed_size = _trad_size = 32
    _mlkem_pk_size, _mlkem_ct_size = 1184, 1088
    _mlkem_private_cls, _mlkem_public_cls = mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey
    _hpke_private_cls = hpke.MLKEM768X25519PrivateKey
    _hpke_public_cls = hpke.MLKEM768X25519PublicKey

    def _trad_from_seed(self, seed: bytes) -> Any:
        return x25519.X25519PrivateKey.from_private_bytes(seed)

    def _trad_generate(self) -> Any:
        return x25519.X25519PrivateKey.generate()

    def _trad_public_bytes(self, public: Any) -> bytes:
        return bytes(public.public_bytes_raw())

    def _trad_public_from_bytes(self, data: bytes) -> Any:
        return x25519.X25519PublicKey.from_public_bytes(data)

    def _trad_exchange(self, private: Any, public: Any) -> bytes:
        # pyca raises ValueError for the all-zero output of a low-order point.
        return bytes(private.exchange(public))


class P384MLKEM1024(_HybridKem):
    """ML-KEM-1024 + P-384 (HPKE ``MLKEM1024-P384``)."""

    algorithm = "P384MLKEM1024"
    label = b"MLKEM1024-P384"
    hpke_kem = hpke.KEM.MLKEM1024_P384
    _trad_seed_size, _trad_size = 48, 97
    _mlkem_pk_size, _mlkem_ct_size = 1568, 1568
    _mlkem_private_cls, _mlkem_public_cls = mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey
    _hpke_private_cls = hpke.MLKEM1024P384PrivateKey
    _hpke_public_cls = hpke.MLKEM1024P384PublicKey

    def _trad_from_seed(self, seed: bytes) -> Any:
        # Group.RandomScalar with a single candidate: the 48 bytes, big-endian, must lie in
        # [1, n); anything else is an error (probability below 2^-190).
        scalar = int.from_bytes(seed, "big")
        if not 0 < scalar < _P384_ORDER:
            raise ValueError("P-384 scalar out of range")
        return ec.derive_private_key(scalar, ec.SECP384R1())

    def _trad_generate(self) -> Any:
        return ec.generate_private_key(ec.SECP384R1())

    def _trad_public_bytes(self, public: Any) -> bytes:
        return bytes(public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def _trad_public_from_bytes(self, data: bytes) -> Any:
        if data[:1] != b"\x04":  # only the uncompressed SEC 1 encoding is allowed
            raise ValueError("not an uncompressed point")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), data)

    def _trad_exchange(self, private: Any, public: Any) -> bytes:
        # The x-coordinate, 48 bytes (SEC 1 Field-Element-to-Octet-String).
        return bytes(private.exchange(ec.ECDH(), public))


SCHEMES: dict[str, type[KEM]] = {cls.algorithm: cls for cls in (XWing, P384MLKEM1024)}


def _derandomized_encapsulate_for_tests(
    public_key: HybridPublicKey,
    randomness: bytes,
    mlkem_encaps_internal: Callable[[bytes, bytes], tuple[bytes, bytes]],
) -> tuple[bytes, bytes]:
    """EncapsDerand for known-answer tests: never reachable from the public API.

    ``randomness`` is the 32-byte ML-KEM ``m`` followed by the classical seed (X-Wing's
    64-byte ``eseed``). pyca has no FIPS 203 ``Encaps_internal``, so the caller supplies
    one: ``mlkem_encaps_internal(pk_M, m) -> (ct_M, ss_M)``.
    """
    scheme = public_key._scheme
    pk_m = public_key.public_bytes()[: scheme._mlkem_pk_size]
    ct_m, ss_m = mlkem_encaps_internal(pk_m, randomness[:32])
    ephemeral = scheme._trad_from_seed(randomness[32 : 32 + scheme._trad_seed_size])
    return scheme._finish_encapsulation(public_key, ct_m, ss_m, ephemeral)
