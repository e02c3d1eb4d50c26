"""The envelope benchmark runs every mode and reports ratios (no timing assertions)."""

from __future__ import annotations

from qrc.crypto.bench_envelope import TARGET_RATIO, envelope_ratios


def test_envelope_ratios_cover_every_mode_and_operation() -> None:
    rows = envelope_ratios(quick=True, size=64)
    assert {(row["case"], row["operation"]) for row in rows} == {
        (case, operation)
        for case in ("hpke", "kem-dem", "symmetric")
        for operation in ("seal", "open")
    }
    for row in rows:
        assert set(row) == {
            "envelope",
            "case",
            "algorithm",
            "operation",
            "baseline",
            "ratio",
            "target",
        }
        assert float(str(row["ratio"])) > 0
        assert row["target"] == TARGET_RATIO
