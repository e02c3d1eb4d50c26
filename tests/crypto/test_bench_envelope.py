"""The envelope benchmark runs every mode and size and reports ratios (no timing assertions)."""

from __future__ import annotations

from qrc.crypto.bench_envelope import (
    SIZE_TARGETS,
    SIZES,
    TARGET_RATIO,
    envelope_ratios,
    size_ratios,
)


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


def test_size_ratios_report_seal_and_open_per_size() -> None:
    rows = size_ratios(quick=True, sizes=(64, 1 << 20))
    assert [(row["size"], row["operation"]) for row in rows] == [
        (64, "seal"),
        (64, "open"),
        (1 << 20, "seal"),
        (1 << 20, "open"),
    ]
    for row in rows:
        assert float(str(row["ratio"])) > 0
        assert row["target"] == SIZE_TARGETS[int(str(row["size"]))]
    assert SIZES == (64, 1024, 64 << 10, 1 << 20, 16 << 20)
