"""HPKE suites of the envelope: identifiers, which suites each KEM accepts, and running them.

A suite is RFC 9180's ``(kem_id, kdf_id, aead_id)``. Envelope v2 (``docs/formats.md``)
records it in the header; this module says which suites are valid for a registry algorithm
and runs single-shot base-mode HPKE with one:

* pyca/cryptography's ``hpke.Suite`` for every KEM it implements (ML-KEM-768/1024, the two
  hybrids, the DHKEMs) with any of its KDFs (HKDF-SHA256/384/512, SHAKE128/256);
* pycryptodome's HPKE for ML-KEM-512 (draft-ietf-hpke-pq KEM 0x0040), which pyca lacks.
  pycryptodome fixes the KDF by the draft's pairing, so ML-KEM-512 takes HKDF-SHA256 only.

The defaults follow draft-ietf-hpke-pq's suites: the KDF's hash matches the KEM's security
category (HKDF-SHA384 for ML-KEM-1024, MLKEM1024-P384 and DHKEM(P-384)), and the AEAD is
AES-256-GCM throughout.

Sealing with the post-quantum KEMs (ML-KEM-512/768/1024, MLKEM768-X25519, MLKEM1024-P384)
and an HKDF KDF runs RFC 9180 ``SealBase`` here instead: the key's own ``encapsulate`` (for
these KEMs it is the HPKE ``Encap``: draft-ietf-hpke-pq uses ML-KEM and the two hybrids
as they are), the RFC 9180 §5.1 key schedule, and one AEAD call at sequence number 0.
That lets :func:`hpke_seal` encrypt straight into the result ``prefix || enc || ct``
(:func:`seal_after`), where pyca's ``Suite.encrypt`` returns ``enc || ct`` that the
envelope would have to copy behind its header: at 1 MiB and above, that copy and the
allocator's handling of the extra buffer cost several times the encryption. The result is the
same bytes pyca would produce for the same encapsulation (tests check both directions
and the hpke-pq vectors). DHKEMs and the SHAKE KDFs still go through pyca (one more copy).
"""

from __future__ import annotations

import hmac
import io
from functools import cache
from typing import Any, NamedTuple, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from qrc.crypto.errors import DecryptionError, UnsupportedAlgorithm
from qrc.crypto.registry import Kind, get_info

__all__ = [
    "AEAD_IDS",
    "INTO_THRESHOLD",
    "KDF_IDS",
    "KEM_IDS",
    "Suite",
    "accepted_kdfs",
    "default_suite",
    "hpke_decrypt",
    "hpke_encrypt",
    "hpke_seal",
    "kdf_hash",
    "key_schedule",
    "seal_after",
]

# draft-ietf-hpke-pq and RFC 9180 identifiers.
KDF_IDS: dict[str, int] = {
    "HKDF-SHA256": 0x0001,
    "HKDF-SHA384": 0x0002,
    "HKDF-SHA512": 0x0003,
    "SHAKE128": 0x0010,
    "SHAKE256": 0x0011,
}
AEAD_IDS: dict[str, int] = {
    "AES-128-GCM": 0x0001,
    "AES-256-GCM": 0x0002,
    "ChaCha20-Poly1305": 0x0003,
}
# registry algorithm -> HPKE KEM ID
KEM_IDS: dict[str, int] = {
    "ML-KEM-512": 0x0040,
    "ML-KEM-768": 0x0041,
    "ML-KEM-1024": 0x0042,
    "X25519MLKEM768": 0x647A,
    "P384MLKEM1024": 0x0051,
    "X25519": 0x0020,
    "P-256": 0x0010,
    "P-384": 0x0011,
}
_HKDF_SHA256, _HKDF_SHA384 = KDF_IDS["HKDF-SHA256"], KDF_IDS["HKDF-SHA384"]
_AES_256_GCM = AEAD_IDS["AES-256-GCM"]

_PYCA_KEMS: dict[int, hpke.KEM] = {
    0x0041: hpke.KEM.MLKEM768,
    0x0042: hpke.KEM.MLKEM1024,
    0x647A: hpke.KEM.MLKEM768_X25519,
    0x0051: hpke.KEM.MLKEM1024_P384,
    0x0020: hpke.KEM.X25519,
    0x0010: hpke.KEM.P256,
    0x0011: hpke.KEM.P384,
}
_PYCA_KDFS: dict[int, hpke.KDF] = {
    0x0001: hpke.KDF.HKDF_SHA256,
    0x0002: hpke.KDF.HKDF_SHA384,
    0x0003: hpke.KDF.HKDF_SHA512,
    0x0010: hpke.KDF.SHAKE128,
    0x0011: hpke.KDF.SHAKE256,
}
_PYCA_AEADS: dict[int, hpke.AEAD] = {
    0x0001: hpke.AEAD.AES_128_GCM,
    0x0002: hpke.AEAD.AES_256_GCM,
    0x0003: hpke.AEAD.CHACHA20_POLY1305,
}
# pyca ML-KEM classes, to move a key of another provider (pycryptodome) to pyca's HPKE.
_PYCA_MLKEM: dict[str, tuple[Any, Any]] = {
    "ML-KEM-768": (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    "ML-KEM-1024": (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
}
_ML_KEM_512 = 0x0040
_TAG_SIZE = 16
# Any contiguous bytes-like object.
BytesLike = bytes | bytearray | memoryview
# KEMs whose HPKE Encap is the key's own ``encapsulate()`` (draft-ietf-hpke-pq §3, §4).
_ENCAPSULATING_KEMS = frozenset({0x0040, 0x0041, 0x0042, 0x647A, 0x0051})
# RFC 9180 two-stage KDFs: hashlib name and Nh
_HKDFS: dict[int, tuple[str, int]] = {
    0x0001: ("sha256", 32),
    0x0002: ("sha384", 48),
    0x0003: ("sha512", 64),
}
# AEAD: class and Nk (Nn is 12 for all three)
_AEADS: dict[int, tuple[type[AESGCM] | type[ChaCha20Poly1305], int]] = {
    0x0001: (AESGCM, 16),
    0x0002: (AESGCM, 32),
    0x0003: (ChaCha20Poly1305, 32),
}
_NONCE_SIZE = 12
_HPKE_V1 = b"HPKE-v1"
# From this plaintext size on, seal_after encrypts into the result instead of joining.
INTO_THRESHOLD = 16 << 10


class Suite(NamedTuple):
    """An HPKE suite: ``(kem_id, kdf_id, aead_id)``, the three u16 of the header."""

    kem_id: int
    kdf_id: int
    aead_id: int

    @property
    def enc_size(self) -> int:
        """``Nenc``, the size of the encapsulated key that starts the HPKE body."""
        return _enc_size(self.kem_id)


@cache
def _enc_size(kem_id: int) -> int:
    if kem_id == _ML_KEM_512:
        return 768
    return _PYCA_KEMS[kem_id].enc_length()


def kdf_hash(kdf_id: int) -> str:
    """The ``hashlib`` name of an HKDF (KEM-DEM takes HKDF-SHA256 and HKDF-SHA384 only)."""
    return {_HKDF_SHA256: "sha256", _HKDF_SHA384: "sha384"}[kdf_id]


def accepted_kdfs(algorithm: str) -> frozenset[int]:
    """The KDF IDs an HPKE envelope of ``algorithm`` may use (empty: no HPKE KEM)."""
    kem_id = KEM_IDS.get(algorithm)
    if kem_id is None:
        return frozenset()
    if kem_id == _ML_KEM_512:
        return frozenset({_HKDF_SHA256})
    return frozenset(KDF_IDS.values())


# The draft-ietf-hpke-pq suites pair these KEMs with HKDF-SHA384 (RFC 9180 does for P-384).
_SHA384_KEMS = frozenset({0x0042, 0x0051, 0x0011})


@cache
def default_suite(algorithm: str) -> Suite:
    """The suite ``seal`` uses for ``algorithm`` (``kem_id`` 0: no HPKE KEM, KEM-DEM only).

    HKDF-SHA384 for ML-KEM-1024, MLKEM1024-P384 and DHKEM(P-384), as draft-ietf-hpke-pq's
    suites pair them, and for the other NIST category 5 KEMs (KEM-DEM); HKDF-SHA256
    otherwise. AES-256-GCM always.
    """
    info = get_info(algorithm, Kind.KEM)
    kem_id = KEM_IDS.get(info.id, 0)
    strong = kem_id in _SHA384_KEMS or (kem_id == 0 and (info.nist_level or 0) >= 5)
    return Suite(kem_id, _HKDF_SHA384 if strong else _HKDF_SHA256, _AES_256_GCM)


# --------------------------------------------------------------------------- running HPKE
def _pyca_key(key: Any, private: bool) -> Any:
    """The pyca HPKE object for one of our keys."""
    convert = getattr(key, "to_hpke", None) or getattr(key, "to_pyca", None)
    if convert is not None:
        return convert()
    classes = _PYCA_MLKEM.get(key.algorithm)
    if classes is None:
        raise UnsupportedAlgorithm(f"{key.algorithm} keys of this provider cannot use HPKE")
    # An ML-KEM key of another provider: the same key from its standard encoding.
    if private:
        return classes[0].from_seed_bytes(key.private_bytes())
    return classes[1].from_public_bytes(key.public_bytes())


def _pycryptodome_key(key: Any, private: bool) -> Any:
    convert = getattr(key, "to_pycryptodome", None)
    if convert is not None:
        return convert()
    from Crypto.PublicKey import MLKEM  # noqa: PLC0415  # nosec B413 - pycryptodome, ML-KEM-512 keys

    if private:
        return MLKEM.construct(param_set=MLKEM.ML_KEM_512, seed=key.private_bytes())
    return MLKEM.construct(param_set=MLKEM.ML_KEM_512, ek=key.public_bytes())


@cache
def _pyca_suite(suite: Suite) -> hpke.Suite:
    return hpke.Suite(
        _PYCA_KEMS[suite.kem_id], _PYCA_KDFS[suite.kdf_id], _PYCA_AEADS[suite.aead_id]
    )


def _check(suite: Suite, algorithm: str) -> None:
    if (
        KEM_IDS.get(algorithm) != suite.kem_id
        or suite.kdf_id not in accepted_kdfs(algorithm)
        or suite.aead_id not in _PYCA_AEADS
    ):
        raise UnsupportedAlgorithm(f"HPKE suite {suite} is not defined for {algorithm}")


class _Schedule(NamedTuple):
    """What the key schedule of one suite needs, computed once."""

    hash_name: str
    zero_salt: bytes  # Nh zero bytes, LabeledExtract's default salt
    labeled: bytes  # "HPKE-v1" || suite_id, the prefix of every label
    psk_id_hash: bytes  # LabeledExtract("", "psk_id_hash", "") (base mode: empty psk_id)
    cipher: type[AESGCM] | type[ChaCha20Poly1305]
    key_size: int


@cache
def _schedule(suite: Suite) -> _Schedule | None:
    """The suite's key schedule constants; None if it is not run here (see the module)."""
    if (
        suite.kem_id not in _ENCAPSULATING_KEMS
        or suite.kdf_id not in _HKDFS
        or suite.aead_id not in _AEADS
    ):
        return None
    hash_name, hash_size = _HKDFS[suite.kdf_id]
    suite_id = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in suite)
    labeled = _HPKE_V1 + suite_id
    zero_salt = bytes(hash_size)
    psk_id_hash = hmac.digest(zero_salt, labeled + b"psk_id_hash", hash_name)
    cipher, key_size = _AEADS[suite.aead_id]
    return _Schedule(hash_name, zero_salt, labeled, psk_id_hash, cipher, key_size)


def _labeled_expand(schedule: _Schedule, prk: bytes, label: bytes, info: bytes, size: int) -> bytes:
    """RFC 9180 LabeledExpand; ``size`` is at most Nh here (one HKDF-Expand block)."""
    labeled_info = size.to_bytes(2, "big") + schedule.labeled + label + info
    return hmac.digest(prk, labeled_info + b"\x01", schedule.hash_name)[:size]


def key_schedule(suite: Suite, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 §5.1 ``KeyScheduleS/R`` in base mode: the AEAD ``key`` and ``base_nonce``.

    Only for suites this module runs itself (a post-quantum KEM with an HKDF KDF).

    Raises:
        UnsupportedAlgorithm: any other suite.
    """
    schedule = _schedule(suite)
    if schedule is None:
        raise UnsupportedAlgorithm(f"the HPKE key schedule of {suite} is pyca's")
    labeled, hash_name = schedule.labeled, schedule.hash_name
    info_hash = hmac.digest(schedule.zero_salt, labeled + b"info_hash" + info, hash_name)
    context = b"\x00" + schedule.psk_id_hash + info_hash  # mode_base
    secret = hmac.digest(shared_secret, labeled + b"secret", hash_name)  # salt=ss, ikm=psk=""
    return (
        _labeled_expand(schedule, secret, b"key", context, schedule.key_size),
        _labeled_expand(schedule, secret, b"base_nonce", context, _NONCE_SIZE),
    )


def seal_after(
    prefix: bytes,
    cipher: AESGCM | ChaCha20Poly1305,
    nonce: BytesLike,
    plaintext: BytesLike,
    aad: BytesLike | None,
) -> bytes:
    """``prefix || AEAD(nonce, plaintext, aad)``, from plaintexts of 16 KiB on written in place.

    From :data:`INTO_THRESHOLD` bytes on, the result is one allocation that
    ``encrypt_into`` fills behind ``prefix``: neither the plaintext nor the ciphertext is
    copied, and the buffer is never cleared first. It is a ``BytesIO`` over a fresh
    ``bytes(size)`` (``calloc``: fresh pages are not written twice), which it owns alone,
    so that ``getbuffer()`` writes into it and ``getvalue()`` hands it over as the result
    (CPython; an implementation that copies there is only slower). Below that size, one
    ``encrypt`` and a join cost less than setting that up.
    """
    if isinstance(plaintext, memoryview) and plaintext.format != "B":
        plaintext = plaintext.cast("B")  # pyca reads byte views only; sizes are in bytes
    size = len(plaintext)
    if size < INTO_THRESHOLD:
        return b"".join((prefix, cipher.encrypt(nonce, plaintext, aad)))
    start = len(prefix)
    buffer = io.BytesIO(bytes(start + size + _TAG_SIZE))
    with buffer.getbuffer() as view:
        view[:start] = prefix
        cipher.encrypt_into(nonce, plaintext, aad, view[start:])
    return buffer.getvalue()


def hpke_seal(
    suite: Suite, public_key: Any, plaintext: BytesLike, info: bytes, prefix: bytes = b""
) -> bytes:
    """``prefix || enc || ct``: RFC 9180 SealBase (sequence 0, empty aad) to ``public_key``.

    For the suites run here the AEAD writes into the result (:func:`seal_after`); pyca's
    and pycryptodome's results are copied behind ``prefix``.

    Raises:
        UnsupportedAlgorithm: the suite is not accepted for the key's algorithm.
    """
    schedule = _schedule(suite)
    if schedule is None:
        return prefix + hpke_encrypt(suite, public_key, plaintext, info)
    _check(suite, public_key.algorithm)
    enc, shared_secret = public_key.encapsulate()
    key, nonce = key_schedule(suite, shared_secret, info)
    return seal_after(prefix + enc, schedule.cipher(key), nonce, plaintext, None)


def hpke_encrypt(suite: Suite, public_key: Any, plaintext: BytesLike, info: bytes) -> bytes:
    """``enc || ct`` of RFC 9180 SealBase (sequence 0, empty aad) to ``public_key``.

    Raises:
        UnsupportedAlgorithm: the suite is not accepted for the key's algorithm.
    """
    _check(suite, public_key.algorithm)
    if suite.kem_id == _ML_KEM_512:
        from Crypto.Protocol import HPKE  # noqa: PLC0415  # nosec B413 - pycryptodome HPKE, ML-KEM-512

        sender = HPKE.new(
            receiver_key=_pycryptodome_key(public_key, private=False),
            aead_id=HPKE.AEAD(suite.aead_id),
            info=info,
        )
        # pycryptodome reads any bytes-like object; its stubs say bytes.
        return bytes(sender.enc) + bytes(sender.seal(cast(bytes, plaintext)))
    return bytes(_pyca_suite(suite).encrypt(plaintext, _pyca_key(public_key, False), info=info))


def hpke_decrypt(suite: Suite, private_key: Any, data: BytesLike, info: bytes) -> bytes:
    """RFC 9180 OpenBase of ``enc || ct``; every failure raises ``DecryptionError``.

    ``data`` may be a memoryview into a larger buffer (the envelope): nothing copies it.
    """
    try:
        _check(suite, private_key.algorithm)
        if suite.kem_id == _ML_KEM_512:
            from Crypto.Protocol import HPKE  # noqa: PLC0415  # nosec B413 - pycryptodome

            split = suite.enc_size
            if len(data) < split + _TAG_SIZE:
                raise DecryptionError
            receiver = HPKE.new(
                receiver_key=_pycryptodome_key(private_key, private=True),
                aead_id=HPKE.AEAD(suite.aead_id),
                enc=bytes(data[:split]),
                info=info,
            )
            return bytes(receiver.unseal(cast(bytes, data[split:])))  # a view, read in place
        return bytes(_pyca_suite(suite).decrypt(data, _pyca_key(private_key, True), info=info))
    except (InvalidTag, ValueError, UnsupportedAlgorithm):
        raise DecryptionError from None
