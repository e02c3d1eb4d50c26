"""The algorithm registry: its contents, lookups, policy status, and that it is implemented."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from qrc.crypto.errors import AlgorithmNotAllowed, UnsupportedAlgorithm
from qrc.crypto.registry import (
    REGISTRY,
    AlgorithmInfo,
    Family,
    Kind,
    Status,
    all_algorithms,
    get_info,
    set_status,
)
from qrc.crypto.schemes import get_aead, get_kem, get_scheme, get_signature

_MCELIECE = [
    f"Classic-McEliece-{n}{f}"
    for n in ("348864", "460896", "6688128", "6960119", "8192128")
    for f in ("", "f")
]
_SLH = [
    f"SLH-DSA-{h}-{p}"
    for h in ("SHA2", "SHAKE")
    for p in ("128s", "128f", "192s", "192f", "256s", "256f")
]
# The 45-entry catalogue (DESIGN.md, "NIST algorithms" and friends): (kind, family) -> IDs.
EXPECTED: dict[tuple[Kind, Family], list[str]] = {
    (Kind.KEM, Family.LATTICE): ["ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"],
    (Kind.KEM, Family.HYBRID): ["X25519MLKEM768", "P384MLKEM1024"],
    (Kind.KEM, Family.CODE): ["HQC-128", "HQC-192", "HQC-256", *_MCELIECE],
    (Kind.KEM, Family.CLASSICAL): ["X25519", "P-256", "P-384"],
    (Kind.SIGNATURE, Family.LATTICE): ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"],
    (Kind.SIGNATURE, Family.HASH): _SLH,
    (Kind.SIGNATURE, Family.HYBRID): [
        "MLDSA44-Ed25519-SHA512",
        "MLDSA65-Ed25519-SHA512",
        "MLDSA65-ECDSA-P256-SHA512",
        "MLDSA87-ECDSA-P384-SHA512",
    ],
    (Kind.SIGNATURE, Family.CLASSICAL): ["Ed25519", "ECDSA-P256", "ECDSA-P384"],
    (Kind.AEAD, Family.SYMMETRIC): ["AES-256-GCM", "ChaCha20-Poly1305"],
}
ALL_IDS = [alg for ids in EXPECTED.values() for alg in ids]
_GETTERS = {Kind.KEM: get_kem, Kind.SIGNATURE: get_signature, Kind.AEAD: get_aead}


@pytest.fixture
def restore_status() -> Iterator[None]:
    """Put every status back as it was, whatever the test did."""
    saved = {info.id: info.status for info in all_algorithms()}
    yield
    for algorithm, status in saved.items():
        if REGISTRY[algorithm].status is not status:
            set_status(algorithm, status)


def test_registry_has_45_algorithms() -> None:
    assert len(ALL_IDS) == 45
    assert len(REGISTRY) == len(all_algorithms()) == 45
    assert [info.id for info in all_algorithms()] == list(REGISTRY)


def test_kinds_and_families() -> None:
    found: dict[tuple[Kind, Family], list[str]] = {}
    for info in all_algorithms():
        found.setdefault((info.kind, info.family), []).append(info.id)
    assert {key: sorted(ids) for key, ids in found.items()} == {
        key: sorted(ids) for key, ids in EXPECTED.items()
    }
    assert len(all_algorithms(Kind.KEM)) == 21
    assert len(all_algorithms(Kind.SIGNATURE)) == 22
    assert len(all_algorithms(Kind.AEAD)) == 2
    assert all(info.kind is Kind.KEM for info in all_algorithms(Kind.KEM))


def test_ids_are_unique_even_ignoring_case() -> None:
    ids = [info.id for info in all_algorithms()]
    assert len(set(ids)) == len(ids)
    assert len({i.casefold() for i in ids}) == len(ids)
    assert all(REGISTRY[i].id == i for i in ids)
    oids = [info.oid for info in all_algorithms() if info.oid is not None]
    assert len(set(oids)) == len(oids)


@pytest.mark.parametrize("algorithm", ["ml-kem-768", "ML-KEM-768", "Ml-Kem-768", "mL-kEm-768"])
def test_get_info_is_case_insensitive(algorithm: str) -> None:
    info = get_info(algorithm)
    assert info.id == "ML-KEM-768"
    assert get_kem(algorithm).algorithm == "ML-KEM-768"


@pytest.mark.parametrize("algorithm", ["", "ML-KEM", "ML-KEM-769", "RSA-2048", "ML-KEM-768 "])
def test_unknown_algorithm(algorithm: str) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        get_info(algorithm)
    with pytest.raises(UnsupportedAlgorithm):
        get_scheme(algorithm)
    with pytest.raises(UnsupportedAlgorithm):
        get_kem(algorithm)


def test_wrong_kind_is_unsupported() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        get_info("ML-DSA-65", Kind.KEM)
    with pytest.raises(UnsupportedAlgorithm):
        get_kem("ML-DSA-65")
    with pytest.raises(UnsupportedAlgorithm):
        get_signature("ML-KEM-768")
    with pytest.raises(UnsupportedAlgorithm):
        get_aead("Ed25519")
    assert get_info("ML-DSA-65", Kind.SIGNATURE).id == "ML-DSA-65"


def test_unknown_provider() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        get_scheme("ML-KEM-768", provider="nope")


def test_entries_are_consistent() -> None:
    for info in all_algorithms():
        assert isinstance(info, AlgorithmInfo)
        assert info.provider in ("pyca", "pqcrypto", "pycryptodome", "qrc")
        assert info.standard
        assert info.quantum_safe is (info.family is not Family.CLASSICAL)
        assert (info.nist_level is None) is (info.family is Family.CLASSICAL)
        assert info.private_key_size > 0
        if info.kind is Kind.KEM:
            assert info.public_key_size and info.ciphertext_size and info.shared_secret_size
            assert info.signature_size == 0
        elif info.kind is Kind.SIGNATURE:
            assert info.public_key_size and info.signature_size
            assert info.ciphertext_size == info.shared_secret_size == 0
        if info.family is Family.HYBRID:
            assert info.provider == "qrc"
        as_dict = info.as_dict()
        assert json.loads(json.dumps(as_dict)) == as_dict
        assert as_dict["id"] == info.id and as_dict["kind"] == info.kind.value


def test_set_status_and_disallowed(restore_status: None) -> None:
    before = get_info("Ed25519")
    assert before.status is Status.DEPRECATED
    get_signature("Ed25519")  # deprecated still resolves

    new = set_status("ed25519", Status.DISALLOWED)
    assert new.id == "Ed25519" and new.status is Status.DISALLOWED
    assert get_info("Ed25519").status is Status.DISALLOWED
    assert get_info("Ed25519") == new
    with pytest.raises(AlgorithmNotAllowed):
        get_signature("Ed25519")
    with pytest.raises(AlgorithmNotAllowed):
        get_scheme("Ed25519")
    # An explicit override (used to read old data under policy) still resolves.
    assert get_scheme("Ed25519", allow_disallowed=True).algorithm == "Ed25519"

    set_status("Ed25519", Status.EXPERIMENTAL)
    assert get_signature("Ed25519").info.status is Status.EXPERIMENTAL
    set_status("Ed25519", before.status)
    assert get_info("Ed25519") == before


def test_set_status_unknown() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        set_status("nope", Status.ACTIVE)


def test_status_fixture_restores(restore_status: None) -> None:
    """Runs after the test above in file order: nothing left disallowed."""
    assert all(info.status is not Status.DISALLOWED for info in all_algorithms())


def test_every_algorithm_is_implemented() -> None:
    """Each registry ID resolves (through its provider) to a class for that ID and kind."""
    problems: dict[str, str] = {}
    for info in all_algorithms():
        try:
            scheme = _GETTERS[info.kind](info.id)
        except (UnsupportedAlgorithm, ImportError) as exc:
            problems[info.id] = f"{info.provider}: {type(exc).__name__}: {exc}"
            continue
        if scheme.algorithm != info.id or scheme.kind is not info.kind:
            problems[info.id] = f"resolves to {scheme!r} ({scheme.kind})"
    assert not problems, "not implemented:\n" + "\n".join(
        f"  {alg}: {why}" for alg, why in problems.items()
    )
