"""The envelope header (``docs/formats.md``, "Envelope v2" and "Envelope v1"): building,
parsing and validating it, for :mod:`qrc.crypto.envelope`.

Headers are public and few (one per key version and suite): both directions are cached, so
a small envelope's overhead stays near the bare primitive's. Parsing returns None (cached)
for anything invalid; :func:`parse` turns that into the one ``DecryptionError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256, SHA384, HashAlgorithm

from qrc.crypto.errors import DecryptionError, UnsupportedAlgorithm
from qrc.crypto.hpke_suite import (
    AEAD_IDS,
    INTO_THRESHOLD,
    KDF_IDS,
    KEM_IDS,
    Suite,
    accepted_kdfs,
    default_suite,
)
from qrc.crypto.registry import REGISTRY, Kind, get_info

__all__ = [
    "MAGIC",
    "MAX_ALGORITHM_ID_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_KEY_ID_SIZE",
    "MAX_PLAINTEXT_SIZE",
    "SYMMETRIC_ALGORITHMS",
    "SYMMETRIC_VERSION",
    "VERSION",
    "BytesLike",
    "EnvelopeHeader",
    "Mode",
    "default_mode",
    "parse_header",
]

MAGIC = b"QRCE"
VERSION = 2  # what seal writes
SYMMETRIC_VERSION = 1  # what seal_symmetric writes
MAX_ALGORITHM_ID_SIZE = 64
MAX_KEY_ID_SIZE = 255
MAX_HEADER_SIZE = 4 + 1 + 1 + 6 + 1 + MAX_ALGORITHM_ID_SIZE + 1 + MAX_KEY_ID_SIZE + 4  # v2
MAX_PLAINTEXT_SIZE = 1 << 30
_V1_MIN_HEADER = 4 + 1 + 1 + 1 + 1 + 1 + 0 + 4
_V2_MIN_HEADER = _V1_MIN_HEADER + 6
_V1_PREFIX = MAGIC + bytes([1])
_V2_PREFIX = MAGIC + bytes([2])
_MAX_KEY_VERSION = 0xFFFFFFFF
_TAG_SIZE = 16
_NONCE_SIZE = 12
_KEY_SIZE = 32
# KEM-DEM's KDF (HKDF-SHA256 or HKDF-SHA384) and AEAD (AES-256-GCM), by HPKE ID.
_DEM_HASHES: dict[int, tuple[str, HashAlgorithm]] = {
    KDF_IDS["HKDF-SHA256"]: ("sha256", SHA256()),
    KDF_IDS["HKDF-SHA384"]: ("sha384", SHA384()),
}
_AES_256_GCM = AEAD_IDS["AES-256-GCM"]
_HKDF_SHA256 = KDF_IDS["HKDF-SHA256"]
# What the API takes for data: any contiguous bytes-like object.
BytesLike = bytes | bytearray | memoryview


class Mode(enum.IntEnum):
    """How the body is encrypted (the header's mode byte)."""

    HPKE = 1
    KEM_DEM = 2
    SYMMETRIC = 3


# Envelope v1 wrote HPKE for these only (ML-KEM-512 went through KEM-DEM).
_V1_HPKE = frozenset(KEM_IDS) - {"ML-KEM-512"}

SYMMETRIC_ALGORITHMS: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {
    "AES-256-GCM": AESGCM,
    "ChaCha20-Poly1305": ChaCha20Poly1305,
}


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The parsed header of an envelope: which key and algorithm it needs.

    Unauthenticated until the envelope opens; use it to choose the key, not to trust.
    ``size`` is the header's length in bytes (the body starts there). ``kem_id``,
    ``kdf_id`` and ``aead_id`` are the HPKE identifiers of the suite: recorded in a v2
    header, implied by the format for v1 (0 where a part does not apply).
    """

    version: int
    mode: Mode
    algorithm: str
    key_id: str
    key_version: int
    size: int
    kem_id: int = 0
    kdf_id: int = 0
    aead_id: int = 0


# Enum member lookups cost as much as the rest of a small envelope's overhead; the hot
# paths use these module constants instead.
_HPKE, _KEM_DEM, _SYMMETRIC = Mode.HPKE, Mode.KEM_DEM, Mode.SYMMETRIC


class _Parsed(NamedTuple):
    """A validated header with what opening needs, flat so that one unpack gets it all."""

    header: EnvelopeHeader
    mode: Mode
    algorithm: str
    start: int  # where the body starts (the header's size)
    split: int  # where the AEAD ciphertext starts (after enc, kem_ct or nonce)
    min_size: int  # smallest and largest envelope with this header
    max_size: int
    suite: Suite
    cipher: type[AESGCM] | type[ChaCha20Poly1305]
    raw: bytes  # the header's bytes, as bound into info / AAD


# --------------------------------------------------------------------------- algorithms
@cache
def _kem_algorithm(algorithm: str) -> str:
    return get_info(algorithm, Kind.KEM).id


@cache
def _symmetric_algorithm(algorithm: str) -> str:
    info = get_info(algorithm, Kind.AEAD)
    if info.id not in SYMMETRIC_ALGORITHMS:
        raise UnsupportedAlgorithm(f"{info.id} cannot be used in an envelope")
    return info.id


def default_mode(algorithm: str) -> Mode:
    """HPKE for KEMs with an HPKE KEM ID, KEM-DEM for the other KEMs, SYMMETRIC for AEADs."""
    if get_info(algorithm).kind is Kind.AEAD:
        return _SYMMETRIC
    return _HPKE if _kem_algorithm(algorithm) in KEM_IDS else _KEM_DEM


def _suite_for_seal(algorithm: str, mode: Mode, kdf: str | None, aead: str | None) -> Suite:
    base = default_suite(algorithm)
    try:
        kdf_id = base.kdf_id if kdf is None else KDF_IDS[kdf]
        aead_id = base.aead_id if aead is None else AEAD_IDS[aead]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown HPKE KDF or AEAD: {kdf!r}, {aead!r}") from None
    suite = Suite(base.kem_id, kdf_id, aead_id)
    if not _suite_accepted(algorithm, mode, suite):
        raise UnsupportedAlgorithm(f"{algorithm} envelopes in mode {mode.name} cannot use {suite}")
    return suite


def _suite_accepted(algorithm: str, mode: Mode, suite: Suite) -> bool:
    """Whether an Envelope v2 may carry ``suite`` for ``algorithm`` in ``mode``."""
    if suite.kem_id != KEM_IDS.get(algorithm, 0):
        return False
    if mode is _HPKE:
        return (
            suite.kem_id != 0
            and suite.kdf_id in accepted_kdfs(algorithm)
            and suite.aead_id in AEAD_IDS.values()
        )
    return mode is _KEM_DEM and suite.kdf_id in _DEM_HASHES and suite.aead_id == _AES_256_GCM


# --------------------------------------------------------------------------- header
def _check_fields(algorithm: str, key_id: str, key_version: int) -> tuple[bytes, bytes]:
    if not isinstance(key_id, str):
        raise TypeError("key_id must be a str")
    if not isinstance(key_version, int):
        raise TypeError("key_version must be an int")
    alg = algorithm.encode("ascii")
    kid = key_id.encode("utf-8")
    if not 1 <= len(alg) <= MAX_ALGORITHM_ID_SIZE:
        raise ValueError(f"an algorithm ID is 1 to {MAX_ALGORITHM_ID_SIZE} ASCII bytes")
    if len(kid) > MAX_KEY_ID_SIZE:
        raise ValueError(f"a key ID is at most {MAX_KEY_ID_SIZE} bytes of UTF-8")
    if not 0 <= key_version <= _MAX_KEY_VERSION:
        raise ValueError("a key version is a 32-bit unsigned integer")
    return alg, kid


# Headers are public and a service reuses few (key, version) pairs: building each once
# keeps a small envelope's overhead near the bare primitive's.
@lru_cache(maxsize=512)
def _header(mode: Mode, algorithm: str, key_id: str, key_version: int) -> bytes:
    """An Envelope v1 header (symmetric envelopes, and tests of v1 reading)."""
    alg, kid = _check_fields(algorithm, key_id, key_version)
    return b"".join(
        (_V1_PREFIX, bytes([mode, len(alg)]), alg, bytes([len(kid)]), kid,
         key_version.to_bytes(4, "big"))
    )  # fmt: skip


@lru_cache(maxsize=512)
def _header_v2(mode: Mode, suite: Suite, algorithm: str, key_id: str, key_version: int) -> bytes:
    """An Envelope v2 header."""
    alg, kid = _check_fields(algorithm, key_id, key_version)
    return b"".join(
        (_V2_PREFIX, bytes([mode]), suite.kem_id.to_bytes(2, "big"),
         suite.kdf_id.to_bytes(2, "big"), suite.aead_id.to_bytes(2, "big"),
         bytes([len(alg)]), alg, bytes([len(kid)]), kid, key_version.to_bytes(4, "big"))
    )  # fmt: skip


def _fields(header: bytes, at: int) -> tuple[str, str, int] | None:
    """``(algorithm, key_id, key_version)`` from ``len8(alg) | len8(kid) | u32`` at ``at``.

    The caller has checked that the lengths add up to the header's size.
    """
    alg_size = header[at]
    try:
        algorithm = header[at + 1 : at + 1 + alg_size].decode("ascii")
        key_id = header[at + 2 + alg_size : -4].decode("utf-8")
    except UnicodeDecodeError:
        return None
    info = REGISTRY.get(algorithm)
    # Exact canonical spelling only: the registry's case folding is for people, not bytes.
    if info is None or info.id != algorithm:
        return None
    return algorithm, key_id, int.from_bytes(header[-4:], "big")


def _v1(header: bytes) -> _Parsed | None:
    size = len(header)
    alg_size = header[6]
    if not 1 <= alg_size <= MAX_ALGORITHM_ID_SIZE or size != 12 + alg_size + header[7 + alg_size]:
        return None
    if header[5] not in (1, 2, 3):
        return None
    mode = Mode(header[5])
    fields = _fields(header, 6)
    if fields is None:
        return None
    algorithm = fields[0]
    if mode is _SYMMETRIC:
        if algorithm not in SYMMETRIC_ALGORITHMS:
            return None
        suite = Suite(0, 0, AEAD_IDS[algorithm])
        fixed = _NONCE_SIZE
    else:
        info = REGISTRY[algorithm]
        if info.kind is not Kind.KEM or (mode is _HPKE and algorithm not in _V1_HPKE):
            return None
        suite = Suite(KEM_IDS.get(algorithm, 0), _HKDF_SHA256, _AES_256_GCM)
        fixed = suite.enc_size if mode is _HPKE else info.ciphertext_size
    return _finish(header, 1, mode, fields, suite, fixed)


def _v2(header: bytes) -> _Parsed | None:
    size = len(header)
    alg_size = header[12]
    if not 1 <= alg_size <= MAX_ALGORITHM_ID_SIZE or size != 18 + alg_size + header[13 + alg_size]:
        return None
    if header[5] not in (_HPKE, _KEM_DEM):
        return None
    mode = Mode(header[5])
    suite = Suite(*(int.from_bytes(header[i : i + 2], "big") for i in (6, 8, 10)))
    fields = _fields(header, 12)
    if fields is None:
        return None
    algorithm = fields[0]
    info = REGISTRY[algorithm]
    if info.kind is not Kind.KEM or not _suite_accepted(algorithm, mode, suite):
        return None
    fixed = suite.enc_size if mode is _HPKE else info.ciphertext_size
    return _finish(header, 2, mode, fields, suite, fixed)


def _finish(
    header: bytes, version: int, mode: Mode, fields: tuple[str, str, int], suite: Suite, fixed: int
) -> _Parsed:
    algorithm, key_id, key_version = fields
    size = len(header)
    parsed = EnvelopeHeader(version, mode, algorithm, key_id, key_version, size, *suite)
    split = size + fixed
    cipher = SYMMETRIC_ALGORITHMS[algorithm] if mode is _SYMMETRIC else AESGCM
    return _Parsed(
        parsed, mode, algorithm, size, split, split + _TAG_SIZE,
        split + _TAG_SIZE + MAX_PLAINTEXT_SIZE, suite, cipher, header,
    )  # fmt: skip


@lru_cache(maxsize=1024)
def _parse_header_bytes(header: bytes) -> _Parsed | None:
    """Validate a candidate header (a prefix of an envelope); None if invalid.

    Cached by the header bytes (at most 337 each), so opening many envelopes under one
    key parses its header once. Invalid headers are cached as None rather than raising,
    since ``lru_cache`` does not keep exceptions.
    """
    prefix = header[:5]
    if prefix == _V2_PREFIX and len(header) >= _V2_MIN_HEADER:
        return _v2(header)
    if prefix == _V1_PREFIX and len(header) >= _V1_MIN_HEADER:
        return _v1(header)
    return None


def _parse(data: bytes | memoryview) -> _Parsed:
    size = len(data)
    if size < _V1_MIN_HEADER:
        raise DecryptionError
    at = 12 if data[4] == 2 else 6  # where len8(algorithm) starts; other versions fail below
    if size <= at + 1 + data[at]:
        raise DecryptionError
    # Slicing is bounded (at most 18 + 255 + 255 bytes) whatever the length bytes say; the
    # cached parser checks that they are consistent and in range.
    # bytes(): the cache keys on the header's bytes, never on a view of the envelope.
    parsed = _parse_header_bytes(bytes(data[: at + 6 + data[at] + data[at + 1 + data[at]]]))
    if parsed is None or not parsed.min_size <= size <= parsed.max_size:
        raise DecryptionError
    return parsed


def _view(data: BytesLike) -> memoryview:
    """A flat byte view of ``data``: the envelope's body is read through it, never copied."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    try:
        return view.cast("B")
    except TypeError:  # not C-contiguous: a copy it is
        return memoryview(bytes(view))


def _body_source(envelope: BytesLike) -> bytes | memoryview:
    """What opening slices the body from: a view, so that the AEAD reads it in place.

    Small ``bytes`` envelopes are sliced as they are: copying a few KiB costs less than
    making the views.
    """
    if type(envelope) is bytes and len(envelope) < INTO_THRESHOLD:
        return envelope
    return _view(envelope)


def parse_header(envelope: BytesLike) -> EnvelopeHeader:
    """Read an envelope's header to learn which key, version and algorithm open it.

    The fields are not authenticated until :func:`open_sealed` or :func:`open_symmetric`
    succeeds. Raises ``DecryptionError`` if the envelope is malformed (including a body
    too short for its mode).
    """
    return _parse(_view(envelope)).header


def _check_expected(
    header: EnvelopeHeader, algorithm: str, key_id: str | None, key_version: int | None
) -> None:
    if (
        header.algorithm != algorithm
        or (key_id is not None and header.key_id != key_id)
        or (key_version is not None and header.key_version != key_version)
    ):
        raise DecryptionError
