"""Start-up of the ``qrc`` command line against the least a Typer command doing HPKE imports.

Usage: ``python benchmarks/bench_cli.py [--runs N] [--quick] [--json]``. Each case is a fresh
process, timed from spawn to exit; the cases run interleaved, in a rotated order each round,
after one untimed warm-up round, and the table gives each one's median and its ratio to the
baseline's median, all from the same run:

* ``python -c pass`` — the interpreter alone;
* ``baseline`` — ``python -c "import typer, cryptography.hazmat.primitives.hpke"``;
* ``qrc --help``;
* ``qrc encrypt`` — 1 KiB to an X25519MLKEM768 public key (target: at most 2x the baseline);
* ``qrc verify`` — a 100-byte message and an MLDSA65-Ed25519-SHA512 signature bundle.

Exits with status 1 if ``qrc encrypt`` is over its target. What a command imports, and what
each import costs: ``python -X importtime -m qrc encrypt -r KEY.pub -i FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

TARGET_RATIO = 2.0
BASELINE = "baseline"
ENCRYPT = "qrc encrypt 1 KiB"


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    stdin: Path | None = None


def _qrc() -> list[str]:
    script = Path(sys.executable).with_name("qrc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qrc"]


def _prepare(work: Path) -> list[Case]:
    qrc = _qrc()
    for algorithm, name in (("X25519MLKEM768", "alice"), ("MLDSA65-Ed25519-SHA512", "signer")):
        keygen = [*qrc, "keygen", "-a", algorithm, "-o", str(work / name)]
        subprocess.run(keygen, check=True, capture_output=True)
    message, small = work / "message", work / "small"
    message.write_bytes(os.urandom(1024))
    small.write_bytes(os.urandom(100))
    signature = work / "small.sig"
    sign = [*qrc, "sign", "-k", str(work / "signer"), "-i", str(small), "-o", str(signature)]
    subprocess.run(sign, check=True, capture_output=True)
    hpke = "import typer, cryptography.hazmat.primitives.hpke"
    return [
        Case("python -c pass", [sys.executable, "-c", "pass"]),
        Case(BASELINE, [sys.executable, "-c", hpke]),
        Case("qrc --help", [*qrc, "--help"]),
        Case(ENCRYPT, [*qrc, "encrypt", "-r", str(work / "alice.pub")], message),
        Case(
            "qrc verify",
            [*qrc, "verify", "-p", str(work / "signer.pub"), "-s", str(signature)],
            small,
        ),
    ]


def _time(case: Case, env: dict[str, str]) -> float:
    with ExitStack() as stack:
        stdin = stack.enter_context(case.stdin.open("rb")) if case.stdin else subprocess.DEVNULL
        start = time.perf_counter()
        done = subprocess.run(
            case.argv,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{case.name} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed


def measure(cases: list[Case], runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Seconds per run of each case: ``runs`` rounds, interleaved, order rotated per round."""
    for case in cases:  # warm-up: byte-code caches, page cache
        _time(case, env)
    times: dict[str, list[float]] = {case.name: [] for case in cases}
    for round_ in range(runs):
        shift = round_ % len(cases)
        for case in cases[shift:] + cases[:shift]:
            times[case.name].append(_time(case, env))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed rounds (21)")
    parser.add_argument("--quick", action="store_true", help="7 rounds")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    parser.add_argument(
        "--environment-bytecode",
        action="store_true",
        help="keep this environment's byte-code settings (PYTHONDONTWRITEBYTECODE: every run "
        "compiles qrc from source) instead of a byte-code cache, as an installed qrc has",
    )
    args = parser.parse_args()
    runs = 7 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = dict(os.environ)
        if not args.environment_bytecode:
            # Every case alike: byte code cached (written in the warm-up round) under a
            # private prefix, not next to the sources.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        times = measure(_prepare(Path(tmp)), runs, env)
    base = statistics.median(times[BASELINE])
    rows = [
        {
            "case": name,
            "median_ms": round(statistics.median(values) * 1000, 1),
            "min_ms": round(min(values) * 1000, 1),
            "ratio": round(statistics.median(values) / base, 2),
        }
        for name, values in times.items()
    ]
    ratio = statistics.median(times[ENCRYPT]) / base
    if args.json:
        print(json.dumps({"runs": runs, "target": TARGET_RATIO, "rows": rows}, indent=2))
    else:
        print(f"start-up, {runs} interleaved runs each; ratio = median / baseline's median")
        print(f"{'case':<20} {'median ms':>10} {'min ms':>8} {'ratio':>6}")
        for row in rows:
            print(f"{row['case']:<20} {row['median_ms']:>10} {row['min_ms']:>8} {row['ratio']:>6}")
        verdict = "over" if ratio > TARGET_RATIO else "within"
        print(f"{ENCRYPT}: {ratio:.2f}x the baseline, {verdict} the target ({TARGET_RATIO}x)")
    return 1 if ratio > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
