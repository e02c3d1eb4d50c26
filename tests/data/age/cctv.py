"""The C2SP CCTV age test kit, read in place from ``../shared/vectors/cctv/age/testdata``
(or ``$QRC_VECTORS_DIR/cctv/age/testdata``, as :mod:`tests.vectors` finds the vectors)."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

_VECTORS = Path(__file__).resolve().parents[4] / "shared" / "vectors"
TESTDATA = Path(os.environ.get("QRC_VECTORS_DIR", _VECTORS)) / "cctv" / "age" / "testdata"


@dataclass(frozen=True)
class Vector:
    name: str
    expect: str
    payload: str | None
    identities: tuple[str, ...]
    passphrases: tuple[str, ...]
    armored: bool
    data: bytes


def load(path: Path) -> Vector:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return Vector(
        name=path.name,
        expect=fields["expect"][0],
        payload=fields.get("payload", [None])[0],
        identities=tuple(fields.get("identity", [])),
        passphrases=tuple(fields.get("passphrase", [])),
        armored=fields.get("armored") == ["yes"],
        data=body,
    )


def names() -> list[str]:
    return sorted(p.name for p in TESTDATA.iterdir()) if TESTDATA.is_dir() else []
