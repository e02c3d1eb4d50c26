"""Key files: PKCS#8 / SPKI round trips for every algorithm, OpenSSL (pyca) byte identity,
PBES2 encryption, standard vectors, strict parsing, and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import os
from functools import cache
from typing import Any

import pytest
from cryptography.exceptions import UnsupportedAlgorithm as PycaUnsupportedAlgorithm
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from qrc.crypto import der
from qrc.crypto import keyfile as kf
from qrc.crypto.base import KemPrivateKey, SigningKey
from qrc.crypto.errors import KeyFormatError, UnsupportedAlgorithm
from qrc.crypto.pem import pem_decode
from qrc.crypto.registry import Kind, all_algorithms, get_info
from qrc.crypto.schemes import get_kem, get_signature
from tests.vectors import load_json

DEFAULT_ITERATIONS = kf.PBKDF2_ITERATIONS
FAST_ITERATIONS = 1000

# Classic McEliece keys are huge and slow to make: two parameter sets stand for the family.
_MCELIECE_TESTED = {"Classic-McEliece-348864", "Classic-McEliece-348864f"}
ALGORITHMS = [
    info.id
    for info in all_algorithms()
    if info.kind is not Kind.AEAD
    and (not info.id.startswith("Classic-McEliece") or info.id in _MCELIECE_TESTED)
]
PYCA_ALGORITHMS = [
    "ML-KEM-768", "ML-KEM-1024", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87",
    "X25519", "Ed25519", "P-256", "P-384", "ECDSA-P256", "ECDSA-P384",
]  # fmt: skip
EC_KEMS = {"P-256", "P-384"}
_CURVES = {"P-256": "1.2.840.10045.3.1.7", "ECDSA-P256": "1.2.840.10045.3.1.7"}
_CURVES |= {"P-384": "1.3.132.0.34", "ECDSA-P384": "1.3.132.0.34"}


@pytest.fixture(autouse=True)
def _fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kf, "PBKDF2_ITERATIONS", FAST_ITERATIONS)


@cache
def _key(algorithm: str) -> Any:
    """One generated key per algorithm for the whole module (skips if not implemented)."""
    info = get_info(algorithm)
    try:
        scheme = get_kem(algorithm) if info.kind is Kind.KEM else get_signature(algorithm)
    except (UnsupportedAlgorithm, ImportError) as exc:
        pytest.skip(f"{algorithm} has no implementation yet: {exc}")
    return scheme.generate()


def _hints(algorithm: str) -> dict[str, Any]:
    return {"kind": Kind.KEM} if algorithm in EC_KEMS else {}


def _expected_oid(algorithm: str) -> str:
    if algorithm in _CURVES:
        return "1.2.840.10045.2.1"
    oid = get_info(algorithm).oid
    return oid if oid is not None else kf.PRIVATE_OIDS[algorithm]


def _works(original: Any, loaded: Any) -> None:
    """The loaded key does the job with the original (and the other way round)."""
    if isinstance(original, KemPrivateKey):
        ciphertext, secret = original.public_key().encapsulate()
        assert loaded.decapsulate(ciphertext) == secret
    elif not original.algorithm.startswith("SLH-DSA") or original.algorithm.endswith("f"):
        # (the SLH-DSA "s" sets take seconds to sign; byte equality covers them)
        assert original.public_key().is_valid(loaded.sign(b"message"), b"message")


# --------------------------------------------------------------------------- OID table


def test_every_key_algorithm_has_an_oid() -> None:
    curves = {"P-256": "secp256r1", "ECDSA-P256": "secp256r1"}
    curves |= {"P-384": "secp384r1", "ECDSA-P384": "secp384r1"}
    seen: dict[tuple[str, str | None], set[str]] = {}
    for info in all_algorithms():
        if info.kind is Kind.AEAD:
            continue
        assert (info.oid is None) == (info.id in kf.PRIVATE_OIDS), info.id
        oid = kf.key_oid(info.id)
        assert oid == _expected_oid(info.id)
        seen.setdefault((oid, curves.get(info.id)), set()).add(info.id)
    shared = sorted(sorted(ids) for ids in seen.values() if len(ids) > 1)
    # Only an EC key file cannot tell ECDSA from ECDH (loaders take a kind= hint).
    assert shared == [["ECDSA-P256", "P-256"], ["ECDSA-P384", "P-384"]]
    for oid in kf.PRIVATE_OIDS.values():
        assert oid.startswith(kf.PRIVATE_ARC + ".")
        assert der.decode_oid(der.decode(der.encode_oid(oid)).content) == oid


def test_aead_keys_have_no_key_file() -> None:
    with pytest.raises(KeyFormatError):
        kf.key_oid("AES-256-GCM")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(algorithm: str) -> None:
    key = _key(algorithm)
    public = key.public_key()
    hints = _hints(algorithm)

    private_der = kf.private_key_to_der(key)
    private_pem = kf.private_key_to_pem(key)
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert base64.b64decode(b"".join(private_pem.splitlines()[1:-1])) == private_der
    for loaded in (
        kf.load_private_der(private_der, **hints),
        kf.load_private_pem(private_pem, **hints),
        kf.load_private_pem(private_pem.decode(), algorithm=algorithm),
    ):
        assert loaded.algorithm == algorithm
        assert loaded.private_bytes() == key.private_bytes()
        assert loaded.public_key().public_bytes() == public.public_bytes()
    _works(key, kf.load_private_der(private_der, **hints))

    public_der = kf.public_key_to_der(public)
    public_pem = kf.public_key_to_pem(public)
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    for loaded_public in (kf.load_public_der(public_der, **hints), kf.load_public_pem(public_pem)):
        assert loaded_public.public_bytes() == public.public_bytes()
    if isinstance(key, SigningKey):
        assert kf.load_public_der(public_der, **hints).algorithm == algorithm

    encrypted = kf.private_key_to_pem(key, b"correct horse")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    loaded = kf.load_private_pem(encrypted, b"correct horse", **hints)
    assert loaded.private_bytes() == key.private_bytes()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_structure_follows_the_standards(algorithm: str) -> None:
    key = _key(algorithm)
    raw = key.private_bytes()

    reader = der.decode(kf.private_key_to_der(key)).reader()
    assert reader.read_integer() == 0  # v1: no public key, no attributes
    algorithm_id = reader.read_sequence()
    assert algorithm_id.read_oid() == _expected_oid(algorithm)
    if algorithm in _CURVES:
        assert algorithm_id.read_oid() == _CURVES[algorithm]  # the namedCurve
    algorithm_id.finish()  # parameters absent
    octets = reader.read_octet_string()
    reader.finish()

    if algorithm.startswith("ML-KEM"):
        assert octets == b"\x80\x40" + raw  # seed [0] (draft-ietf-lamps-kyber-certificates)
    elif algorithm.startswith("ML-DSA"):
        assert octets == b"\x80\x20" + raw  # seed [0] (RFC 9881)
    elif algorithm in ("X25519", "Ed25519"):
        assert octets == b"\x04\x20" + raw  # CurvePrivateKey (RFC 8410)
    elif algorithm in _CURVES:
        ec = der.decode(octets).reader()
        assert ec.read_integer() == 1
        assert ec.read_octet_string() == raw
        assert ec.read_explicit(1).read_bit_string() == key.public_key().public_bytes()
        ec.finish()
    else:
        assert octets == raw  # SLH-DSA, composites, X-Wing, private arc: the raw key

    spki = der.decode(kf.public_key_to_der(key.public_key())).reader()
    spki_algorithm = spki.read_sequence()
    assert spki_algorithm.read_oid() == _expected_oid(algorithm)
    assert spki.read_bit_string() == key.public_key().public_bytes()
    spki.finish()


def test_xwing_matches_the_draft_layout() -> None:
    # draft-connolly-cfrg-xwing-kem, "ASN.1 module and examples": PKCS#8 is the raw seed
    # under id-XWing with absent parameters; the SPKI holds the raw 1216-byte key.
    for vector in load_json("xwing/test-vectors.json"):
        key = get_kem("X25519MLKEM768").load_private(bytes.fromhex(vector["sk"]))
        header = "3034020100300d060b2b0601040183e62d81c87a0420"
        assert kf.private_key_to_der(key).hex() == header + vector["sk"]
        spki = kf.public_key_to_der(key.public_key())
        assert spki.hex() == "308204d4300d060b2b0601040183e62d81c87a038204c100" + vector["pk"]
        assert kf.load_public_der(spki).public_bytes().hex() == vector["pk"]


def _spki_of_certificate(certificate: bytes) -> bytes:
    tbs = der.decode(certificate).reader().read_sequence()
    if tbs.peek_tag() == 0xA0:
        tbs.read()  # version
    for _ in range(5):  # serial, signature, issuer, validity, subject
        tbs.read()
    element = tbs.read()
    return der.encode_tlv(element.tag, element.content)


def _composite_vectors() -> list[dict[str, str]]:
    tests = load_json("composite-sigs/testvectors.json")["tests"]
    return [test for test in tests if test["tcId"].removeprefix("id-") in get_ids()]


@cache
def get_ids() -> frozenset[str]:
    return frozenset(info.id for info in all_algorithms(Kind.SIGNATURE))


def test_composite_and_mldsa_vectors() -> None:
    """The draft-ietf-lamps-pq-composite-sigs vectors' PKCS#8 and certificate SPKI."""
    vectors = _composite_vectors()
    assert len(vectors) >= 7  # ML-DSA-44/65/87 and four composites
    for vector in vectors:
        algorithm = vector["tcId"].removeprefix("id-")
        sk_pkcs8 = base64.b64decode(vector["sk_pkcs8"])
        try:
            key = kf.load_private_der(sk_pkcs8)
        except (UnsupportedAlgorithm, ImportError):
            continue  # composite module not there yet
        assert key.algorithm == algorithm
        assert key.private_bytes() == base64.b64decode(vector["sk"])
        assert kf.private_key_to_der(key) == sk_pkcs8
        spki = _spki_of_certificate(base64.b64decode(vector["x5c"]))
        public = kf.load_public_der(spki)
        assert public.algorithm == algorithm
        assert public.public_bytes() == base64.b64decode(vector["pk"])
        assert kf.public_key_to_der(public) == spki


# --------------------------------------------------------------------------- OpenSSL (pyca)


@pytest.mark.parametrize("algorithm", PYCA_ALGORITHMS)
def test_byte_identical_to_openssl(algorithm: str) -> None:
    key = _key(algorithm)
    theirs = key.to_pyca()
    assert kf.private_key_to_pem(key) == theirs.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    assert kf.private_key_to_der(key) == theirs.private_bytes(
        ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    their_public = theirs.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    )
    assert kf.public_key_to_pem(key.public_key()) == their_public
    # and each side reads the other's
    loaded = ser.load_pem_private_key(kf.private_key_to_pem(key), None)
    assert loaded.private_bytes(
        ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    ) == kf.private_key_to_der(key)
    ser.load_pem_public_key(kf.public_key_to_pem(key.public_key()))
    hints = _hints(algorithm)
    assert kf.load_public_pem(their_public, **hints).public_bytes() == (
        key.public_key().public_bytes()
    )


@pytest.mark.parametrize("algorithm", ["ML-DSA-65", "ML-KEM-768"])
def test_openssl_reads_our_encrypted_keys(algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kf, "PBKDF2_ITERATIONS", DEFAULT_ITERATIONS)
    key = _key(algorithm)
    encrypted = kf.private_key_to_pem(key, b"s3cret")
    loaded = ser.load_pem_private_key(encrypted, b"s3cret")
    assert loaded.private_bytes(
        ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    ) == kf.private_key_to_der(key)
    # PBES2 / PBKDF2 (600 000 iterations, HMAC-SHA256) / AES-256-CBC
    _, der_bytes = pem_decode(encrypted, ("ENCRYPTED PRIVATE KEY",))
    pbes2 = der.decode(der_bytes).reader().read_sequence()
    assert pbes2.read_oid() == "1.2.840.113549.1.5.13"
    params = pbes2.read_sequence()
    kdf = params.read_sequence()
    assert kdf.read_oid() == "1.2.840.113549.1.5.12"
    pbkdf2 = kdf.read_sequence()
    assert len(pbkdf2.read_octet_string()) == 16
    assert pbkdf2.read_integer() == DEFAULT_ITERATIONS >= 600_000
    assert pbkdf2.read_sequence().read_oid() == "1.2.840.113549.2.9"
    assert params.read_sequence().read_oid() == "2.16.840.1.101.3.4.1.42"


@pytest.mark.parametrize("algorithm", ["ML-DSA-44", "ML-KEM-1024", "ECDSA-P384", "Ed25519"])
def test_we_read_openssl_encrypted_keys(algorithm: str) -> None:
    key = _key(algorithm)
    theirs = key.to_pyca().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")
    )
    assert kf.load_private_pem(theirs, b"pw").private_bytes() == key.private_bytes()
    with pytest.raises(KeyFormatError, match="wrong passphrase"):
        kf.load_private_pem(theirs, b"pW")


@pytest.mark.parametrize("algorithm", ["ML-KEM-512", "SLH-DSA-SHA2-128f", "X25519MLKEM768"])
def test_openssl_does_not_know_these_yet(algorithm: str) -> None:
    """pyca (OpenSSL 4) has no ML-KEM-512, SLH-DSA or X-Wing keys: it refuses, cleanly."""
    pem = kf.private_key_to_pem(_key(algorithm))
    try:
        loaded = ser.load_pem_private_key(pem, None)
    except PycaUnsupportedAlgorithm:
        return
    # If a future pyca reads them, it must agree with us byte for byte.
    assert loaded.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()) == (
        pem
    )


# --------------------------------------------------------------------------- PBES2 variants


def _pbes2(
    plain: bytes,
    passphrase: bytes,
    *,
    kdf: str = "pbkdf2",
    prf: str | None = "1.2.840.113549.2.9",
    cipher: tuple[str, int] = ("2.16.840.1.101.3.4.1.42", 32),
    iterations: int = 1000,
    scrypt: tuple[int, int, int] = (1024, 8, 1),
    ciphertext: bytes | None = None,
) -> bytes:
    """An EncryptedPrivateKeyInfo built by hand from RFC 8018 / RFC 7914."""
    salt, iv = os.urandom(16), os.urandom(16)
    cipher_oid, key_size = cipher
    key = b""
    if kdf == "pbkdf2":
        if ciphertext is None:
            hash_name = {"1.2.840.113549.2.9": "sha256", None: "sha1"}
            hash_name["1.2.840.113549.2.11"] = "sha512"
            key = hashlib.pbkdf2_hmac(hash_name[prf], passphrase, salt, iterations, key_size)
        fields = [der.encode_octet_string(salt), der.encode_integer(iterations)]
        if prf is not None:
            fields.append(der.encode_sequence(der.encode_oid(prf), der.encode_null()))
        kdf_id = der.encode_sequence(
            der.encode_oid("1.2.840.113549.1.5.12"), der.encode_sequence(*fields)
        )
    else:
        n, r, p = scrypt
        if ciphertext is None:
            key = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, dklen=key_size)
        kdf_id = der.encode_sequence(
            der.encode_oid("1.3.6.1.4.1.11591.4.11"),
            der.encode_sequence(
                der.encode_octet_string(salt), *(der.encode_integer(v) for v in (n, r, p))
            ),
        )
    if ciphertext is None:
        padder = padding.PKCS7(128).padder()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padder.update(plain) + padder.finalize())
        ciphertext += encryptor.finalize()
    scheme = der.encode_sequence(der.encode_oid(cipher_oid), der.encode_octet_string(iv))
    algorithm = der.encode_sequence(
        der.encode_oid("1.2.840.113549.1.5.13"), der.encode_sequence(kdf_id, scheme)
    )
    return der.encode_sequence(algorithm, der.encode_octet_string(ciphertext))


def test_pbes2_variants_are_read() -> None:
    key = _key("ML-DSA-44")
    plain = kf.private_key_to_der(key)
    for encrypted in (
        _pbes2(plain, b"pw", kdf="scrypt"),
        _pbes2(plain, b"pw", prf=None),  # hmacWithSHA1, the DEFAULT, omitted
        _pbes2(plain, b"pw", prf="1.2.840.113549.2.11", cipher=("2.16.840.1.101.3.4.1.2", 16)),
        _pbes2(plain, b"pw", cipher=("2.16.840.1.101.3.4.1.22", 24)),
    ):
        assert kf.load_private_der(encrypted, b"pw").private_bytes() == key.private_bytes()


@pytest.mark.parametrize(
    "options",
    [
        {"iterations": 10**9},  # would take minutes
        {"iterations": 0},
        {"kdf": "scrypt", "scrypt": (2**22, 8, 1)},  # 4 GiB
        {"kdf": "scrypt", "scrypt": (1000, 8, 1)},  # N not a power of two
        {"prf": "1.2.840.113549.2.5"},  # MD5: not a supported PRF
        {"cipher": ("1.2.840.113549.3.7", 24)},  # DES-EDE3-CBC
        {"ciphertext": b"\0" * 15},
        {"ciphertext": b""},
    ],
)
def test_unsafe_or_unsupported_encryption_is_refused(options: dict[str, Any]) -> None:
    # The ciphertext is junk: each case must be refused before any key derivation.
    options = {"ciphertext": b"\0" * 48} | options
    with pytest.raises(KeyFormatError) as caught:
        kf.load_private_der(_pbes2(b"x" * 40, b"pw", **options), b"pw")
    assert "wrong passphrase" not in str(caught.value)


def test_wrong_passphrase_message_names_no_key_material() -> None:
    key = _key("ML-KEM-768")
    encrypted = kf.private_key_to_pem(key, b"right")
    with pytest.raises(KeyFormatError) as caught:
        kf.load_private_pem(encrypted, b"wrong")
    message = str(caught.value)
    assert message == "wrong passphrase, or the encrypted key file is corrupted"
    assert key.private_bytes().hex() not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_passphrase_presence_must_match_the_file() -> None:
    key = _key("Ed25519")
    with pytest.raises(KeyFormatError, match="passphrase is needed"):
        kf.load_private_pem(kf.private_key_to_pem(key, b"pw"))
    with pytest.raises(KeyFormatError, match="not encrypted"):
        kf.load_private_pem(kf.private_key_to_pem(key), b"pw")
    with pytest.raises(ValueError):
        kf.private_key_to_pem(key, b"")
    with pytest.raises(TypeError):
        kf.private_key_to_pem(key, "pw")  # type: ignore[arg-type]


def test_each_encryption_is_fresh() -> None:
    key = _key("Ed25519")
    assert kf.private_key_to_der(key, b"pw") != kf.private_key_to_der(key, b"pw")


# --------------------------------------------------------------------------- strict parsing


def _pkcs8(
    oid: str,
    octets: bytes,
    *,
    version: int = 0,
    params: bytes = b"",
    tail: bytes = b"",
) -> bytes:
    return der.encode_sequence(
        der.encode_integer(version),
        der.encode_sequence(der.encode_oid(oid), params),
        der.encode_octet_string(octets),
        tail,
    )


def test_expected_algorithm_and_kind_are_enforced() -> None:
    key_der = kf.private_key_to_der(_key("ML-KEM-768"))
    with pytest.raises(KeyFormatError, match="ML-KEM-768 key, not ML-KEM-1024"):
        kf.load_private_der(key_der, algorithm="ML-KEM-1024")
    with pytest.raises(KeyFormatError):
        kf.load_private_der(key_der, kind=Kind.SIGNATURE)
    assert kf.load_private_der(key_der, algorithm="ml-kem-768").algorithm == "ML-KEM-768"
    public_der = kf.public_key_to_der(_key("ML-DSA-65").public_key())
    with pytest.raises(KeyFormatError):
        kf.load_public_der(public_der, algorithm="ML-DSA-44")


def test_ec_key_files_serve_ecdsa_or_ecdh() -> None:
    key = _key("ECDSA-P256")
    pem = kf.private_key_to_pem(key)
    assert kf.load_private_pem(pem).algorithm == "ECDSA-P256"
    assert kf.load_private_pem(pem, kind=Kind.KEM).algorithm == "P-256"
    assert kf.load_private_pem(pem, algorithm="P-256").algorithm == "P-256"
    with pytest.raises(KeyFormatError):
        kf.load_private_pem(pem, algorithm="P-384")


def test_public_key_under_another_oid_is_rejected() -> None:
    raw = _key("ML-KEM-768").public_key().public_bytes()
    spki = der.encode_sequence(
        der.encode_sequence(der.encode_oid(_expected_oid("ML-KEM-1024"))),
        der.encode_bit_string(raw),
    )
    with pytest.raises(KeyFormatError):
        kf.load_public_der(spki)


_MLKEM768 = "2.16.840.1.101.3.4.4.2"


def _mlkem(octets: bytes, **options: Any) -> bytes:
    return _pkcs8(_MLKEM768, octets, **options)


@pytest.mark.parametrize(
    ("case", "build"),
    [
        ("seed too short", lambda s: _mlkem(b"\x80\x3f" + s[:63])),
        ("seed too long", lambda s: _mlkem(b"\x80\x41" + s + b"\0")),
        ("expandedKey choice", lambda s: _mlkem(b"\x04\x40" + s)),
        (
            "both choice",
            lambda s: _mlkem(
                der.encode_sequence(der.encode_octet_string(s), der.encode_octet_string(s))
            ),
        ),
        ("bytes after the seed", lambda s: _mlkem(b"\x80\x40" + s + b"\0")),
        ("NULL parameters", lambda s: _mlkem(b"\x80\x40" + s, params=der.encode_null())),
        ("version 2", lambda s: _mlkem(b"\x80\x40" + s, version=2)),
        (
            "attributes",
            lambda s: _mlkem(b"\x80\x40" + s, tail=der.encode_implicit(0, b"", constructed=True)),
        ),
        (
            "v1 with public key",
            lambda s: _mlkem(b"\x80\x40" + s, tail=der.encode_implicit(1, b"\0abc")),
        ),
        ("unknown OID", lambda s: _pkcs8("1.2.3.4", b"\x80\x40" + s)),
        ("not a sequence", der.encode_octet_string),
    ],
)
def test_malformed_private_keys_are_rejected(case: str, build: Any) -> None:
    seed = _key("ML-KEM-768").private_bytes()
    with pytest.raises(KeyFormatError):
        kf.load_private_der(build(seed))


def test_trailing_bytes_are_rejected() -> None:
    key = _key("ML-DSA-44")
    with pytest.raises(KeyFormatError):
        kf.load_private_der(kf.private_key_to_der(key) + b"\0")
    with pytest.raises(KeyFormatError):
        kf.load_public_der(kf.public_key_to_der(key.public_key()) + b"\0")
    with pytest.raises(KeyFormatError):
        kf.load_private_pem(kf.private_key_to_pem(key) + b"more text\n")


def test_v2_public_key_is_checked_against_the_private_key() -> None:
    key, other = _key("ML-DSA-44"), _key("ML-DSA-65")
    seed = b"\x80\x20" + key.private_bytes()
    good = der.encode_implicit(1, b"\0" + key.public_key().public_bytes())
    bad = der.encode_implicit(1, b"\0" + other.public_key().public_bytes()[:1312])
    assert (
        kf.load_private_der(
            _pkcs8("2.16.840.1.101.3.4.3.17", seed, version=1, tail=good)
        ).private_bytes()
        == key.private_bytes()
    )
    with pytest.raises(KeyFormatError, match="does not match"):
        kf.load_private_der(_pkcs8("2.16.840.1.101.3.4.3.17", seed, version=1, tail=bad))


def test_ec_private_key_fields_are_checked() -> None:
    key = _key("ECDSA-P256")
    scalar = key.private_bytes()
    curve = der.encode_oid("1.2.840.10045.3.1.7")

    def pkcs8(*fields: bytes) -> bytes:
        return _pkcs8("1.2.840.10045.2.1", der.encode_sequence(*fields), params=curve)

    version, private = der.encode_integer(1), der.encode_octet_string(scalar)
    with_params = pkcs8(version, private, der.encode_explicit(0, curve))
    assert kf.load_private_der(with_params).private_bytes() == scalar
    assert kf.load_private_der(pkcs8(version, private)).private_bytes() == scalar
    other_public = _key("P-256").public_key().public_bytes()
    for bad in (
        pkcs8(version, private, der.encode_explicit(0, der.encode_oid("1.3.132.0.34"))),
        pkcs8(version, private, der.encode_explicit(1, der.encode_bit_string(other_public))),
        pkcs8(der.encode_integer(0), private),
        pkcs8(version, der.encode_octet_string(scalar[1:])),
    ):
        with pytest.raises(KeyFormatError):
            kf.load_private_der(bad)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pem: pem.replace(b"PRIVATE KEY", b"PUBLIC KEY"),
        lambda pem: pem.replace(b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY"),
        lambda pem: pem.replace(b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"),
        lambda pem: pem.replace(b"-----END PRIVATE KEY-----\n", b""),
        lambda pem: pem.replace(b"\n", b"\nProc-Type: 4,ENCRYPTED\n", 1),
        lambda pem: pem[:40] + b"!" + pem[41:],
        lambda pem: pem[:40] + b"\xc3\xa9" + pem[42:],
        lambda pem: b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        lambda pem: b"",
    ],
)
def test_malformed_pem_is_rejected(mangle: Any) -> None:
    with pytest.raises(KeyFormatError):
        kf.load_private_pem(mangle(kf.private_key_to_pem(_key("Ed25519"))))


def test_pem_tolerates_explanatory_text_and_crlf() -> None:
    key = _key("Ed25519")
    pem = b"Ed25519 key for tests\r\n" + kf.private_key_to_pem(key).replace(b"\n", b"\r\n")
    assert kf.load_private_pem(pem).private_bytes() == key.private_bytes()


def test_wrong_object_types_are_refused() -> None:
    key = _key("Ed25519")
    with pytest.raises(TypeError):
        kf.private_key_to_der(key.public_key())
    with pytest.raises(TypeError):
        kf.public_key_to_der(key)


# --------------------------------------------------------------------------- fuzzing

_LOADERS = [
    kf.load_private_der,
    lambda data: kf.load_private_der(data, b"pw"),
    kf.load_public_der,
    kf.load_private_pem,
    kf.load_public_pem,
]


def _only_key_format_errors(call: Any, data: bytes) -> None:
    try:
        call(data)
    except KeyFormatError:
        pass
    except (UnsupportedAlgorithm, ImportError):
        reject()  # a mutated OID named an algorithm whose module is not installed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(range(len(_LOADERS))))
def test_random_bytes_raise_only_key_format_errors(data: bytes, loader: int) -> None:
    _only_key_format_errors(_LOADERS[loader], data)


@cache
def _valid_encodings() -> list[tuple[int, bytes]]:
    mldsa, ec, ed = _key("ML-DSA-44"), _key("ECDSA-P256"), _key("Ed25519")
    return [
        (0, kf.private_key_to_der(mldsa)),
        (0, kf.private_key_to_der(ec)),
        (1, kf.private_key_to_der(ed, b"pw")),
        (2, kf.public_key_to_der(ed.public_key())),
        (2, kf.public_key_to_der(ec.public_key())),
        (3, kf.private_key_to_pem(ec)),
        (4, kf.public_key_to_pem(mldsa.public_key())),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_mutated_key_files_raise_only_key_format_errors(data: st.DataObject) -> None:
    loader, valid = data.draw(st.sampled_from(_valid_encodings()))
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        action = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if action == "flip" and mutated:
            mutated[position] ^= data.draw(st.integers(1, 255))
        elif action == "truncate":
            del mutated[position:]
        elif action == "insert":
            mutated.insert(position, data.draw(st.integers(0, 255)))
        elif mutated:
            del mutated[position]
    _only_key_format_errors(_LOADERS[loader], bytes(mutated))
