"""The parameter advisor: each rule decides, and the answer says which (real registry,
real measurements where latency matters)."""

from __future__ import annotations

import pytest

from qrc.crypto.registry import Status, get_info
from qrc.monitor.advisor import Purpose, advise, measure, min_category


def _rates(ms: float, *operations: str) -> dict[str, object]:
    return {"ops_per_second": dict.fromkeys(operations, 1000.0 / ms)}


def test_key_exchange_prefers_the_hybrid_tls_uses() -> None:
    advice = advise("key-exchange", 5)
    assert advice.recommended is not None and advice.recommended.algorithm == "X25519MLKEM768"
    assert advice.recommended.why[0].startswith("hybrid first")
    # every other KEM is an alternative with the rule that put it below, or rejected with one
    listed = {c.algorithm for c in [*advice.alternatives, *advice.rejected]}
    assert "X25519" in listed and all(c.why for c in advice.alternatives + advice.rejected)
    x25519 = next(c for c in advice.rejected if c.algorithm == "X25519")
    assert any("Shor" in why for why in x25519.why)


def test_lifetime_raises_the_category() -> None:
    assert [min_category(y) for y in (0, 9.9, 10, 19, 20, 50)] == [1, 1, 3, 3, 5, 5]
    long = advise(Purpose.ENCRYPTION, 25)
    assert long.recommended is not None and long.recommended.algorithm == "P384MLKEM1024"
    ml_kem_768 = next(c for c in long.rejected if c.algorithm == "ML-KEM-768")
    assert ml_kem_768.why == ["NIST category 3 is below the 5 that 25 years of protection call for"]


def test_size_budget_and_why_not_the_others() -> None:
    # 2300 bytes on the wire: the hybrid (2336) no longer fits; ML-KEM-768 (2272) does.
    advice = advise("key-exchange", 12, max_bytes=2300)
    assert advice.recommended is not None and advice.recommended.algorithm == "ML-KEM-768"
    hybrid = next(c for c in advice.rejected if c.algorithm == "X25519MLKEM768")
    assert hybrid.why == ["public key + ciphertext of 2336 bytes is over the 2300-byte budget"]
    nothing = advise("signature", 10, max_bytes=100)
    assert nothing.recommended is None and nothing.alternatives == []
    assert nothing.notes[0].startswith("nothing fits every budget")


def test_measured_latency_budget_decides() -> None:
    # Stored benchmarks: the hybrid takes 3 ms per handshake here, ML-KEM-768 0.3 ms.
    benchmarks = {
        "X25519MLKEM768": _rates(1.0, "keygen", "encapsulate", "decapsulate"),
        "ML-KEM-768": _rates(0.1, "keygen", "encapsulate", "decapsulate"),
    }
    advice = advise("key-exchange", 12, max_latency_ms=2.0, benchmarks=benchmarks)
    assert advice.recommended is not None and advice.recommended.algorithm == "ML-KEM-768"
    assert advice.recommended.latency_ms == pytest.approx(0.3)
    hybrid = next(c for c in advice.rejected if c.algorithm == "X25519MLKEM768")
    assert hybrid.why == ["3.000 ms per handshake measured, over the 2 ms budget"]
    # Unmeasured candidates are kept, but ranked after measured ones and said to be so.
    unmeasured = [c for c in advice.alternatives if c.latency_ms is None]
    assert all("not measured" in " ".join(c.why) for c in unmeasured)


def test_real_measurement_feeds_the_latency_rule() -> None:
    measured = measure(["ML-KEM-768", "ML-DSA-44"], purpose="key-exchange", repeats=1)
    assert set(measured["ML-KEM-768"]["ops_per_second"]) == {"keygen", "encapsulate", "decapsulate"}
    assert "ML-DSA-44" not in measured  # a signature scheme does no key exchange
    advice = advise("key-exchange", 12, benchmarks=measured, max_bytes=2300)
    assert advice.recommended is not None and advice.recommended.latency_ms is not None
    assert advice.recommended.latency_ms > 0


def test_long_lived_signatures_prefer_hash_based() -> None:
    advice = advise("long-lived-signature", 30)
    best = advice.recommended
    assert best is not None and best.algorithm.startswith("SLH-DSA-") and best.nist_level == 5
    assert best.algorithm.endswith("256s")  # the small signatures of the "s" sets
    assert any("LMS" in note for note in advice.notes)
    signature = advise("signature", 10)
    assert signature.recommended is not None and signature.recommended.algorithm == "ML-DSA-65"


def test_policy_status_and_bad_input() -> None:
    def status(algorithm: str) -> Status:
        return Status.DEPRECATED if algorithm == "X25519MLKEM768" else get_info(algorithm).status

    advice = advise("key-exchange", 5, status_of=status)
    assert advice.recommended is not None and advice.recommended.algorithm != "X25519MLKEM768"
    hybrid = next(c for c in advice.rejected if c.algorithm == "X25519MLKEM768")
    assert hybrid.why == ["deprecated by policy: no new keys under it"]
    with pytest.raises(ValueError, match="unknown purpose"):
        advise("teleportation", 1)
    with pytest.raises(ValueError, match="lifetime must be"):
        advise("signature", -1)
    assert advise("data-at-rest", 10).as_dict()["notes"][0].startswith("the data itself")
