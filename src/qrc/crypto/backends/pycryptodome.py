"""ML-KEM implemented by pycryptodome (C code, key construction from the FIPS 203 seed).

The registry's provider for ML-KEM-512, and an alternate to pyca for ML-KEM-768/1024 (the
interoperability tests and benchmarks compare them). It replaces pqcrypto for ML-KEM:
pqcrypto cannot derive a key pair from the 64-byte seed ``d || z``, so keys had to be
expanded by pure-Python arithmetic on the secret seed, which is not constant time.
pycryptodome runs ``ML-KEM.KeyGen_internal`` on the seed in C.

The raw private encoding is the seed ``d || z`` (64 bytes), the public one FIPS 203 ``ek``.
:meth:`KEM.load_public` applies the FIPS 203 modulus check (in pycryptodome's C code).
Keys expose ``to_pycryptodome()``, the wrapped ``MLKEMKey``, which pycryptodome's HPKE
(:mod:`Crypto.Protocol.HPKE`) takes; :mod:`qrc.crypto.hpke_suite` uses it for the
draft-ietf-hpke-pq KEM IDs 0x0040-0x0042.

pycryptodome exposes the raw KEM operations as ``MLKEMKey._encaps`` / ``_decaps`` only;
they are reached here alone (:func:`_encaps`, :func:`_decaps`), and the Wycheproof and
CCTV vectors in ``tests/crypto`` pin their behaviour.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from Crypto.PublicKey import MLKEM as _MLKEM  # nosec B413 - pycryptodome (maintained), not pyCrypto

from qrc.crypto.base import KEM, KemPrivateKey, KemPublicKey
from qrc.crypto.errors import DecryptionError, KeyFormatError, UnsupportedAlgorithm

__all__ = [
    "MLKEM512",
    "MLKEM768",
    "MLKEM1024",
    "SCHEMES",
    "PycryptodomeKemPrivateKey",
    "PycryptodomeKemPublicKey",
]

_SEED_SIZE = 64


def _encaps(key: Any) -> tuple[bytes, bytes]:
    """``(ciphertext, shared secret)`` from pycryptodome's ML-KEM.Encaps (random ``m``)."""
    encaps = getattr(key, "_encaps", None)
    if encaps is None:  # a pycryptodome whose private entry point moved
        raise UnsupportedAlgorithm("this pycryptodome has no ML-KEM encapsulation")
    shared, ciphertext = encaps()
    return bytes(ciphertext), bytes(shared)


def _decaps(key: Any, ciphertext: bytes) -> bytes:
    decaps = getattr(key, "_decaps", None)
    if decaps is None:
        raise UnsupportedAlgorithm("this pycryptodome has no ML-KEM decapsulation")
    return bytes(decaps(ciphertext))


class PycryptodomeKemPublicKey(KemPublicKey):
    """An ML-KEM encapsulation key backed by a pycryptodome ``MLKEMKey``."""

    __slots__ = ("_key", "_scheme")

    def __init__(self, scheme: _PycryptodomeMLKEM, key: Any) -> None:
        self._scheme, self._key = scheme, key

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_bytes(self) -> bytes:
        return bytes(self._key.ek)

    def encapsulate(self) -> tuple[bytes, bytes]:
        return _encaps(self._key)

    def to_pycryptodome(self) -> Any:
        """The wrapped pycryptodome ``MLKEMKey`` (public)."""
        return self._key


class PycryptodomeKemPrivateKey(KemPrivateKey):
    """An ML-KEM decapsulation key, held as pycryptodome's key built from the seed."""

    __slots__ = ("_key", "_public", "_scheme")

    def __init__(self, scheme: _PycryptodomeMLKEM, key: Any) -> None:
        self._scheme, self._key = scheme, key
        self._public = PycryptodomeKemPublicKey(scheme, key.public_key())

    @property
    def algorithm(self) -> str:
        return self._scheme.algorithm

    def public_key(self) -> PycryptodomeKemPublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        return bytes(self._key.seed)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        ciphertext = bytes(ciphertext)
        if len(ciphertext) != self._scheme.ciphertext_size:
            raise DecryptionError
        try:
            return _decaps(self._key, ciphertext)
        except ValueError:
            raise DecryptionError from None

    def to_pycryptodome(self) -> Any:
        """The wrapped pycryptodome ``MLKEMKey`` (private)."""
        return self._key


class _PycryptodomeMLKEM(KEM):
    """One ML-KEM parameter set; subclasses name it."""

    param_set: ClassVar[_MLKEM.ParamSet]
    public_size: ClassVar[int]
    ciphertext_size: ClassVar[int]

    def generate(self) -> PycryptodomeKemPrivateKey:
        # The seed comes from the OS CSPRNG (DESIGN.md: no other randomness source).
        return self.load_private(os.urandom(_SEED_SIZE))

    def load_private(self, data: bytes) -> PycryptodomeKemPrivateKey:
        data = bytes(data)
        if len(data) != _SEED_SIZE:
            raise KeyFormatError(f"{self.algorithm} private key must be {_SEED_SIZE} bytes")
        try:
            key = _MLKEM.construct(param_set=self.param_set, seed=data)
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} private key") from None
        return PycryptodomeKemPrivateKey(self, key)

    def load_public(self, data: bytes) -> PycryptodomeKemPublicKey:
        data = bytes(data)
        if len(data) != self.public_size:
            raise KeyFormatError(f"{self.algorithm} public key must be {self.public_size} bytes")
        try:
            # FIPS 203 section 7.2: the modulus check (every coefficient below q).
            key = _MLKEM.construct(param_set=self.param_set, ek=data)
        except ValueError:
            raise KeyFormatError(f"malformed {self.algorithm} public key") from None
        return PycryptodomeKemPublicKey(self, key)


class MLKEM512(_PycryptodomeMLKEM):
    """ML-KEM-512 (FIPS 203, category 1)."""

    algorithm = "ML-KEM-512"
    param_set = _MLKEM.ML_KEM_512
    public_size, ciphertext_size = 800, 768


class MLKEM768(_PycryptodomeMLKEM):
    """ML-KEM-768 (FIPS 203, category 3)."""

    algorithm = "ML-KEM-768"
    param_set = _MLKEM.ML_KEM_768
    public_size, ciphertext_size = 1184, 1088


class MLKEM1024(_PycryptodomeMLKEM):
    """ML-KEM-1024 (FIPS 203, category 5)."""

    algorithm = "ML-KEM-1024"
    param_set = _MLKEM.ML_KEM_1024
    public_size, ciphertext_size = 1568, 1568


SCHEMES: dict[str, type[KEM]] = {cls.algorithm: cls for cls in (MLKEM512, MLKEM768, MLKEM1024)}
