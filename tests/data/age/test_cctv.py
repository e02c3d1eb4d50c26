"""Every CCTV age vector through the public decrypt path, with its expected outcome."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.data.age import (
    ArmorFailure,
    HeaderFailure,
    Identity,
    MacFailure,
    NoIdentityMatch,
    PayloadFailure,
    ScryptIdentity,
    decrypt,
    parse_identity,
)
from tests.data.age.cctv import TESTDATA, load, names
from tests.vectors import vectors_dir

# Skips (fails under CI) with a hint when ../shared/vectors is absent.
vectors_dir()
if not TESTDATA.is_dir():
    pytest.fail(f"the CCTV age test kit is missing from the vectors: {TESTDATA}")

FAILURES: dict[str, type[DecryptionError]] = {
    "header failure": HeaderFailure,
    "no match": NoIdentityMatch,
    "HMAC failure": MacFailure,
    "payload failure": PayloadFailure,
    "armor failure": ArmorFailure,
}


class _Trickle(io.RawIOBase):
    """A slow pipe: the first reads return a few bytes each (a short ``peek``)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data, self._at, self._reads = data, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._reads += 1
        size = 5 if self._reads < 10 else len(buffer)
        chunk = self._data[self._at : self._at + min(size, len(buffer))]
        memoryview(buffer)[: len(chunk)] = chunk
        self._at += len(chunk)
        return len(chunk)


SOURCES: dict[str, Callable[[bytes], Any]] = {
    "bytes": io.BytesIO,  # no peek: read ahead
    "file": lambda data: io.BufferedReader(io.BytesIO(data)),  # peek, read in place
    "pipe": lambda data: io.BufferedReader(_Trickle(data), 64),  # short peeks
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", names())
def test_vector(name: str, source: str) -> None:
    vector = load(TESTDATA / name)
    identities: list[Identity] = [parse_identity(i) for i in vector.identities]
    identities += [ScryptIdentity(p.encode()) for p in vector.passphrases]
    # Only the two empty files name no identity; they fail before one is needed.
    assert identities or vector.expect == "header failure"
    released = hashlib.sha256()
    outcome = "success"
    try:
        for chunk in decrypt(SOURCES[source](vector.data), identities).chunks():
            released.update(chunk)
    except DecryptionError as exc:
        assert str(exc) == "decryption failed"  # opaque: the type alone says more
        outcome = next(k for k, v in FAILURES.items() if type(exc) is v)
    assert outcome == vector.expect
    if vector.expect in ("success", "payload failure"):
        assert released.hexdigest() == vector.payload


def test_the_kit_is_all_there() -> None:
    # Every vector has an identity type we support: none may be skipped silently.
    assert len(names()) >= 140
