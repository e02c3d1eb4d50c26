"""Self-tests: every algorithm passes its KAT, and a corrupted answer is caught."""

from __future__ import annotations

import json

import pytest

from qrc.crypto import selftest
from qrc.crypto.errors import SelfTestFailure, UnsupportedAlgorithm
from qrc.crypto.registry import all_algorithms
from qrc.crypto.schemes import get_signature

FAST = [i.id for i in all_algorithms() if "McEliece" not in i.id]


@pytest.mark.parametrize("algorithm", FAST)
def test_known_answer_test_passes(algorithm: str) -> None:
    selftest.known_answer_test(algorithm)


def test_run_selftests_reports_each_algorithm() -> None:
    results = selftest.run_selftests(["ML-KEM-768", "ML-DSA-65", "AES-256-GCM"])
    assert [r.algorithm for r in results] == ["ML-KEM-768", "ML-DSA-65", "AES-256-GCM"]
    assert all(r.ok for r in results), results


@pytest.mark.parametrize("field", ["pk", "ss", "sig", "ct"])
def test_corrupted_answer_fails(monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    answers = json.loads(json.dumps(selftest._core_answers()))
    algorithm = {"pk": "ML-DSA-65", "ss": "ML-KEM-768", "sig": "Ed25519", "ct": "AES-256-GCM"}[
        field
    ]
    value = answers[algorithm][field]
    answers[algorithm][field] = ("1" if value[0] == "0" else "0") + value[1:]
    monkeypatch.setattr(selftest, "_core_answers", lambda: answers)
    with pytest.raises(SelfTestFailure):
        selftest.known_answer_test(algorithm)
    result = selftest.run_selftests([algorithm])[0]
    assert not result.ok and "SelfTestFailure" in result.detail


def test_generate_private_key_runs_pairwise_check() -> None:
    key = selftest.generate_private_key("MLDSA65-Ed25519-SHA512")
    assert key.algorithm == "MLDSA65-Ed25519-SHA512"
    with pytest.raises(UnsupportedAlgorithm):
        selftest.generate_private_key("AES-256-GCM")


def test_pairwise_check_catches_mismatched_pair() -> None:
    class Broken:
        """A signing key whose public half belongs to another key."""

        algorithm = "ML-DSA-44"

        def __init__(self) -> None:
            self._a = get_signature("ML-DSA-44").generate()
            self._b = get_signature("ML-DSA-44").generate()

        def sign(self, message: bytes, context: bytes = b"") -> bytes:
            return self._a.sign(message, context)

        def public_key(self) -> object:
            return self._b.public_key()

    with pytest.raises(SelfTestFailure):
        selftest.pairwise_check(Broken())  # type: ignore[arg-type]
