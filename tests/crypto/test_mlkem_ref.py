"""The pure-Python ML-KEM against Wycheproof, directly and through the KEM interfaces.

For each parameter set, three Wycheproof files: key generation from the seed, encapsulation
with fixed ``m`` (invalid = keys of the wrong length or failing the modulus check), and
decapsulation (invalid = seeds or ciphertexts of the wrong length). Every ``valid`` case
must give the recorded answer and every ``invalid`` one must be rejected. Through the
interfaces this covers pqcrypto (all sets) and pyca (768 and 1024).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto import mlkem_ref
from qrc.crypto.errors import DecryptionError, KeyFormatError
from qrc.crypto.schemes import get_kem
from tests.vectors import load_json

SETS = ["ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"]
# (algorithm, provider) pairs that the interface tests run through
PROVIDERS = [
    ("ML-KEM-512", "pqcrypto"),
    ("ML-KEM-768", "pqcrypto"),
    ("ML-KEM-768", "pyca"),
    ("ML-KEM-1024", "pqcrypto"),
    ("ML-KEM-1024", "pyca"),
]


def _cases(algorithm: str, kind: str) -> Iterator[dict[str, Any]]:
    """The tests of one Wycheproof file: kind is "", "encaps" or "keygen_seed"."""
    n = algorithm.rsplit("-", 1)[1]
    name = f"wycheproof/mlkem_{n}_{kind}_test.json" if kind else f"wycheproof/mlkem_{n}_test.json"
    data = load_json(name)
    for group in data["testGroups"]:
        assert group["parameterSet"] == algorithm
        yield from group["tests"]


def _b(case: dict[str, Any], field: str) -> bytes:
    return bytes.fromhex(case[field])


# --------------------------------------------------------------------------- mlkem_ref
@pytest.mark.vectors
@pytest.mark.parametrize("algorithm", SETS)
def test_keygen_from_seed(algorithm: str) -> None:
    params = mlkem_ref.PARAMS[algorithm]
    cases = list(_cases(algorithm, "keygen_seed"))
    assert cases and all(case["result"] == "valid" for case in cases)
    for case in cases:
        ek, dk = mlkem_ref.keygen(params, _b(case, "seed"))
        assert (ek, dk) == (_b(case, "ek"), _b(case, "dk")), case["tcId"]


@pytest.mark.vectors
@pytest.mark.parametrize("algorithm", SETS)
def test_encapsulate_with_fixed_m(algorithm: str) -> None:
    params = mlkem_ref.PARAMS[algorithm]
    counts = {"valid": 0, "invalid": 0}
    for case in _cases(algorithm, "encaps"):
        counts[case["result"]] += 1
        ek, m = _b(case, "ek"), _b(case, "m")
        if case["result"] == "valid":
            ct, key = mlkem_ref.encapsulate_derandomized_for_tests(params, ek, m)
            assert (ct, key) == (_b(case, "c"), _b(case, "K")), case["tcId"]
        else:
            with pytest.raises(KeyFormatError):
                mlkem_ref.encapsulate_derandomized_for_tests(params, ek, m)
    assert counts["valid"] > 100 and counts["invalid"] > 100


@pytest.mark.vectors
@pytest.mark.parametrize("algorithm", SETS)
def test_decapsulate(algorithm: str) -> None:
    params = mlkem_ref.PARAMS[algorithm]
    counts = {"valid": 0, "invalid": 0}
    for case in _cases(algorithm, ""):
        counts[case["result"]] += 1
        seed, ct = _b(case, "seed"), _b(case, "c")
        if case["result"] == "valid":
            ek, dk = mlkem_ref.keygen(params, seed)
            assert ek == _b(case, "ek"), case["tcId"]
            assert mlkem_ref.decapsulate(params, dk, ct) == _b(case, "K"), case["tcId"]
        else:
            # wrong-length seed (private key) or ciphertext
            with pytest.raises((KeyFormatError, DecryptionError)):
                _ek, dk = mlkem_ref.keygen(params, seed)
                mlkem_ref.decapsulate(params, dk, ct)
    assert counts["valid"] > 100 and counts["invalid"] >= 40


@pytest.mark.parametrize("algorithm", SETS)
def test_decapsulation_key_checks(algorithm: str) -> None:
    params = mlkem_ref.PARAMS[algorithm]
    ek, dk = mlkem_ref.keygen(params, bytes(range(64)))
    ct, key = mlkem_ref.encapsulate_derandomized_for_tests(params, ek, bytes(32))
    assert mlkem_ref.decapsulate(params, dk, ct) == key
    # flip a bit of the embedded ek: the hash check H(ek) fails
    position = 384 * params.k + 5
    tampered = dk[:position] + bytes([dk[position] ^ 1]) + dk[position + 1 :]
    with pytest.raises(KeyFormatError):
        mlkem_ref.decapsulate(params, tampered, ct)
    with pytest.raises(KeyFormatError):
        mlkem_ref.check_decapsulation_key(params, dk[:-1])
    with pytest.raises(DecryptionError):
        mlkem_ref.decapsulate(params, dk, ct + b"\0")


@pytest.mark.parametrize("algorithm", SETS)
def test_implicit_rejection(algorithm: str) -> None:
    """A modified ciphertext gives J(z || c), not the encapsulated key."""
    params = mlkem_ref.PARAMS[algorithm]
    seed = bytes(range(64))
    ek, dk = mlkem_ref.keygen(params, seed)
    ct, key = mlkem_ref.encapsulate_derandomized_for_tests(params, ek, bytes(32))
    bad = bytes([ct[0] ^ 1]) + ct[1:]
    assert mlkem_ref.decapsulate(params, dk, bad) == hashlib.shake_256(seed[32:] + bad).digest(32)
    assert mlkem_ref.decapsulate(params, dk, bad) != key


@settings(max_examples=15, deadline=None)
@given(
    algorithm=st.sampled_from(SETS),
    seed=st.binary(min_size=64, max_size=64),
    m=st.binary(min_size=32, max_size=32),
)
def test_agrees_with_pqcrypto(algorithm: str, seed: bytes, m: bytes) -> None:
    """mlkem_ref and pqcrypto's C code decapsulate each other's ciphertexts alike."""
    from pqcrypto.kem import ml_kem_512, ml_kem_768, ml_kem_1024

    lib = {"ML-KEM-512": ml_kem_512, "ML-KEM-768": ml_kem_768, "ML-KEM-1024": ml_kem_1024}
    params = mlkem_ref.PARAMS[algorithm]
    ek, dk = mlkem_ref.keygen(params, seed)
    ct, key = mlkem_ref.encapsulate_derandomized_for_tests(params, ek, m)
    assert lib[algorithm].decaps(dk, ct) == key
    ct2, key2 = lib[algorithm].encaps(ek)
    assert mlkem_ref.decapsulate(params, dk, ct2) == key2


# --------------------------------------------------------------------------- interfaces
@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_interface_keygen_from_seed(algorithm: str, provider: str) -> None:
    kem = get_kem(algorithm, provider=provider)
    for case in _cases(algorithm, "keygen_seed"):
        key = kem.load_private(_b(case, "seed"))
        assert key.public_key().public_bytes() == _b(case, "ek"), case["tcId"]
        assert key.private_bytes() == _b(case, "seed")


@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_interface_decapsulate(algorithm: str, provider: str) -> None:
    kem = get_kem(algorithm, provider=provider)
    for case in _cases(algorithm, ""):
        seed, ct = _b(case, "seed"), _b(case, "c")
        if case["result"] == "valid":
            key = kem.load_private(seed)
            assert key.public_key().public_bytes() == _b(case, "ek"), case["tcId"]
            assert key.decapsulate(ct) == _b(case, "K"), case["tcId"]
        elif len(seed) != 64:
            with pytest.raises(KeyFormatError):
                kem.load_private(seed)
        else:
            with pytest.raises(DecryptionError):
                kem.load_private(seed).decapsulate(ct)


@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_interface_load_public(algorithm: str, provider: str) -> None:
    """Valid keys load and encapsulate; short, long and unreduced keys are refused."""
    kem = get_kem(algorithm, provider=provider)
    ct_size = mlkem_ref.PARAMS[algorithm].ct_size
    for case in _cases(algorithm, "encaps"):
        ek = _b(case, "ek")
        if case["result"] == "valid":
            public = kem.load_public(ek)
            assert public.public_bytes() == ek
            ct, key = public.encapsulate()
            assert (len(ct), len(key)) == (ct_size, 32)
        else:
            with pytest.raises(KeyFormatError):
                kem.load_public(ek)


@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_interface_decapsulates_fixed_m_ciphertexts(algorithm: str, provider: str) -> None:
    """Ciphertexts of the encaps vectors decapsulate, under keys whose seed is recorded."""
    kem = get_kem(algorithm, provider=provider)
    by_ek = {case["ek"]: case for case in _cases(algorithm, "keygen_seed")}
    checked = 0
    for case in _cases(algorithm, "encaps"):
        keygen = by_ek.get(case["ek"])
        if case["result"] == "valid" and keygen is not None:
            key = kem.load_private(_b(keygen, "seed"))
            assert key.decapsulate(_b(case, "c")) == _b(case, "K"), case["tcId"]
            checked += 1
    assert checked >= 50
