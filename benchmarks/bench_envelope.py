"""Envelope overhead against the bare primitive (ratios, not absolute times).

Usage: ``python benchmarks/bench_envelope.py [--quick] [--size BYTES] [--sizes N,...]
[--json]``. Two tables: every envelope mode at ``--size`` (1 KiB;
:func:`qrc.crypto.bench_envelope.envelope_ratios`, which ``qrc bench`` also calls), and
the HPKE envelope against pyca's HPKE at each size from 64 B to 16 MiB
(:func:`qrc.crypto.bench_envelope.size_ratios`; targets 1.10 up to 64 KiB, 1.25 at
1 MiB). Run it several times, each in a fresh process: what the allocator does with large
buffers depends on what the process allocated before (a 16 MiB buffer raises glibc's mmap
threshold for the rest of the process), so sizes run in increasing order. Exits with
status 1 if a ratio is over its target.
"""

from __future__ import annotations

import argparse
import json
import sys

from qrc.crypto.bench_envelope import SIZES, TARGET_RATIO, envelope_ratios, size_ratios


def _size_name(size: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 0.1 s per measurement")
    parser.add_argument("--size", type=int, default=1024, help="plaintext bytes (1024)")
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="plaintext sizes of the HPKE table, comma-separated (64 B to 16 MiB)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(",") if size)
    rows = envelope_ratios(quick=args.quick, size=args.size)
    sized = size_ratios(quick=args.quick, sizes=tuple(sorted(sizes)))
    if args.json:
        print(json.dumps({"modes": rows, "sizes": sized}, indent=2))
    else:
        print(f"envelope / bare, {args.size}-byte plaintext (target <= {TARGET_RATIO})")
        for row in rows:
            print(
                f"{row['case']:<10} {row['algorithm']:<16} {row['operation']:<5} "
                f"{row['ratio']:>6.3f}   vs {row['baseline']}"
            )
        algorithm = sized[0]["algorithm"] if sized else "-"
        print(f"\nHPKE envelope ({algorithm}) / pyca HPKE, per size")
        for row in sized:
            target = "-" if row["target"] is None else f"<= {row['target']}"
            size = _size_name(int(str(row["size"])))
            print(f"{size:>8}  {row['operation']:<5} {float(str(row['ratio'])):>6.3f}   {target}")
    over = [row for row in rows if float(str(row["ratio"])) > TARGET_RATIO]
    over += [
        row
        for row in sized
        if row["target"] is not None and float(str(row["ratio"])) > float(str(row["target"]))
    ]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
