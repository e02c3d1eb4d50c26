"""The handshake benchmark runs and measures the groups it names (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrc.transit.bench import TARGET_RATIO, handshake_benchmark


def test_handshake_benchmark_returns_positive_rates(tmp_path: Path) -> None:
    result = handshake_benchmark(rounds=1, handshakes=3, tls_dir=tmp_path)
    assert result.pq_group == "X25519MLKEM768" and result.classical_group == "X25519"
    assert result.pq_rate > 0 and result.classical_rate > 0 and result.ratio > 0
    assert (tmp_path / "tls" / "ca.pem").exists()
    assert 0 < TARGET_RATIO < 1


def test_handshake_benchmark_refuses_a_group_it_cannot_measure() -> None:
    with pytest.raises(Exception, match=r"(?i)group"):
        handshake_benchmark(rounds=1, handshakes=1, classical_group="NoSuchGroup")
