"""The listener benchmark measures what it says: each pair negotiates the group and
certificate it names (checked before timing), and every rate is a real rate."""

from __future__ import annotations

from qrc.transit.listener_bench import listener_benchmark


def test_listener_benchmark_compares_the_four_pairs() -> None:
    results = listener_benchmark(rounds=1, handshakes=3)
    assert [(c.subject, c.baseline) for c in results] == [
        ("X25519MLKEM768", "X25519"),
        ("X25519MLKEM768", "X25519"),
        ("ML-DSA-65", "ECDSA-secp256r1"),
        ("mutual", "server-only"),
    ]
    assert all(c.subject_rate > 0 and c.baseline_rate > 0 and c.ratio > 0 for c in results)
