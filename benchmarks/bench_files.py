"""Files in the age format against the raw AEAD and against Debian's ``age``, same run.

    python benchmarks/bench_files.py [--size-mib 256] [--large] [--runs 3] [--json]

For one file of random bytes (256 MiB, or 1 GiB with ``--large``) it times, ``--runs``
times each, interleaved, and reports medians:

* ``raw``: ChaCha20-Poly1305 over the same bytes in 64 KiB chunks with a counter nonce,
  read from and written to files the same way (the floor any age implementation has);
* ``qrc``: :func:`qrc.data.age.encrypt` / :func:`~qrc.data.age.decrypt` in this process,
  to an ``age1pq1`` (ML-KEM-768 + X25519) recipient; ratio = raw time / qrc time
  (target: at least 0.90);
* ``qrc file``: the command line, a fresh process, with its peak resident memory
  (the whole process, by GNU ``time``; target under 64 MB at 1 GiB);
* ``age``: Debian's ``age`` binary (X25519: 1.1.1 has no post-quantum recipients), also a
  fresh process, with its peak memory.

Files live in a temporary directory (``--dir``, default the system's); the page cache
holds them after the first run, so this measures the CPU, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from qrc.data.age import HybridIdentity, X25519Identity, decrypt, encrypt

CHUNK = 64 << 10
TARGET_RATIO = 0.90
TARGET_RSS_MB = 64


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def raw_encrypt(src: Path, dst: Path, key: bytes) -> None:
    cipher = ChaCha20Poly1305(key)
    plain, sealed = bytearray(CHUNK), bytearray(CHUNK + 16)
    plain_view, sealed_view = memoryview(plain), memoryview(sealed)
    size = src.stat().st_size
    with src.open("rb") as fin, dst.open("wb") as fout:
        counter = 0
        while n := fin.readinto(plain):
            size -= n
            cipher.encrypt_into(
                _nonce(counter, size == 0), plain_view[:n], None, sealed_view[: n + 16]
            )
            fout.write(sealed_view[: n + 16])
            counter += 1


def raw_decrypt(src: Path, dst: Path, key: bytes) -> None:
    cipher = ChaCha20Poly1305(key)
    plain, sealed = bytearray(CHUNK), bytearray(CHUNK + 16)
    plain_view, sealed_view = memoryview(plain), memoryview(sealed)
    size = src.stat().st_size
    with src.open("rb") as fin, dst.open("wb") as fout:
        counter = 0
        while n := fin.readinto(sealed):
            size -= n
            cipher.decrypt_into(
                _nonce(counter, size == 0), sealed_view[:n], None, plain_view[: n - 16]
            )
            fout.write(plain_view[: n - 16])
            counter += 1


def qrc_encrypt(src: Path, dst: Path, identity: HybridIdentity) -> None:
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with src.open("rb") as fin, dst.open("wb") as fout, encrypt(fout, [identity.recipient()]) as w:
        while n := fin.readinto(buffer):
            w.write(view[:n])


def qrc_decrypt(src: Path, dst: Path, identity: HybridIdentity) -> None:
    with src.open("rb") as fin, dst.open("wb") as fout:
        for chunk in decrypt(fin, [identity]).chunks():
            fout.write(chunk)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def child(argv: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MB of one child process.

    The peak comes from GNU ``time`` (``%M``), whose own child starts from a small
    process: ``ru_maxrss`` of a child forked from this one would count the pages this
    benchmark holds, because Linux carries the pre-``exec`` peak over.
    """
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    result = subprocess.run([*timer, *argv], capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {result.stderr.decode()}")
    if not timer:
        return seconds, float("nan")
    return seconds, int(result.stderr.decode().split()[-1]) / 1024  # KiB -> MiB


def _qrc() -> list[str]:
    script = Path(sys.executable).with_name("qrc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qrc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--large", action="store_true", help="1 GiB (the memory target's size)")
    parser.add_argument("--runs", type=int, default=3)
    shm = Path("/dev/shm")
    parser.add_argument("--dir", type=Path, default=shm if shm.is_dir() else None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = (1 << 30) if args.large else args.size_mib << 20
    age = shutil.which("age")
    results: dict[str, list[float]] = {}
    memory: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as work_dir:
        work = Path(work_dir)
        plain = work / "plain"
        with plain.open("wb") as handle:
            for _ in range(size // (16 << 20)):
                handle.write(os.urandom(16 << 20))
            handle.write(os.urandom(size % (16 << 20)))
        key = os.urandom(32)
        identity = HybridIdentity.generate()
        age_identity = X25519Identity.generate()
        pq_file, age_id_file = work / "pq.txt", work / "age.txt"
        pq_file.write_text(f"{identity}\n")
        age_id_file.write_text(f"{age_identity}\n")
        raw_ct, qrc_ct, age_ct, out = (work / n for n in ("raw.ct", "qrc.age", "age.age", "out"))
        cases: dict[str, Callable[[], float]] = {
            "raw encrypt": lambda: timed(lambda: raw_encrypt(plain, raw_ct, key)),
            "qrc encrypt": lambda: timed(lambda: qrc_encrypt(plain, qrc_ct, identity)),
            "raw decrypt": lambda: timed(lambda: raw_decrypt(raw_ct, out, key)),
            "qrc decrypt": lambda: timed(lambda: qrc_decrypt(qrc_ct, out, identity)),
        }
        recipient = str(identity.recipient())
        cli: dict[str, list[str | Path]] = {
            "qrc file encrypt": [*_qrc(), "file", "encrypt", "-r", recipient, "-o", qrc_ct, plain],
            "qrc file decrypt": [*_qrc(), "file", "decrypt", "-i", pq_file, "-o", out, qrc_ct],
        }
        if age:
            cli["age encrypt"] = [age, "-r", str(age_identity.recipient()), "-o", age_ct, plain]
            cli["age decrypt"] = [age, "-d", "-i", age_id_file, "-o", out, age_ct]
        for run in range(args.runs + 1):  # the first round warms the page cache, untimed
            for name, case in cases.items():
                seconds = case()
                if run:
                    results.setdefault(name, []).append(seconds)
            for name, argv in cli.items():
                # Each tool writes a new file, as in use: the previous output is removed
                # first (qrc file writes a temporary file and renames it, which would
                # otherwise need fresh pages while the old file still holds its own).
                Path(argv[argv.index("-o") + 1]).unlink(missing_ok=True)
                seconds, peak = child([str(a) for a in argv])
                if run:
                    results.setdefault(name, []).append(seconds)
                    memory.setdefault(name, []).append(peak)
            print(f"round {run} done", file=sys.stderr) if not args.json else None
    medians = {name: statistics.median(times) for name, times in results.items()}
    mib = size / (1 << 20)
    report = {
        "size_mib": mib,
        "runs": args.runs,
        "median_seconds": medians,
        "mib_per_second": {name: mib / s for name, s in medians.items()},
        "peak_rss_mb": {name: max(values) for name, values in memory.items()},
        "ratio_encrypt": medians["raw encrypt"] / medians["qrc encrypt"],
        "ratio_decrypt": medians["raw decrypt"] / medians["qrc decrypt"],
    }
    if age:
        report["qrc_file_vs_age_encrypt"] = medians["age encrypt"] / medians["qrc file encrypt"]
        report["qrc_file_vs_age_decrypt"] = medians["age decrypt"] / medians["qrc file decrypt"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


def _print(report: dict[str, object]) -> None:
    print(f"{report['size_mib']:.0f} MiB, median of {report['runs']} runs")
    print(f"{'case':<18}{'seconds':>9}{'MiB/s':>9}{'peak RSS MB':>13}")
    seconds = report["median_seconds"]
    rates = report["mib_per_second"]
    peaks = report["peak_rss_mb"]
    assert isinstance(seconds, dict) and isinstance(rates, dict) and isinstance(peaks, dict)
    for name, value in seconds.items():
        peak = f"{peaks[name]:.1f}" if name in peaks else "-"
        print(f"{name:<18}{value:>9.3f}{rates[name]:>9.0f}{peak:>13}")
    for name in ("encrypt", "decrypt"):
        ratio = report[f"ratio_{name}"]
        assert isinstance(ratio, float)
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(f"qrc/raw {name}: {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")
        versus = report.get(f"qrc_file_vs_age_{name}")
        if isinstance(versus, float):
            print(f"qrc file vs age {name}: {versus:.2f}x age's speed")
    for name, peak in peaks.items():
        verdict = "under" if peak < TARGET_RSS_MB else "OVER"
        print(f"peak RSS {name}: {peak:.1f} MB ({verdict} {TARGET_RSS_MB} MB)")


if __name__ == "__main__":
    sys.exit(main())
