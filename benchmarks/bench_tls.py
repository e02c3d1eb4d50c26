"""New TLS 1.3 handshakes per second: X25519MLKEM768 against classical X25519.

Usage: ``python benchmarks/bench_tls.py [--quick] [--rounds N] [--handshakes N] [--json]``.
Same ML-DSA-65 server certificate and server context, same run, rounds alternating; the
measuring code is :func:`qrc.transit.bench.handshake_benchmark`. Prints the ratio and exits
with status 1 if it is under the target (0.80).
"""

from __future__ import annotations

import argparse
import json
import sys

from qrc.transit.bench import TARGET_RATIO, handshake_benchmark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 30 handshakes")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--handshakes", type=int, default=200, help="per round and group")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    args = parser.parse_args()
    rounds, handshakes = (3, 30) if args.quick else (args.rounds, args.handshakes)
    result = handshake_benchmark(rounds=rounds, handshakes=handshakes)
    if args.json:
        print(
            json.dumps(
                {
                    "pq_group": result.pq_group,
                    "pq_handshakes_per_s": round(result.pq_rate, 1),
                    "classical_group": result.classical_group,
                    "classical_handshakes_per_s": round(result.classical_rate, 1),
                    "ratio": round(result.ratio, 3),
                    "target": TARGET_RATIO,
                    "rounds": rounds,
                    "handshakes": handshakes,
                },
                indent=2,
            )
        )
    else:
        print(
            f"new TLS 1.3 handshakes/s, ML-DSA-65 server certificate, median of {rounds} "
            f"rounds x {handshakes}"
        )
        print(f"  {result.pq_group:<16} {result.pq_rate:8.1f}")
        print(f"  {result.classical_group:<16} {result.classical_rate:8.1f}")
        print(f"  ratio {result.ratio:.3f} (target >= {TARGET_RATIO})")
    return 0 if result.ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
