"""Encrypted Redis values against plain ones (ratios, not absolute times).

Usage: ``python benchmarks/bench_redis.py [--ops N] [--runs R] [--pipeline B] [--json]``.
SET then GET of ``--ops`` values (64 bytes) on the Redis at ``QRC_TEST_REDIS_URL``
(default ``redis://127.0.0.1:6379/0``, keys under a random prefix, deleted afterwards), one
command per round trip and pipelined ``--pipeline`` commands at a time, through the plain
redis-py client and through :class:`qrc.data.redis.EncryptedRedis` (AES-256-GCM key, DEK
cache on, library mode), all in the same run. Ratios are wrapped ops/s over plain ops/s;
the figures are medians over the runs. No target is set by the issue: the figures are
reported.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from qrc.data.redis import EncryptedRedis
from qrc.data.sdk import DataEncryptor
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import Argon2Params, LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

REDIS_URL = os.environ.get("QRC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
VALUE = b"v" * 64


def _rate(ops: int, action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return ops / (time.perf_counter() - start)


def _one_by_one(client: Any, names: list[str]) -> tuple[float, float]:
    def sets() -> None:
        for name in names:
            client.set(name, VALUE)

    def gets() -> None:
        for name in names:
            if client.get(name) != VALUE:
                raise AssertionError("read back something else")

    return _rate(len(names), sets), _rate(len(names), gets)


def _pipelined(client: Any, names: list[str], batch: int) -> tuple[float, float]:
    def sets() -> None:
        for start in range(0, len(names), batch):
            pipe = client.pipeline(transaction=False)
            for name in names[start : start + batch]:
                pipe.set(name, VALUE)
            pipe.execute()

    def gets() -> None:
        for start in range(0, len(names), batch):
            pipe = client.pipeline(transaction=False)
            for name in names[start : start + batch]:
                pipe.get(name)
            if any(value != VALUE for value in pipe.execute()):
                raise AssertionError("read back something else")

    return _rate(len(names), sets), _rate(len(names), gets)


def _service(directory: Path) -> KeyService:
    db = Database(f"sqlite:///{directory / 'qrc.db'}")
    db.upgrade()
    params = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
    custody = LocalCustody.create(directory / "kek.sealed", "bench", params=params)
    service = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))
    service.keys.create_key(name="bench", purpose="encryption", algorithm="AES-256-GCM", actor="b")
    return service


def run(ops: int, runs: int, batch: int) -> dict[str, Any]:
    plain = redis.Redis.from_url(REDIS_URL)
    prefix = "qrc-bench:" + secrets.token_hex(4) + ":"
    names = [f"{prefix}{i}" for i in range(ops)]
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            service = _service(Path(tmp))
            sdk = DataEncryptor.local(service)
            wrapped = EncryptedRedis(plain, sdk, "bench")
            for _ in range(runs):
                cases = {
                    "plain": _one_by_one(plain, names),
                    "wrapped": _one_by_one(wrapped, names),
                    "plain_pipelined": _pipelined(plain, names, batch),
                    "wrapped_pipelined": _pipelined(wrapped, names, batch),
                }
                for case, (set_rate, get_rate) in cases.items():
                    results.setdefault(case + "_set_ops", []).append(set_rate)
                    results.setdefault(case + "_get_ops", []).append(get_rate)
                for mode in ("", "_pipelined"):
                    for op in ("set", "get"):
                        ratio = (
                            cases["wrapped" + mode][op == "get"]
                            / cases["plain" + mode][op == "get"]
                        )
                        results.setdefault(f"ratio{mode}_{op}", []).append(ratio)
            sdk.close()
            service.close()
    finally:
        for start in range(0, len(names), 1000):
            plain.delete(*names[start : start + 1000])
        plain.close()
    summary: dict[str, Any] = {k: round(statistics.median(v), 3) for k, v in results.items()}
    summary.update(ops=ops, runs=runs, pipeline=batch, value_bytes=len(VALUE))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000, help="values per run (5000)")
    parser.add_argument("--runs", type=int, default=5, help="runs (5); medians reported")
    parser.add_argument("--pipeline", type=int, default=100, help="commands per pipeline")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.ops, args.runs, args.pipeline)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Redis, {result['ops']} x {result['value_bytes']}-byte values, {result['runs']} runs")
    for mode, label in (("", "one by one"), ("_pipelined", f"pipelined x{args.pipeline}")):
        for op in ("set", "get"):
            plain_rate = result[f"plain{mode}_{op}_ops"]
            wrapped_rate = result[f"wrapped{mode}_{op}_ops"]
            print(
                f"{label:<16} {op.upper()}  plain {plain_rate:>9.0f}/s  wrapped "
                f"{wrapped_rate:>9.0f}/s  ratio {result[f'ratio{mode}_{op}']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
