"""Resident memory of a key service that touches many keys: after 1,000 and after N.

Creates ``--keys`` ML-KEM-768 keys in a fresh SQLite store and encrypts once under each (so
every key's public key passes through the caches), then prints the process's resident set
size after the first 1,000 keys and after all of them, and the ratio (target: at most 1.2).

    python benchmarks/bench_memory.py [--keys 100000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import Argon2Params, LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

TARGET_RATIO = 1.2
_FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


def resident_bytes() -> int:
    """The current resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def touch(service: KeyService, start: int, stop: int) -> None:
    for i in range(start, stop):
        name = f"k{i}"
        service.keys.create_key(name=name, purpose="encryption", algorithm="ML-KEM-768", actor="b")
        service.crypto.encrypt(name, b"x" * 64, actor="b")


def measure(keys: int, directory: Path) -> dict[str, float]:
    db = Database(f"sqlite:///{directory / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(directory / "kek.sealed", "bench", params=_FAST_ARGON2)
    service = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))
    first = min(1_000, keys)
    start = time.perf_counter()
    touch(service, 0, first)
    gc.collect()
    after_first = resident_bytes()
    touch(service, first, keys)
    gc.collect()
    after_all = resident_bytes()
    caches = {s.name: s.size for s in service.cache_stats()}
    service.close()
    return {
        "keys": keys,
        "rss_after_1000_mib": round(after_first / 2**20, 1),
        "rss_after_all_mib": round(after_all / 2**20, 1),
        "ratio": round(after_all / after_first, 3),
        "seconds": round(time.perf_counter() - start, 1),
        **{f"cache_{name}": size for name, size in caches.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        result = measure(args.keys, Path(directory))
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print(
            f"resident memory after 1,000 keys {result['rss_after_1000_mib']} MiB, after "
            f"{result['keys']:,} keys {result['rss_after_all_mib']} MiB: ratio "
            f"{result['ratio']} (target <= {TARGET_RATIO}); {result['seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
