"""Smoke test of the memory benchmark: it runs and reports (the bound itself is its job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_memory.py"


def test_the_memory_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--keys", "50", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["keys"] == 50 and report["cache_public_keys"] == 50
    assert report["rss_after_all_mib"] > 0
