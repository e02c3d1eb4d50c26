"""The listener benchmark measures what it says: each pair negotiates the group and
certificate it names (checked before timing), and every rate is a real rate."""

from __future__ import annotations

from qrc.transit.listener_bench import listener_benchmark


def test_listener_benchmark_compares_the_four_pairs() -> None:
    results = listener_benchmark(rounds=1, handshakes=3)
    pairs = [
        ("X25519MLKEM768", "X25519"),
        ("X25519MLKEM768", "X25519"),
        ("ML-DSA-65", "ECDSA-secp256r1"),
        ("mutual", "server-only"),
    ]
    # Each pair twice: the whole handshake, then the server's part of the same handshakes.
    assert [(c.subject, c.baseline) for c in results] == [p for p in pairs for _ in (0, 1)]
    assert [c.name.endswith("(server side)") for c in results] == [False, True] * 4
    assert all(c.subject_rate > 0 and c.baseline_rate > 0 and c.ratio > 0 for c in results)
    # The server's part of a handshake is a part: it runs faster than the whole.
    for whole, server in zip(results[::2], results[1::2], strict=True):
        assert server.subject_rate > whole.subject_rate
        assert server.baseline_rate > whole.baseline_rate
