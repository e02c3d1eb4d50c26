"""Envelope v1: encrypt one message to a KEM public key or under a symmetric key.

The byte format is specified in ``docs/formats.md`` ("Envelope v1")::

    "QRCE" | 0x01 | mode | len8(algorithm) | len8(key_id) | u32 key_version | body

Three modes share it:

* ``Mode.HPKE``: RFC 9180 base mode (KDF HKDF-SHA256, AEAD AES-256-GCM) for the KEMs HPKE
  defines (``X25519MLKEM768``, ``P384MLKEM1024``, ``ML-KEM-768``/``-1024``, the DHKEMs),
  with ``info = header || context``.
* ``Mode.KEM_DEM``: KEM, then HKDF-SHA256 over the shared secret binding the header, the
  recipient key, the KEM ciphertext and the context, then AES-256-GCM (NIST SP 800-227).
  The default for ML-KEM-512, HQC and Classic McEliece; usable for any KEM.
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
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qrc.crypto.base import KemPrivateKey, KemPublicKey
from qrc.crypto.errors import (
    AlgorithmNotAllowed,
    DecryptionError,
    KeyFormatError,
    UnsupportedAlgorithm,
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
VERSION = 1
MAX_ALGORITHM_ID_SIZE = 64
MAX_KEY_ID_SIZE = 255
MAX_HEADER_SIZE = 4 + 1 + 1 + 1 + MAX_ALGORITHM_ID_SIZE + 1 + MAX_KEY_ID_SIZE + 4
MAX_PLAINTEXT_SIZE = 1 << 30
_MIN_HEADER_SIZE = 4 + 1 + 1 + 1 + 1 + 1 + 0 + 4
_PREFIX = MAGIC + bytes([VERSION])
_MAX_KEY_VERSION = 0xFFFFFFFF
_TAG_SIZE = 16
_NONCE_SIZE = 12
_KEY_SIZE = 32
_DEM_LABEL = b"QRCE-v1 KEM-DEM"
# What the API takes for data: any contiguous bytes-like object.
BytesLike = bytes | bytearray | memoryview
_SHA256 = SHA256()
_TOO_LONG = f"an envelope holds at most {MAX_PLAINTEXT_SIZE} bytes; stream larger data"
# Policy is read from the registry on every call, never cached: ``set_status`` may
# disallow an algorithm at run time.
_DISALLOWED = Status.DISALLOWED


class Mode(enum.IntEnum):
    """How the body is encrypted (the header's mode byte)."""

    HPKE = 1
    KEM_DEM = 2
    SYMMETRIC = 3


# The registry's ``hpke_kem`` name -> the pyca HPKE KEM. A KEM whose name is absent (pyca
# has no HPKE ML-KEM-512) goes through KEM-DEM instead.
HPKE_KEMS: dict[str, hpke.KEM] = {
    "MLKEM768-X25519": hpke.KEM.MLKEM768_X25519,
    "MLKEM1024-P384": hpke.KEM.MLKEM1024_P384,
    "ML-KEM-768": hpke.KEM.MLKEM768,
    "ML-KEM-1024": hpke.KEM.MLKEM1024,
    "DHKEM(X25519, HKDF-SHA256)": hpke.KEM.X25519,
    "DHKEM(P-256, HKDF-SHA256)": hpke.KEM.P256,
    "DHKEM(P-384, HKDF-SHA384)": hpke.KEM.P384,
}

SYMMETRIC_ALGORITHMS: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {
    "AES-256-GCM": AESGCM,
    "ChaCha20-Poly1305": ChaCha20Poly1305,
}


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The parsed header of an envelope: which key and algorithm it needs.

    Unauthenticated until the envelope opens; use it to choose the key, not to trust.
    ``size`` is the header's length in bytes (the body starts there).
    """

    version: int
    mode: Mode
    algorithm: str
    key_id: str
    key_version: int
    size: int


# Enum member lookups cost as much as the rest of a small envelope's overhead; the hot
# paths use these module constants instead.
_HPKE, _KEM_DEM, _SYMMETRIC = Mode.HPKE, Mode.KEM_DEM, Mode.SYMMETRIC


class _Params(NamedTuple):
    """What a mode needs to know about an algorithm, looked up once per algorithm."""

    algorithm: str
    suite: hpke.Suite | None  # HPKE suite, when the algorithm has an HPKE KEM
    fixed: int  # bytes of the body before the AEAD ciphertext (enc, kem_ct or nonce)
    ciphertext_size: int  # KEM ciphertext size (KEM-DEM)
    cipher: type[AESGCM] | type[ChaCha20Poly1305]  # the DEM / symmetric AEAD


class _Parsed(NamedTuple):
    """A validated header with what opening needs, flat so that one unpack gets it all."""

    header: EnvelopeHeader
    mode: Mode
    algorithm: str
    start: int  # where the body starts (the header's size)
    split: int  # where the AEAD ciphertext starts (after enc, kem_ct or nonce)
    min_size: int  # smallest and largest envelope with this header
    max_size: int
    suite: hpke.Suite | None
    cipher: type[AESGCM] | type[ChaCha20Poly1305]
    raw: bytes  # the header's bytes, as bound into info / AAD


# --------------------------------------------------------------------------- algorithms
@cache
def _kem_params(algorithm: str) -> _Params:
    info = get_info(algorithm, Kind.KEM)
    kem = HPKE_KEMS.get(info.hpke_kem or "")
    suite = None
    enc_size = 0
    if kem is not None:
        suite = hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
        enc_size = kem.enc_length()
    return _Params(info.id, suite, enc_size, info.ciphertext_size, AESGCM)


@cache
def _symmetric_params(algorithm: str) -> _Params:
    info = get_info(algorithm, Kind.AEAD)
    if info.id not in SYMMETRIC_ALGORITHMS:
        raise UnsupportedAlgorithm(f"{info.id} cannot be used in an envelope")
    return _Params(info.id, None, _NONCE_SIZE, 0, SYMMETRIC_ALGORITHMS[info.id])


def default_mode(algorithm: str) -> Mode:
    """HPKE for algorithms with an HPKE KEM, KEM-DEM for the other KEMs, SYMMETRIC for AEADs."""
    if get_info(algorithm).kind is Kind.AEAD:
        return _SYMMETRIC
    return _HPKE if _kem_params(algorithm).suite is not None else _KEM_DEM


def _hpke_key(key: object) -> Any:
    """The pyca object HPKE takes for ``key``, or None if the key's backend has none."""
    convert = getattr(key, "to_hpke", None) or getattr(key, "to_pyca", None)
    return None if convert is None else convert()


# --------------------------------------------------------------------------- header
@lru_cache(maxsize=512)
def _header(mode: Mode, algorithm: str, key_id: str, key_version: int) -> bytes:
    # Headers are public and a service reuses few (key, version) pairs: building each once
    # keeps a small envelope's overhead near the bare primitive's.
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
    return b"".join(
        (_PREFIX, bytes([mode, len(alg)]), alg, bytes([len(kid)]), kid,
         key_version.to_bytes(4, "big"))
    )  # fmt: skip


@lru_cache(maxsize=1024)
def _parse_header_bytes(header: bytes) -> _Parsed | None:
    """Validate a candidate header (a prefix of an envelope); None if invalid.

    Cached by the header bytes (at most 331 each), so opening many envelopes under one
    key parses its header once. Invalid headers are cached as None rather than raising,
    since ``lru_cache`` does not keep exceptions.
    """
    size = len(header)
    if size < _MIN_HEADER_SIZE or header[:5] != _PREFIX:
        return None
    alg_size = header[6]
    if not 1 <= alg_size <= MAX_ALGORITHM_ID_SIZE or size <= 7 + alg_size:
        return None
    if size != 12 + alg_size + header[7 + alg_size]:
        return None
    try:
        mode = Mode(header[5])
        algorithm = header[7 : 7 + alg_size].decode("ascii")
        key_id = header[8 + alg_size : -4].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    info = REGISTRY.get(algorithm)
    # Exact canonical spelling only: the registry's case folding is for people, not bytes.
    if info is None or info.id != algorithm:
        return None
    if mode is _SYMMETRIC:
        if info.id not in SYMMETRIC_ALGORITHMS:
            return None
        params = _symmetric_params(algorithm)
        fixed = params.fixed
    else:
        if info.kind is not Kind.KEM:
            return None
        params = _kem_params(algorithm)
        if mode is _HPKE and params.suite is None:
            return None
        fixed = params.fixed if mode is _HPKE else params.ciphertext_size
    fields = EnvelopeHeader(
        VERSION, mode, algorithm, key_id, int.from_bytes(header[-4:], "big"), size
    )
    split = size + fixed
    return _Parsed(
        fields, mode, algorithm, size, split, split + _TAG_SIZE,
        split + _TAG_SIZE + MAX_PLAINTEXT_SIZE, params.suite, params.cipher, header,
    )  # fmt: skip


def _parse(data: bytes) -> _Parsed:
    size = len(data)
    if size < _MIN_HEADER_SIZE:
        raise DecryptionError
    alg_size = data[6]
    if size <= 7 + alg_size:
        raise DecryptionError
    # Slicing is bounded (at most 12 + 255 + 255 bytes) whatever the length bytes say; the
    # cached parser checks that they are consistent and in range.
    parsed = _parse_header_bytes(data[: 12 + alg_size + data[7 + alg_size]])
    if parsed is None or not parsed.min_size <= size <= parsed.max_size:
        raise DecryptionError
    return parsed


def _as_bytes(data: BytesLike) -> bytes:
    return data if type(data) is bytes else bytes(data)


def parse_header(envelope: BytesLike) -> EnvelopeHeader:
    """Read an envelope's header to learn which key, version and algorithm open it.

    The fields are not authenticated until :func:`open_sealed` or :func:`open_symmetric`
    succeeds. Raises ``DecryptionError`` if the envelope is malformed (including a body
    too short for its mode).
    """
    return _parse(_as_bytes(envelope)).header


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
def _public_digest(public_bytes: bytes) -> tuple[bytes, str]:
    """SHA-256 of a raw public key, and its fingerprint (first 16 hex digits).

    Cached by the key bytes: a Classic McEliece key is ~1 MB, and a bytes object caches its
    own hash, so a repeated lookup with the key's stored bytes is cheap.
    """
    digest = hashlib.sha256(public_bytes).digest()
    return digest, digest.hex()[:16]


def _dem_key(
    header: bytes, pk_digest: bytes, kem_ct: bytes, context: BytesLike, shared_secret: bytes
) -> tuple[bytes, bytes]:
    """``key || nonce = HKDF-SHA256(salt="", ss, "QRCE-v1 KEM-DEM" || th, 44)``."""
    transcript = hashlib.sha256(header)
    transcript.update(pk_digest)
    transcript.update(kem_ct)
    transcript.update(context)
    okm = HKDF(_SHA256, _KEY_SIZE + _NONCE_SIZE, None, _DEM_LABEL + transcript.digest()).derive(
        shared_secret
    )
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
) -> bytes:
    """Encrypt ``plaintext`` to ``public_key``; return the envelope.

    Args:
        context: bound but not stored (record ID, tenant...); give it again to open.
        key_id: stored in the header; defaults to the public key's fingerprint. Pass ``""``
            for an envelope that does not name its recipient.
        key_version: stored in the header (a 32-bit unsigned integer).
        mode: ``None`` picks HPKE when the algorithm has an HPKE KEM and the key object can
            do HPKE, else KEM-DEM. Tests and benchmarks may force either.

    Raises:
        UnsupportedAlgorithm: not a KEM key, or HPKE forced for a KEM without one.
        AlgorithmNotAllowed: the registry disallows the key's algorithm.
        ValueError: key ID or version out of range, plaintext over ``MAX_PLAINTEXT_SIZE``.
    """
    params = _kem_params(public_key.algorithm)
    algorithm = params.algorithm
    if REGISTRY[algorithm].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{algorithm} is disallowed by policy")
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise ValueError(_TOO_LONG)
    suite = params.suite
    hpke_key: Any = None
    if mode is not None:
        mode = Mode(mode)
    if mode is None or mode is _HPKE:
        hpke_key = _hpke_key(public_key) if suite is not None else None
        if hpke_key is None and mode is _HPKE:
            raise UnsupportedAlgorithm(f"{algorithm} keys of this backend cannot use HPKE")
        mode = _KEM_DEM if hpke_key is None else _HPKE
    elif mode is not _KEM_DEM:
        raise ValueError("seal takes mode HPKE or KEM_DEM; use seal_symmetric for keys")
    pk_digest = b""
    if key_id is None or mode is _KEM_DEM:
        pk_digest, fingerprint = _public_digest(public_key.public_bytes())
        if key_id is None:
            key_id = fingerprint
    header = _header(mode, algorithm, key_id, key_version)
    if suite is not None and mode is _HPKE:
        return header + suite.encrypt(plaintext, hpke_key, info=header + context)
    kem_ct, shared_secret = public_key.encapsulate()
    key, nonce = _dem_key(header, pk_digest, kem_ct, context, shared_secret)
    return header + kem_ct + AESGCM(key).encrypt(nonce, plaintext, header)


def open_sealed(
    private_key: KemPrivateKey,
    envelope: BytesLike,
    *,
    context: BytesLike = b"",
    key_id: str | None = None,
    key_version: int | None = None,
) -> bytes:
    """Decrypt an envelope made by :func:`seal`; return the plaintext.

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
    data = envelope if type(envelope) is bytes else bytes(envelope)
    header, mode, _, start, split, _, _, suite, _, raw = _parse(data)
    _check_expected(header, algorithm, key_id, key_version)
    if mode is _HPKE:
        hpke_key = _hpke_key(private_key)
        if hpke_key is None or suite is None:
            raise DecryptionError
        try:
            return suite.decrypt(data[start:], hpke_key, info=raw + context)
        except (InvalidTag, ValueError):
            raise DecryptionError from None
    if mode is not _KEM_DEM:
        raise DecryptionError
    kem_ct = data[start:split]
    try:
        shared_secret = private_key.decapsulate(kem_ct)
        pk_digest = _public_digest(private_key.public_key().public_bytes())[0]
        key, nonce = _dem_key(raw, pk_digest, kem_ct, context, shared_secret)
        return AESGCM(key).decrypt(nonce, data[split:], raw)
    except (DecryptionError, InvalidTag, ValueError):
        raise DecryptionError from None


# --------------------------------------------------------------------------- symmetric API
@lru_cache(maxsize=512)
def _symmetric_header(algorithm: str, key_id: str, key_version: int) -> tuple[bytes, _Params]:
    params = _symmetric_params(algorithm)
    return _header(_SYMMETRIC, params.algorithm, key_id, key_version), params


def seal_symmetric(
    key: bytes,
    plaintext: BytesLike,
    *,
    algorithm: str = "AES-256-GCM",
    context: BytesLike = b"",
    key_id: str = "",
    key_version: int = 1,
) -> bytes:
    """Encrypt ``plaintext`` under a 32-byte ``key`` with a random nonce; return the envelope.

    One key should seal at most 2^32 envelopes (random 96-bit nonces, SP 800-38D §8.3).

    Raises:
        UnsupportedAlgorithm: ``algorithm`` is not ``AES-256-GCM`` or ``ChaCha20-Poly1305``.
        AlgorithmNotAllowed: the registry disallows it.
        KeyFormatError: the key is not 32 bytes.
        ValueError: key ID or version out of range, plaintext over ``MAX_PLAINTEXT_SIZE``.
    """
    header, params = _symmetric_header(algorithm, key_id, key_version)
    if REGISTRY[params.algorithm].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{params.algorithm} is disallowed by policy")
    if len(key) != _KEY_SIZE:
        raise KeyFormatError(f"{params.algorithm} keys are {_KEY_SIZE} bytes")
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise ValueError(_TOO_LONG)
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + params.cipher(key).encrypt(nonce, plaintext, header + context)


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
    data = envelope if type(envelope) is bytes else bytes(envelope)
    header, mode, found, start, split, _, _, _, cipher, raw = _parse(data)
    if mode is not _SYMMETRIC or len(key) != _KEY_SIZE:
        raise DecryptionError
    if algorithm is not None or key_id is not None or key_version is not None:
        expected = found if algorithm is None else _symmetric_params(algorithm).algorithm
        _check_expected(header, expected, key_id, key_version)
    if REGISTRY[found].status is _DISALLOWED:
        raise AlgorithmNotAllowed(f"{found} is disallowed by policy")
    try:
        return cipher(key).decrypt(data[start:split], data[split:], raw + context)
    except (InvalidTag, ValueError):
        raise DecryptionError from None
