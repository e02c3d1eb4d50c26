"""Test-only ML-KEM helpers: FIPS 203 ``Encaps_internal`` with caller-chosen ``m``.

No library API in the service takes the encapsulation randomness (rightly), but known-answer
vectors fix it. pycryptodome's C implementation accepts it through ``MLKEMKey._encaps``;
this wrapper is for tests only and is never imported by ``src/``.
"""

from __future__ import annotations

from Crypto.PublicKey import MLKEM

# (algorithm, provider) pairs: every ML-KEM implementation behind the KEM interface
PROVIDERS = [
    ("ML-KEM-512", "pycryptodome"),
    ("ML-KEM-768", "pycryptodome"),
    ("ML-KEM-768", "pyca"),
    ("ML-KEM-1024", "pycryptodome"),
    ("ML-KEM-1024", "pyca"),
]
SETS = ["ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"]
_BY_EK_SIZE = {800: MLKEM.ML_KEM_512, 1184: MLKEM.ML_KEM_768, 1568: MLKEM.ML_KEM_1024}
_BY_NAME = {
    "ML-KEM-512": MLKEM.ML_KEM_512,
    "ML-KEM-768": MLKEM.ML_KEM_768,
    "ML-KEM-1024": MLKEM.ML_KEM_1024,
}


def encaps_internal(ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    """``(ciphertext, shared secret)`` of ML-KEM.Encaps_internal(ek, m).

    Raises ValueError when ``ek`` fails the length or modulus check.
    """
    if len(ek) not in _BY_EK_SIZE:
        raise ValueError("not an ML-KEM encapsulation key length")
    key = MLKEM.construct(param_set=_BY_EK_SIZE[len(ek)], ek=ek)
    shared, ciphertext = key._encaps(m)
    return bytes(ciphertext), bytes(shared)


def decaps_expanded(algorithm: str, dk: bytes, ciphertext: bytes) -> bytes:
    """ML-KEM.Decaps with an expanded FIPS 203 ``dk`` (vectors that give no seed)."""
    key = MLKEM.construct(param_set=_BY_NAME[algorithm], expanded_dk=dk)
    return bytes(key._decaps(ciphertext))
