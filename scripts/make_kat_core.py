"""Record the known answers of the seed-based algorithms (src/qrc/crypto/data/kat_core.json).

Run only after the implementation has passed the conformance tests against the
third-party vectors: the answers recorded here are what later self-tests compare with.

    .venv/bin/python scripts/make_kat_core.py
"""

from __future__ import annotations

import json
from pathlib import Path

from qrc.crypto.registry import all_algorithms
from qrc.crypto.selftest import core_answer

# Algorithms whose answers come from scripts/make_kat.py (pqcrypto cannot seed keygen).
STORED_BY_PQCRYPTO = {"pqcrypto"}


def main() -> None:
    answers = {}
    for info in all_algorithms():
        if info.provider in STORED_BY_PQCRYPTO and info.id != "ML-KEM-512":
            continue
        answers[info.id] = core_answer(info.id)
        print(f"recorded {info.id}")
    path = Path(__file__).resolve().parents[1] / "src/qrc/crypto/data/kat_core.json"
    path.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
