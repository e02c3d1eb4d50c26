"""ML-KEM against Wycheproof, through every provider's KEM interface.

For each parameter set, three Wycheproof files: key generation from the seed, encapsulation
with fixed ``m`` (invalid = keys of the wrong length or failing the modulus check), and
decapsulation (invalid = seeds or ciphertexts of the wrong length). Every ``valid`` case
must give the recorded answer and every ``invalid`` one must be rejected. The providers are
pycryptodome (all sets, the registry's choice for ML-KEM-512) and pyca (768 and 1024).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.errors import DecryptionError, KeyFormatError
from qrc.crypto.registry import get_info
from qrc.crypto.schemes import get_kem
from tests.crypto.mlkem_kat import PROVIDERS, SETS, encaps_internal
from tests.vectors import load_json


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


def test_no_pure_python_mlkem_is_left_in_the_package() -> None:
    """Secret-seed arithmetic runs in C: no module of qrc.crypto implements ML-KEM itself."""
    package = Path(__file__).resolve().parents[2] / "src" / "qrc" / "crypto"
    assert not (package / "mlkem_ref.py").exists()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "mlkem_ref" not in (node.module or ""), path
                assert all(alias.name != "mlkem_ref" for alias in node.names), path


def test_mlkem_512_comes_from_pycryptodome() -> None:
    assert get_info("ML-KEM-512").provider == "pycryptodome"
    key = get_kem("ML-KEM-512").generate()
    assert type(key).__module__ == "qrc.crypto.backends.pycryptodome"


# --------------------------------------------------------------------------- interfaces
@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_keygen_from_seed(algorithm: str, provider: str) -> None:
    kem = get_kem(algorithm, provider=provider)
    cases = list(_cases(algorithm, "keygen_seed"))
    assert cases and all(case["result"] == "valid" for case in cases)
    for case in cases:
        key = kem.load_private(_b(case, "seed"))
        assert key.public_key().public_bytes() == _b(case, "ek"), case["tcId"]
        assert key.private_bytes() == _b(case, "seed")


@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_decapsulate(algorithm: str, provider: str) -> None:
    kem = get_kem(algorithm, provider=provider)
    counts = {"valid": 0, "invalid": 0}
    for case in _cases(algorithm, ""):
        counts[case["result"]] += 1
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
    assert counts["valid"] > 100 and counts["invalid"] >= 40


@pytest.mark.vectors
@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_load_public(algorithm: str, provider: str) -> None:
    """Valid keys load and encapsulate; short, long and unreduced keys are refused."""
    kem = get_kem(algorithm, provider=provider)
    ct_size = get_info(algorithm).ciphertext_size
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
def test_decapsulates_fixed_m_ciphertexts(algorithm: str, provider: str) -> None:
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


@pytest.mark.vectors
@pytest.mark.parametrize("algorithm", SETS)
def test_encapsulate_with_fixed_m(algorithm: str) -> None:
    """pycryptodome's Encaps_internal (what the test helpers use) gives the recorded answers."""
    counts = {"valid": 0, "invalid": 0}
    for case in _cases(algorithm, "encaps"):
        counts[case["result"]] += 1
        ek, m = _b(case, "ek"), _b(case, "m")
        if case["result"] == "valid":
            assert encaps_internal(ek, m) == (_b(case, "c"), _b(case, "K")), case["tcId"]
        else:
            with pytest.raises(ValueError):
                encaps_internal(ek, m)
    assert counts["valid"] > 100 and counts["invalid"] > 100


@pytest.mark.parametrize(("algorithm", "provider"), PROVIDERS)
def test_implicit_rejection(algorithm: str, provider: str) -> None:
    """A modified ciphertext gives J(z || c) (FIPS 203 Algorithm 18), not the shared secret."""
    seed = bytes(range(64))
    key = get_kem(algorithm, provider=provider).load_private(seed)
    ct, shared = encaps_internal(key.public_key().public_bytes(), bytes(32))
    assert key.decapsulate(ct) == shared
    bad = bytes([ct[0] ^ 1]) + ct[1:]
    assert key.decapsulate(bad) == hashlib.shake_256(seed[32:] + bad).digest(32) != shared
    for wrong in (ct[:-1], ct + b"\0", b""):
        with pytest.raises(DecryptionError):
            key.decapsulate(wrong)


@settings(max_examples=15, deadline=None)
@given(
    algorithm=st.sampled_from(["ML-KEM-768", "ML-KEM-1024"]),
    seed=st.binary(min_size=64, max_size=64),
)
def test_pycryptodome_and_pyca_agree(algorithm: str, seed: bytes) -> None:
    """The same seed gives the same key pair; each decapsulates the other's ciphertexts."""
    ours = get_kem(algorithm, provider="pycryptodome").load_private(seed)
    pyca = get_kem(algorithm, provider="pyca").load_private(seed)
    assert ours.public_key().public_bytes() == pyca.public_key().public_bytes()
    for sender, receiver in ((ours, pyca), (pyca, ours)):
        ct, shared = sender.public_key().encapsulate()
        assert receiver.decapsulate(ct) == shared
