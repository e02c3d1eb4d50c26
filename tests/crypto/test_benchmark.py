"""The benchmark harness: rates, sizes and the provider comparison (no timing asserted)."""

from __future__ import annotations

from qrc.crypto.benchmark import QUICK_SET, bench_algorithm, compare_providers, ops_per_second
from qrc.crypto.registry import get_info


def test_ops_per_second_counts_calls() -> None:
    calls = []
    rate = ops_per_second(lambda: calls.append(1), budget=0.01, batches=3)
    assert rate > 0 and len(calls) >= 4  # one warm-up call and at least one per batch


def test_bench_algorithm_reports_each_operation_and_registry_sizes() -> None:
    kem = bench_algorithm("ML-KEM-768", budget=0.01)
    assert set(kem.ops) == {"keygen", "encapsulate", "decapsulate"}
    assert kem.sizes["ciphertext"] == get_info("ML-KEM-768").ciphertext_size
    sig = bench_algorithm("Ed25519", budget=0.01)
    assert set(sig.ops) == {"keygen", "sign", "verify"} and sig.sizes["signature"] == 64
    aead = bench_algorithm("AES-256-GCM", budget=0.01)
    assert set(aead.ops) == {"encrypt_1KiB", "decrypt_1KiB"}


def test_quick_set_names_real_algorithms() -> None:
    for algorithm in QUICK_SET:
        assert get_info(algorithm).id == algorithm


def test_compare_providers_covers_the_shared_algorithms() -> None:
    rows = compare_providers(quick=True)
    pairs = {(row["algorithm"], row["provider"]) for row in rows}
    for algorithm in ("ML-KEM-768", "ML-KEM-1024"):
        assert {(algorithm, "pyca"), (algorithm, "pycryptodome")} <= pairs
    for algorithm in ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87"):
        assert {(algorithm, "pyca"), (algorithm, "pqcrypto")} <= pairs
    assert all(row["chosen"] == (row["provider"] == "pyca") for row in rows)
