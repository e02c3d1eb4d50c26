"""Key files: PKCS#8 private keys (optionally passphrase-encrypted) and SPKI public keys.

Private keys are PKCS#8 ``OneAsymmetricKey`` (RFC 5958), public keys X.509
``SubjectPublicKeyInfo`` (RFC 5280), as DER or PEM (RFC 7468, labels ``PRIVATE KEY``,
``ENCRYPTED PRIVATE KEY`` and ``PUBLIC KEY``). The ``privateKey`` octets per algorithm:

* ML-KEM (draft-ietf-lamps-kyber-certificates) and ML-DSA (RFC 9881): the
  ``seed [0] IMPLICIT OCTET STRING`` choice (64 and 32 bytes). The ``expandedKey`` and
  ``both`` choices are refused: a seed is the only form from which everything else is
  derived and checked.
* SLH-DSA (RFC 9909), composite ML-DSA (draft-ietf-lamps-pq-composite-sigs), X-Wing
  (draft-connolly-cfrg-xwing-kem), and the algorithms on our private arc: the raw private
  key itself, no inner wrapping.
* X25519 and Ed25519 (RFC 8410): ``CurvePrivateKey ::= OCTET STRING``.
* P-256/P-384 and ECDSA (RFC 5915, SEC 1): ``ECPrivateKey`` with the public key, under
  ``id-ecPublicKey`` with the named curve as parameters, as OpenSSL writes it.

Parameters are absent everywhere except for the EC curve. ML-KEM and ML-DSA files are
byte-identical to what pyca/cryptography (OpenSSL 4) writes. An EC key file does not say
whether the key is for ECDSA or ECDH (DHKEM): loaders return the ECDSA key unless
``kind=Kind.KEM`` or ``algorithm=`` says otherwise.

Encryption (:mod:`qrc.crypto.pbes2`) is PKCS#8 ``EncryptedPrivateKeyInfo`` with PBES2
(RFC 8018): PBKDF2-HMAC-SHA256 (:data:`PBKDF2_ITERATIONS` iterations, 16-byte salt) and
AES-256-CBC, which OpenSSL and pyca read. Readers also accept PBKDF2 with
HMAC-SHA1/224/256/384/512, scrypt (RFC 7914) and AES-128/192/256-CBC, with the work factors
bounded so that a hostile file cannot make loading take minutes or gigabytes.

Algorithms with no assigned OID (HQC, Classic McEliece, P384MLKEM1024) use OIDs under
:data:`PRIVATE_ARC`, a UUID-derived arc (ITU-T X.667, ``2.25.<UUID>``) that needs no
registration and cannot collide; see :data:`PRIVATE_OIDS`. They are ours alone and will be
replaced (old ones kept readable) when standard OIDs are assigned.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final, TypeAlias

from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey
from qrc.crypto.der import (
    SEQUENCE,
    Reader,
    context_tag,
    decode,
    decode_bit_string,
    encode_bit_string,
    encode_explicit,
    encode_implicit,
    encode_integer,
    encode_octet_string,
    encode_oid,
    encode_sequence,
)
from qrc.crypto.errors import KeyFormatError
from qrc.crypto.pbes2 import decrypt_private_key_info, encrypt_private_key_info, short_oid
from qrc.crypto.pem import pem_decode, pem_encode
from qrc.crypto.registry import Kind, all_algorithms, get_info
from qrc.crypto.schemes import get_kem, get_signature

__all__ = [
    "PBKDF2_ITERATIONS",
    "PRIVATE_ARC",
    "PRIVATE_OIDS",
    "key_oid",
    "load_private_der",
    "load_private_pem",
    "load_public_der",
    "load_public_pem",
    "private_key_to_der",
    "private_key_to_pem",
    "public_key_to_der",
    "public_key_to_pem",
]

PrivateKey: TypeAlias = SigningKey | KemPrivateKey
PublicKey: TypeAlias = VerifyingKey | KemPublicKey

# qrc's own arc: 2.25 + a random UUID (d0bedbed-9fbe-49cd-92f2-47f7e1e9c44d), ITU-T X.667.
# Sub-arc .1 holds KEMs. Never reuse or renumber an entry: files in the field carry them.
PRIVATE_ARC: Final = "2.25.277470420200599995402128551827678544973"
PRIVATE_OIDS: Final[dict[str, str]] = {
    "HQC-128": PRIVATE_ARC + ".1.1",
    "HQC-192": PRIVATE_ARC + ".1.2",
    "HQC-256": PRIVATE_ARC + ".1.3",
    "Classic-McEliece-348864": PRIVATE_ARC + ".1.11",
    "Classic-McEliece-348864f": PRIVATE_ARC + ".1.12",
    "Classic-McEliece-460896": PRIVATE_ARC + ".1.13",
    "Classic-McEliece-460896f": PRIVATE_ARC + ".1.14",
    "Classic-McEliece-6688128": PRIVATE_ARC + ".1.15",
    "Classic-McEliece-6688128f": PRIVATE_ARC + ".1.16",
    "Classic-McEliece-6960119": PRIVATE_ARC + ".1.17",
    "Classic-McEliece-6960119f": PRIVATE_ARC + ".1.18",
    "Classic-McEliece-8192128": PRIVATE_ARC + ".1.19",
    "Classic-McEliece-8192128f": PRIVATE_ARC + ".1.20",
    "P384MLKEM1024": PRIVATE_ARC + ".1.30",
}

#: PBKDF2-HMAC-SHA256 iterations for new encrypted key files (OWASP 2023 guidance).
#: Tests lower it with ``monkeypatch``; nothing else should.
PBKDF2_ITERATIONS = 600_000

_ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_SECP256R1 = "1.2.840.10045.3.1.7"
_SECP384R1 = "1.3.132.0.34"
_EC_CURVES = {
    "P-256": (_SECP256R1, 32),
    "ECDSA-P256": (_SECP256R1, 32),
    "P-384": (_SECP384R1, 48),
    "ECDSA-P384": (_SECP384R1, 48),
}

_PEM_PRIVATE = "PRIVATE KEY"
_PEM_ENCRYPTED = "ENCRYPTED PRIVATE KEY"
_PEM_PUBLIC = "PUBLIC KEY"

_SEED_CHOICE = context_tag(0, constructed=False)  # ML-KEM / ML-DSA ``seed [0]``
_PKCS8_ATTRIBUTES = context_tag(0, constructed=True)
_PKCS8_PUBLIC_KEY = context_tag(1, constructed=False)
_EC_PARAMETERS = context_tag(0, constructed=True)
_EC_PUBLIC_KEY = context_tag(1, constructed=True)


# --------------------------------------------------------------------------- formats
@dataclass(frozen=True, slots=True)
class _Format:
    """How one algorithm's keys sit in PKCS#8 and SPKI."""

    algorithm: str
    kind: Kind
    oid: str
    curve: str | None  # namedCurve parameter (EC keys only)
    private: str  # "seed" | "raw" | "curve" | "ec"
    size: int = 0  # seed or scalar size, where fixed by the format


def _format_for(algorithm: str, kind: Kind, oid: str | None) -> _Format | None:
    if algorithm in _EC_CURVES:
        curve, size = _EC_CURVES[algorithm]
        return _Format(algorithm, kind, _ID_EC_PUBLIC_KEY, curve, "ec", size)
    oid = PRIVATE_OIDS.get(algorithm, oid)
    if oid is None:
        return None  # no key files until it has an OID (the key file tests say so)
    if algorithm.startswith("ML-KEM-"):
        return _Format(algorithm, kind, oid, None, "seed", 64)
    if algorithm.startswith("ML-DSA-"):
        return _Format(algorithm, kind, oid, None, "seed", 32)
    if algorithm in ("X25519", "Ed25519"):
        return _Format(algorithm, kind, oid, None, "curve", 32)
    return _Format(algorithm, kind, oid, None, "raw")


def _build_formats() -> dict[str, _Format]:
    formats = {}
    for info in all_algorithms():
        if info.kind is not Kind.AEAD:
            fmt = _format_for(info.id, info.kind, info.oid)
            if fmt is not None:
                formats[info.id] = fmt
    return formats


_FORMATS = _build_formats()
_BY_OID: dict[tuple[str, str | None], list[_Format]] = {}
for _fmt in _FORMATS.values():
    _BY_OID.setdefault((_fmt.oid, _fmt.curve), []).append(_fmt)


def key_oid(algorithm: str) -> str:
    """The AlgorithmIdentifier OID of ``algorithm``'s keys (``id-ecPublicKey`` for EC)."""
    info = get_info(algorithm)
    try:
        return _FORMATS[info.id].oid
    except KeyError:
        raise KeyFormatError(f"{info.id} has no key file format") from None


def _format_of_key(key: PrivateKey | PublicKey) -> _Format:
    info = get_info(key.algorithm)
    try:
        return _FORMATS[info.id]
    except KeyError:
        raise KeyFormatError(f"{info.id} has no key file format") from None


def _algorithm_identifier(fmt: _Format) -> bytes:
    if fmt.curve is not None:
        return encode_sequence(encode_oid(fmt.oid), encode_oid(fmt.curve))
    return encode_sequence(encode_oid(fmt.oid))


def _read_algorithm_identifier(reader: Reader, algorithm: str | None, kind: Kind | None) -> _Format:
    oid = reader.read_oid()
    curve = reader.read_oid() if oid == _ID_EC_PUBLIC_KEY else None
    if not reader.at_end:
        raise KeyFormatError(f"unexpected parameters for key algorithm {short_oid(oid)}")
    candidates = _BY_OID.get((oid, curve))
    if not candidates:
        shown = short_oid(oid if curve is None else f"{oid} (curve {curve})")
        raise KeyFormatError(f"unknown key algorithm OID {shown}")
    found = ", ".join(fmt.algorithm for fmt in candidates)
    if kind is not None:
        candidates = [fmt for fmt in candidates if fmt.kind is kind]
    if algorithm is not None:
        wanted = get_info(algorithm).id
        candidates = [fmt for fmt in candidates if fmt.algorithm == wanted]
    if not candidates:
        asked = algorithm if algorithm is not None else f"a {kind} key"
        raise KeyFormatError(f"the key file holds a {found} key, not {asked}")
    # EC keys serve ECDSA and ECDH alike; a bare EC key file is taken as an ECDSA key.
    candidates.sort(key=lambda fmt: fmt.kind is not Kind.SIGNATURE)
    return candidates[0]


# --------------------------------------------------------------------------- private keys
def _check_private(key: object) -> PrivateKey:
    if not isinstance(key, SigningKey | KemPrivateKey):
        raise TypeError(f"expected a private key object, not {type(key).__name__}")
    return key


def _private_octets(fmt: _Format, key: PrivateKey) -> bytes:
    raw = key.private_bytes()
    if fmt.size and len(raw) != fmt.size:
        raise KeyFormatError(f"{fmt.algorithm} private key has an unexpected length")
    if fmt.private == "seed":
        return encode_implicit(0, raw)
    if fmt.private == "curve":
        return encode_octet_string(raw)
    if fmt.private == "ec":
        public = key.public_key().public_bytes()
        return encode_sequence(
            encode_integer(1),
            encode_octet_string(raw),
            encode_explicit(1, encode_bit_string(public)),
        )
    return raw


def private_key_to_der(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 DER of ``key``; ``EncryptedPrivateKeyInfo`` if a passphrase is given."""
    key = _check_private(key)
    fmt = _format_of_key(key)
    der = encode_sequence(
        encode_integer(0),
        _algorithm_identifier(fmt),
        encode_octet_string(_private_octets(fmt, key)),
    )
    return (
        der
        if passphrase is None
        else encrypt_private_key_info(der, passphrase, iterations=PBKDF2_ITERATIONS)
    )


def private_key_to_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key`` (``ENCRYPTED PRIVATE KEY`` if a passphrase is given)."""
    der = private_key_to_der(key, passphrase)
    return pem_encode(_PEM_PRIVATE if passphrase is None else _PEM_ENCRYPTED, der)


def _decode_private_octets(fmt: _Format, octets: bytes) -> tuple[bytes, bytes | None]:
    """The raw private key, and the public key if the encoding carries one."""
    if fmt.private == "raw":
        return octets, None
    element = decode(octets)
    if fmt.private == "seed":
        if element.tag != _SEED_CHOICE:
            raise KeyFormatError(
                f"{fmt.algorithm} private key is not in the seed form; only the seed form "
                "is supported (OpenSSL: -provparam ml-kem.output_formats=seed-only)"
            )
        if len(element.content) != fmt.size:
            raise KeyFormatError(f"{fmt.algorithm} seed must be {fmt.size} bytes")
        return element.content, None
    if fmt.private == "curve":
        if element.tag != 0x04 or len(element.content) != fmt.size:
            raise KeyFormatError(f"malformed {fmt.algorithm} private key")
        return element.content, None
    # ECPrivateKey (RFC 5915)
    if element.tag != SEQUENCE:
        raise KeyFormatError("malformed ECPrivateKey")
    reader = element.reader()
    if reader.read_integer() != 1:
        raise KeyFormatError("unsupported ECPrivateKey version")
    scalar = reader.read_octet_string()
    if len(scalar) != fmt.size:
        raise KeyFormatError(f"{fmt.algorithm} private scalar must be {fmt.size} bytes")
    params = reader.optional(_EC_PARAMETERS)
    if params is not None:
        inner = Reader(params)
        if inner.read_oid() != fmt.curve:
            raise KeyFormatError("ECPrivateKey curve does not match the algorithm identifier")
        inner.finish()
    public_field = reader.optional(_EC_PUBLIC_KEY)
    public = None
    if public_field is not None:
        inner = Reader(public_field)
        public = inner.read_bit_string()
        inner.finish()
    reader.finish()
    return scalar, public


def _load_private_info(der: bytes, algorithm: str | None, kind: Kind | None) -> PrivateKey:
    outer = decode(der)
    if outer.tag != SEQUENCE:
        raise KeyFormatError("not a PKCS#8 private key")
    reader = outer.reader()
    version = reader.read_integer()
    if version not in (0, 1):
        raise KeyFormatError("unsupported PKCS#8 version")
    fmt = _read_algorithm_identifier(reader.read_sequence(), algorithm, kind)
    octets = reader.read_octet_string()
    if reader.peek_tag() == _PKCS8_ATTRIBUTES:
        raise KeyFormatError("PKCS#8 attributes are not supported")
    public = None
    if reader.peek_tag() == _PKCS8_PUBLIC_KEY:
        if version != 1:
            raise KeyFormatError("a PKCS#8 v1 key cannot carry a public key")
        public = decode_bit_string(reader.read().content)
    reader.finish()
    raw, embedded = _decode_private_octets(fmt, octets)
    key: PrivateKey
    if fmt.kind is Kind.KEM:
        key = get_kem(fmt.algorithm).load_private(raw)
    else:
        key = get_signature(fmt.algorithm).load_private(raw)
    derived = key.public_key().public_bytes()
    for claimed in (public, embedded):
        if claimed is not None and not hmac.compare_digest(claimed, derived):
            raise KeyFormatError("the public key in the key file does not match the private key")
    return key


def load_private_der(
    data: bytes,
    passphrase: bytes | None = None,
    *,
    algorithm: str | None = None,
    kind: Kind | None = None,
) -> PrivateKey:
    """Load a PKCS#8 DER private key, encrypted or not.

    Args:
        data: ``PrivateKeyInfo`` / ``OneAsymmetricKey`` or ``EncryptedPrivateKeyInfo``.
        passphrase: needed exactly when the key is encrypted.
        algorithm: if given, the key must be of this algorithm.
        kind: if given, the key must be of this kind (picks ECDH over ECDSA for EC keys).

    Raises:
        KeyFormatError: malformed, of another algorithm, wrong or missing passphrase.
    """
    data = bytes(data)
    outer = decode(data)
    if outer.tag != SEQUENCE:
        raise KeyFormatError("not a PKCS#8 private key")
    encrypted = outer.reader().peek_tag() == SEQUENCE
    if encrypted:
        if passphrase is None:
            raise KeyFormatError("the private key is encrypted: a passphrase is needed")
        data = decrypt_private_key_info(data, passphrase)
    elif passphrase is not None:
        raise KeyFormatError("a passphrase was given but the private key is not encrypted")
    return _load_private_info(data, algorithm, kind)


def load_private_pem(
    data: bytes | str,
    passphrase: bytes | None = None,
    *,
    algorithm: str | None = None,
    kind: Kind | None = None,
) -> PrivateKey:
    """Load a PEM ``PRIVATE KEY`` or ``ENCRYPTED PRIVATE KEY`` (see :func:`load_private_der`)."""
    label, der = pem_decode(data, (_PEM_PRIVATE, _PEM_ENCRYPTED))
    is_encrypted = decode(der).reader().peek_tag() == SEQUENCE
    if is_encrypted != (label == _PEM_ENCRYPTED):
        raise KeyFormatError(f"PEM label {label!r} does not match its content")
    return load_private_der(der, passphrase, algorithm=algorithm, kind=kind)


# --------------------------------------------------------------------------- public keys
def public_key_to_der(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER of ``key``."""
    if not isinstance(key, VerifyingKey | KemPublicKey):
        raise TypeError(f"expected a public key object, not {type(key).__name__}")
    fmt = _format_of_key(key)
    return encode_sequence(_algorithm_identifier(fmt), encode_bit_string(key.public_bytes()))


def public_key_to_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM (``PUBLIC KEY``) of ``key``."""
    return pem_encode(_PEM_PUBLIC, public_key_to_der(key))


def load_public_der(
    data: bytes, *, algorithm: str | None = None, kind: Kind | None = None
) -> PublicKey:
    """Load a SubjectPublicKeyInfo DER public key.

    Raises:
        KeyFormatError: malformed, or not of ``algorithm`` / ``kind`` when given.
    """
    outer = decode(bytes(data))
    if outer.tag != SEQUENCE:
        raise KeyFormatError("not a SubjectPublicKeyInfo")
    reader = outer.reader()
    fmt = _read_algorithm_identifier(reader.read_sequence(), algorithm, kind)
    raw = reader.read_bit_string()
    reader.finish()
    if fmt.kind is Kind.KEM:
        return get_kem(fmt.algorithm).load_public(raw)
    return get_signature(fmt.algorithm).load_public(raw)


def load_public_pem(
    data: bytes | str, *, algorithm: str | None = None, kind: Kind | None = None
) -> PublicKey:
    """Load a PEM ``PUBLIC KEY`` (see :func:`load_public_der`)."""
    _, der = pem_decode(data, (_PEM_PUBLIC,))
    return load_public_der(der, algorithm=algorithm, kind=kind)
