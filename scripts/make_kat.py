"""Record the known answers of the algorithms whose library cannot be seeded.

pqcrypto draws its own randomness for key generation, encapsulation and SLH-DSA signing,
so the power-on self-test of HQC, Classic McEliece and SLH-DSA checks answers recorded
once by this script: ``src/qrc/crypto/data/kat.json.gz`` (gzip-compressed JSON, byte
strings in base64; see ``qrc.crypto.backends.pqcrypto.known_answer_test``).

* KEMs: a secret key ``sk``, a ciphertext ``ct`` and ``ss_sha256``, the SHA-256 of the
  shared secret. Classic McEliece ``f`` sets decapsulate exactly as their plain twins (the
  secret key formats are the same; only key generation differs), so an ``f`` set's record
  is ``{"same_as": plain set}``: its own decapsulation code runs on the plain set's
  answer, which keeps the file small.
* SLH-DSA: a public key ``pk`` and a signature ``sig`` of the fixed message and context.

Run from the repository root: ``.venv/bin/python scripts/make_kat.py``. Each run draws new
keys, so the file changes every time; commit it only when the format or the sets change.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

from qrc.crypto.backends import pqcrypto as backend
from qrc.crypto.registry import Kind, all_algorithms

OUT = Path(__file__).resolve().parents[1] / "src" / "qrc" / "crypto" / "data" / "kat.json.gz"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kem_entry(module: str) -> dict[str, str]:
    lib = backend._library("kem", module)
    pk, sk = lib.keygen()
    ct, ss = lib.encaps(pk)
    digest = hashlib.sha256(bytes(ss)).hexdigest()
    return {"sk": _b64(bytes(sk)), "ct": _b64(bytes(ct)), "ss_sha256": digest}


def _slh_entry(module: str) -> dict[str, str]:
    lib = backend._library("sign", module)
    pk, sk = lib.keygen()
    sig = lib.sign(sk, backend.KAT_MESSAGE, context=backend.KAT_CONTEXT)
    return {"pk": _b64(bytes(pk)), "sig": _b64(bytes(sig))}


def main() -> None:
    answers: dict[str, dict[str, str]] = {}
    for info in all_algorithms():
        if info.provider != "pqcrypto" or info.id.startswith("ML-KEM"):
            continue  # ML-KEM-512 is seeded: its KAT lives with the core answers
        module = backend.SCHEMES[info.id]._module  # type: ignore[attr-defined]
        if info.kind is Kind.SIGNATURE:
            answers[info.id] = _slh_entry(module)
        elif info.id.startswith("Classic-McEliece") and info.id.endswith("f"):
            answers[info.id] = {"same_as": info.id[:-1]}
        else:
            answers[info.id] = _kem_entry(module)
    text = json.dumps(answers, indent=1, sort_keys=True).encode("utf-8")
    OUT.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    backend._kat_data.cache_clear()
    for algorithm in answers:
        backend.known_answer_test(algorithm)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(answers)} algorithms)")


if __name__ == "__main__":
    main()
