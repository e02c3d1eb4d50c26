"""Envelope overhead against the bare primitive (ratios, not absolute times).

Usage: ``python benchmarks/bench_envelope.py [--quick] [--size BYTES] [--json]``. The
measuring code is :func:`qrc.crypto.bench_envelope.envelope_ratios`, which ``qrc bench``
also calls. Exits with status 1 if a ratio is over the target (1.25).
"""

from __future__ import annotations

import argparse
import json
import sys

from qrc.crypto.bench_envelope import TARGET_RATIO, envelope_ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 0.1 s per measurement")
    parser.add_argument("--size", type=int, default=1024, help="plaintext bytes (1024)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    rows = envelope_ratios(quick=args.quick, size=args.size)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"envelope / bare, {args.size}-byte plaintext (target <= {TARGET_RATIO})")
        for row in rows:
            print(
                f"{row['case']:<10} {row['algorithm']:<16} {row['operation']:<5} "
                f"{row['ratio']:>6.3f}   vs {row['baseline']}"
            )
    return 0 if all(float(str(row["ratio"])) <= TARGET_RATIO for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
