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

The header (algorithm, key ID, key version; :mod:`qrc.crypto.envelope_header`) is always
authenticated; the context is not stored and must be given again to open. Every way opening
can fail raises :class:`~qrc.crypto.errors.DecryptionError`.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qrc.crypto.base import KemPrivateKey, KemPublicKey
from qrc.crypto.envelope_header import (
    _DEM_HASHES,
    _HPKE,
    _KEM_DEM,
    _KEY_SIZE,
    _NONCE_SIZE,
    _SYMMETRIC,
    MAGIC,
    MAX_ALGORITHM_ID_SIZE,
    MAX_HEADER_SIZE,
    MAX_KEY_ID_SIZE,
    MAX_PLAINTEXT_SIZE,
    SYMMETRIC_ALGORITHMS,
    SYMMETRIC_VERSION,
    VERSION,
    BytesLike,
    EnvelopeHeader,
    Mode,
    _body_source,
    _check_expected,
    _header,
    _header_v2,
    _kem_algorithm,
    _parse,
    _suite_for_seal,
    _symmetric_algorithm,
    _view,
    default_mode,
    parse_header,
)
from qrc.crypto.errors import (
    AlgorithmNotAllowed,
    DecryptionError,
    KeyFormatError,
    UnsupportedAlgorithm,
)
from qrc.crypto.hpke_suite import (
    KEM_IDS,
    hpke_decrypt,
    hpke_seal,
    seal_after,
)
from qrc.crypto.registry import REGISTRY, Status

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

_DEM_LABELS = {1: b"QRCE-v1 KEM-DEM", 2: b"QRCE-v2 KEM-DEM"}
_TOO_LONG = f"an envelope holds at most {MAX_PLAINTEXT_SIZE} bytes; stream larger data"
# Policy is read from the registry on every call, never cached: ``set_status`` may
# disallow an algorithm at run time.
_DISALLOWED = Status.DISALLOWED
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
