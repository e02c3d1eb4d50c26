"""Envelopes: encrypt one message to a KEM public key or under a symmetric key.

The byte formats are specified in ``docs/formats.md`` ("Envelope v2", "Envelope v1")::

    v2: "QRCE" | 0x02 | mode | u16 kem_id | u16 kdf_id | u16 aead_id
        | len8(algorithm) | len8(key_id) | u32 key_version | body
    v1: "QRCE" | 0x01 | mode | len8(algorithm) | len8(key_id) | u32 key_version | body

``seal`` writes v2, ``seal_symmetric`` writes v1 (a symmetric algorithm ID is its whole
suite); ``open_sealed`` reads both, so envelopes sealed before v2 stay readable. Modes:

* ``Mode.HPKE``: RFC 9180 base mode with the suite the v2 header records (v1: HKDF-SHA256
  and AES-256-GCM for every KEM), ``info = header || context``. New envelopes use the
  draft-ietf-hpke-pq pairing (:func:`qrc.crypto.hpke_suite.default_suite`): HKDF-SHA384
  for ML-KEM-1024 and MLKEM1024-P384. Every KEM with an HPKE KEM ID, ML-KEM-512 included.
* ``Mode.KEM_DEM``: KEM, then HKDF over the shared secret binding the header, the
  recipient key, the KEM ciphertext and the context, then AES-256-GCM (NIST SP 800-227).
  The default for HQC and Classic McEliece; usable for any KEM.
* ``Mode.SYMMETRIC``: AES-256-GCM or ChaCha20-Poly1305 under a 32-byte key, with
  ``aad = header || context``.

The header (algorithm, key ID, key version) is always authenticated; the context is not
stored and must be given again to open. Every way opening can fail raises
:class:`~qrc.crypto.errors.DecryptionError`.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256, SHA384, HashAlgorithm
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qrc.crypto.base import KemPrivateKey, KemPublicKey
from qrc.crypto.errors import (
    AlgorithmNotAllowed,
    DecryptionError,
    KeyFormatError,
    UnsupportedAlgorithm,
)
from qrc.crypto.hpke_suite import (
    AEAD_IDS,
    INTO_THRESHOLD,
    KDF_IDS,
    KEM_IDS,
    Suite,
    accepted_kdfs,
    default_suite,
    hpke_decrypt,
    hpke_seal,
    seal_after,
)
from qrc.crypto.registry import REGISTRY, Kind, Status, get_info

__all__ = [
    "HPKE_KEMS",
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
    "open_sealed",
    "open_symmetric",
    "parse_header",
    "seal",
    "seal_symmetric",
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
_DEM_LABELS = {1: b"QRCE-v1 KEM-DEM", 2: b"QRCE-v2 KEM-DEM"}
# KEM-DEM's KDF (HKDF-SHA256 or HKDF-SHA384) and AEAD (AES-256-GCM), by HPKE ID.
_DEM_HASHES: dict[int, tuple[str, HashAlgorithm]] = {
    KDF_IDS["HKDF-SHA256"]: ("sha256", SHA256()),
    KDF_IDS["HKDF-SHA384"]: ("sha384", SHA384()),
}
_AES_256_GCM = AEAD_IDS["AES-256-GCM"]
_HKDF_SHA256 = KDF_IDS["HKDF-SHA256"]
# What the API takes for data: any contiguous bytes-like object.
BytesLike = bytes | bytearray | memoryview
_TOO_LONG = f"an envelope holds at most {MAX_PLAINTEXT_SIZE} bytes; stream larger data"
# Policy is read from the registry on every call, never cached: ``set_status`` may
# disallow an algorithm at run time.
_DISALLOWED = Status.DISALLOWED


class Mode(enum.IntEnum):
    """How the body is encrypted (the header's mode byte)."""

    HPKE = 1
    KEM_DEM = 2
    SYMMETRIC = 3


# The registry's ``hpke_kem`` name -> the pyca HPKE KEM (benchmarks compare against it).
HPKE_KEMS: dict[str, hpke.KEM] = {
    "MLKEM768-X25519": hpke.KEM.MLKEM768_X25519,
    "MLKEM1024-P384": hpke.KEM.MLKEM1024_P384,
    "ML-KEM-768": hpke.KEM.MLKEM768,
    "ML-KEM-1024": hpke.KEM.MLKEM1024,
    "DHKEM(X25519, HKDF-SHA256)": hpke.KEM.X25519,
    "DHKEM(P-256, HKDF-SHA256)": hpke.KEM.P256,
    "DHKEM(P-384, HKDF-SHA384)": hpke.KEM.P384,
}
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


# --------------------------------------------------------------------------- KEM-DEM
@lru_cache(maxsize=16)
def _public_digest(public_bytes: bytes, hash_name: str = "sha256") -> bytes:
    """Hash of a raw public key (cached: a Classic McEliece key is ~1 MB)."""
    return hashlib.new(hash_name, public_bytes).digest()


def _dem_key(
    version: int,
    kdf_id: int,
    header: bytes,
    public_bytes: bytes,
    kem_ct: bytes,
    context: BytesLike,
    shared_secret: bytes,
) -> tuple[bytes, bytes]:
    """``key || nonce = HKDF-H(salt="", ss, label || H(header || H(pk) || kem_ct || ctx))``."""
    hash_name, algorithm = _DEM_HASHES[kdf_id]
    transcript = hashlib.new(hash_name, header)
    transcript.update(_public_digest(public_bytes, hash_name))
    transcript.update(kem_ct)
    transcript.update(context)
    info = _DEM_LABELS[version] + transcript.digest()
    okm = HKDF(algorithm, _KEY_SIZE + _NONCE_SIZE, None, info).derive(shared_secret)
    return okm[:_KEY_SIZE], okm[_KEY_SIZE:]


# --------------------------------------------------------------------------- public-key API
def seal(
    public_key: KemPublicKey,
    plaintext: BytesLike,
    *,
    context: BytesLike = b"",
    key_id: str | None = None,
    key_version: int = 1,
    mode: Mode | None = None,
    kdf: str | None = None,
    aead: str | None = None,
) -> bytes:
    """Encrypt ``plaintext`` to ``public_key``; return the envelope (Envelope v2).

    Args:
        context: bound but not stored (record ID, tenant...); give it again to open.
        key_id: stored in the header; defaults to the public key's fingerprint. Pass ``""``
            for an envelope that does not name its recipient.
        key_version: stored in the header (a 32-bit unsigned integer).
        mode: ``None`` picks HPKE when the algorithm has an HPKE KEM, else KEM-DEM. Tests
            and benchmarks may force either.
        kdf, aead: another suite than the algorithm's default (``"HKDF-SHA384"``,
            ``"SHAKE256"``, ``"ChaCha20-Poly1305"``...), for interoperability; see the
            suites table of ``docs/formats.md``.

    Raises:
        UnsupportedAlgorithm: not a KEM key, HPKE forced for a KEM without one, or a suite
            that the algorithm and mode do not accept.
        AlgorithmNotAllowed: the registry disallows the key's algorithm.
        ValueError: key ID or version out of range, plaintext over ``MAX_PLAINTEXT_SIZE``.
    """
    algorithm = _kem_algorithm(public_key.algorithm)
    if REGISTRY[algorithm].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{algorithm} is disallowed by policy")
    if type(plaintext) is not bytes:  # sizes in bytes, whatever the buffer's item format
        plaintext = _view(plaintext)
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise ValueError(_TOO_LONG)
    if mode is None:
        mode = _HPKE if algorithm in KEM_IDS else _KEM_DEM
    else:
        mode = Mode(mode)
        if mode is _SYMMETRIC:
            raise ValueError("seal takes mode HPKE or KEM_DEM; use seal_symmetric for keys")
        if mode is _HPKE and algorithm not in KEM_IDS:
            raise UnsupportedAlgorithm(f"{algorithm} has no HPKE KEM")
    suite = _suite_for_seal(algorithm, mode, kdf, aead)
    if key_id is None:  # the fingerprint, from the cached digest (McEliece keys are ~1 MB)
        key_id = _public_digest(public_key.public_bytes()).hex()[:16]
    header = _header_v2(mode, suite, algorithm, key_id, key_version)
    # The AEAD writes the ciphertext into the result: neither the plaintext nor the
    # ciphertext is copied on the way (hpke_seal, seal_after).
    if mode is _HPKE:
        return hpke_seal(suite, public_key, plaintext, header + context, header)
    kem_ct, shared_secret = public_key.encapsulate()
    key, nonce = _dem_key(
        VERSION, suite.kdf_id, header, public_key.public_bytes(), kem_ct, context, shared_secret
    )
    return seal_after(header + kem_ct, AESGCM(key), nonce, plaintext, header)


def open_sealed(
    private_key: KemPrivateKey,
    envelope: BytesLike,
    *,
    context: BytesLike = b"",
    key_id: str | None = None,
    key_version: int | None = None,
) -> bytes:
    """Decrypt an envelope made by :func:`seal` (v2, or v1 of earlier releases).

    ``context`` must equal the one given to ``seal``. ``key_id`` / ``key_version``, when
    given, must equal the header's (``None`` accepts any; the header is authenticated either
    way). The header's algorithm must be the key's.

    Raises:
        DecryptionError: for every failure (malformed, tampered, truncated or extended
            envelope; wrong key, context, key ID or version).
        AlgorithmNotAllowed: the registry disallows the key's algorithm.
    """
    algorithm = private_key.algorithm
    if REGISTRY[algorithm].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{algorithm} is disallowed by policy")
    data = _body_source(envelope)
    header, mode, _, start, split, _, _, suite, _, raw = _parse(data)
    _check_expected(header, algorithm, key_id, key_version)
    # The body is passed as a view of the envelope: the AEAD reads it in place.
    if mode is _HPKE:
        return hpke_decrypt(suite, private_key, data[start:], raw + context)
    if mode is not _KEM_DEM:
        raise DecryptionError
    kem_ct = bytes(data[start:split])
    try:
        shared_secret = private_key.decapsulate(kem_ct)
        public_bytes = private_key.public_key().public_bytes()
        key, nonce = _dem_key(
            header.version, suite.kdf_id, raw, public_bytes, kem_ct, context, shared_secret
        )
        return AESGCM(key).decrypt(nonce, data[split:], raw)
    except (DecryptionError, InvalidTag, ValueError):
        raise DecryptionError from None


# --------------------------------------------------------------------------- symmetric API
@lru_cache(maxsize=512)
def _symmetric_header(
    algorithm: str, key_id: str, key_version: int
) -> tuple[bytes, str, type[AESGCM] | type[ChaCha20Poly1305]]:
    found = _symmetric_algorithm(algorithm)
    return _header(_SYMMETRIC, found, key_id, key_version), found, SYMMETRIC_ALGORITHMS[found]


def seal_symmetric(
    key: bytes,
    plaintext: BytesLike,
    *,
    algorithm: str = "AES-256-GCM",
    context: BytesLike = b"",
    key_id: str = "",
    key_version: int = 1,
) -> bytes:
    """Encrypt ``plaintext`` under a 32-byte ``key`` with a random nonce (Envelope v1).

    One key should seal at most 2^32 envelopes (random 96-bit nonces, SP 800-38D §8.3).

    Raises:
        UnsupportedAlgorithm: ``algorithm`` is not ``AES-256-GCM`` or ``ChaCha20-Poly1305``.
        AlgorithmNotAllowed: the registry disallows it.
        KeyFormatError: the key is not 32 bytes.
        ValueError: key ID or version out of range, plaintext over ``MAX_PLAINTEXT_SIZE``.
    """
    header, found, cipher = _symmetric_header(algorithm, key_id, key_version)
    if REGISTRY[found].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{found} is disallowed by policy")
    if len(key) != _KEY_SIZE:
        raise KeyFormatError(f"{found} keys are {_KEY_SIZE} bytes")
    if type(plaintext) is not bytes:  # sizes in bytes, whatever the buffer's item format
        plaintext = _view(plaintext)
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise ValueError(_TOO_LONG)
    nonce = os.urandom(_NONCE_SIZE)
    return seal_after(header + nonce, cipher(key), nonce, plaintext, header + context)


def open_symmetric(
    key: bytes,
    envelope: BytesLike,
    *,
    context: BytesLike = b"",
    algorithm: str | None = None,
    key_id: str | None = None,
    key_version: int | None = None,
) -> bytes:
    """Decrypt an envelope made by :func:`seal_symmetric`; return the plaintext.

    ``algorithm``, ``key_id`` and ``key_version``, when given, must match the header
    (``None`` accepts what it says; the header is authenticated either way).

    Raises:
        DecryptionError: for every failure, a key of the wrong length included.
        AlgorithmNotAllowed: the registry disallows the header's algorithm.
    """
    data = _body_source(envelope)
    header, mode, found, start, split, _, _, _, cipher, raw = _parse(data)
    if mode is not _SYMMETRIC or len(key) != _KEY_SIZE:
        raise DecryptionError
    if algorithm is not None or key_id is not None or key_version is not None:
        expected = found if algorithm is None else _symmetric_algorithm(algorithm)
        _check_expected(header, expected, key_id, key_version)
    if REGISTRY[found].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{found} is disallowed by policy")
    try:
        return cipher(key).decrypt(data[start:split], data[split:], raw + context)
    except (InvalidTag, ValueError):
        raise DecryptionError from None
