"""Envelopes v2 and v1 (docs/formats.md): round trips, strict parsing, binding and opacity.

Every mode (HPKE, KEM-DEM, SYMMETRIC) runs through the same property tests: any plaintext
and context round-trip; any bit flip, truncation or extension, a wrong key, context, key
ID or key version raises the one ``DecryptionError``. Keys are generated once per module.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256, SHA384
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrc.crypto import envelope, envelope_header
from qrc.crypto.base import KemPrivateKey
from qrc.crypto.envelope import (
    EnvelopeHeader,
    Mode,
    open_sealed,
    open_symmetric,
    parse_header,
    seal,
    seal_symmetric,
)
from qrc.crypto.errors import (
    AlgorithmNotAllowed,
    CryptoError,
    DecryptionError,
    KeyFormatError,
    UnsupportedAlgorithm,
)
from qrc.crypto.hpke_suite import Suite
from qrc.crypto.registry import Status, get_info, set_status
from qrc.crypto.schemes import get_kem

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _maybe_key(algorithm: str) -> KemPrivateKey | None:
    """A key pair, or None when the algorithm's backend is not installed yet."""
    try:
        return get_kem(algorithm).generate()
    except (CryptoError, ImportError):
        return None


_KEYS: dict[str, KemPrivateKey | None] = {}


def _key(algorithm: str) -> KemPrivateKey:
    if algorithm not in _KEYS:
        _KEYS[algorithm] = _maybe_key(algorithm)
    key = _KEYS[algorithm]
    if key is None:
        pytest.skip(f"{algorithm} is not available")
    return key


@dataclass
class Case:
    """One envelope mode with its keys: seal and open with the test's arguments."""

    name: str
    mode: Mode
    algorithm: str
    seal: Callable[..., bytes]
    open: Callable[..., bytes]
    wrong_keys: list[Callable[[bytes], bytes]]


def _kem_case(name: str, algorithm: str, mode: Mode | None, other: str) -> Case:
    private = _key(algorithm)
    public = private.public_key()
    same_algorithm = get_kem(algorithm).generate()
    wrong = [
        lambda env: open_sealed(same_algorithm, env),
        lambda env: open_sealed(_key(other), env),
    ]
    return Case(
        name,
        mode if mode is not None else envelope.default_mode(algorithm),
        algorithm,
        lambda pt, **kw: seal(public, pt, mode=mode, **kw),
        lambda env, **kw: open_sealed(private, env, **kw),
        wrong,
    )


def _symmetric_case(name: str, algorithm: str) -> Case:
    key = os.urandom(32)
    return Case(
        name,
        Mode.SYMMETRIC,
        algorithm,
        lambda pt, **kw: seal_symmetric(key, pt, algorithm=algorithm, **kw),
        lambda env, **kw: open_symmetric(key, env, **kw),
        [
            lambda env: open_symmetric(os.urandom(32), env),
            lambda env: open_symmetric(key[:31], env),
            lambda env: open_symmetric(key + b"\0", env),
        ],
    )


CASE_BUILDERS: dict[str, Callable[[], Case]] = {
    "hpke-X25519MLKEM768": lambda: _kem_case(
        "hpke-X25519MLKEM768", "X25519MLKEM768", None, "ML-KEM-768"
    ),
    "hpke-P384MLKEM1024": lambda: _kem_case(
        "hpke-P384MLKEM1024", "P384MLKEM1024", None, "X25519MLKEM768"
    ),
    "hpke-ML-KEM-768": lambda: _kem_case("hpke-ML-KEM-768", "ML-KEM-768", None, "ML-KEM-1024"),
    "hpke-ML-KEM-512": lambda: _kem_case("hpke-ML-KEM-512", "ML-KEM-512", None, "ML-KEM-768"),
    "hpke-ML-KEM-1024": lambda: _kem_case("hpke-ML-KEM-1024", "ML-KEM-1024", None, "ML-KEM-768"),
    "kem-dem-ML-KEM-512": lambda: _kem_case(
        "kem-dem-ML-KEM-512", "ML-KEM-512", Mode.KEM_DEM, "ML-KEM-768"
    ),
    "kem-dem-HQC-256": lambda: _kem_case("kem-dem-HQC-256", "HQC-256", None, "ML-KEM-768"),
    "kem-dem-ML-KEM-768": lambda: _kem_case(
        "kem-dem-ML-KEM-768", "ML-KEM-768", Mode.KEM_DEM, "ML-KEM-1024"
    ),
    "kem-dem-HQC-128": lambda: _kem_case("kem-dem-HQC-128", "HQC-128", None, "ML-KEM-768"),
    "symmetric-AES-256-GCM": lambda: _symmetric_case("symmetric-AES-256-GCM", "AES-256-GCM"),
    "symmetric-ChaCha20-Poly1305": lambda: _symmetric_case(
        "symmetric-ChaCha20-Poly1305", "ChaCha20-Poly1305"
    ),
}


@pytest.fixture(scope="module", params=sorted(CASE_BUILDERS))
def case(request: pytest.FixtureRequest) -> Case:
    return CASE_BUILDERS[request.param]()


@pytest.fixture(scope="module")
def sealed(case: Case) -> tuple[bytes, EnvelopeHeader]:
    """One envelope per case with a non-empty context, key ID and version."""
    env = case.seal(b"attack at dawn" * 5, context=b"tenant=7;row=42", key_id="k", key_version=3)
    return env, parse_header(env)


def _open(case: Case, env: bytes) -> bytes:
    return case.open(env, context=b"tenant=7;row=42")


def _rejected(case: Case, env: bytes) -> None:
    with pytest.raises(DecryptionError):
        _open(case, env)


# --------------------------------------------------------------------------- round trip
@SETTINGS
@given(
    plaintext=st.binary(max_size=2048),
    context=st.binary(max_size=64),
    key_id=st.text(max_size=24),
    key_version=st.integers(0, 2**32 - 1),
)
def test_round_trip(
    case: Case, plaintext: bytes, context: bytes, key_id: str, key_version: int
) -> None:
    env = case.seal(plaintext, context=context, key_id=key_id, key_version=key_version)
    assert case.open(env, context=context) == plaintext
    assert case.open(env, context=context, key_id=key_id, key_version=key_version) == plaintext
    header = parse_header(env)
    assert (header.mode, header.algorithm) == (case.mode, case.algorithm)
    expected_version = 1 if case.mode is Mode.SYMMETRIC else 2
    assert (header.key_id, header.key_version, header.version) == (
        key_id,
        key_version,
        expected_version,
    )


def test_bytes_like_inputs_are_accepted(case: Case) -> None:
    env = case.seal(bytearray(b"data"), context=memoryview(b"ctx"))
    assert case.open(bytearray(env), context=b"ctx") == b"data"
    assert case.open(memoryview(env), context=bytearray(b"ctx")) == b"data"
    assert parse_header(memoryview(env)) == parse_header(env)


def test_two_envelopes_of_one_message_differ(case: Case) -> None:
    assert case.seal(b"same") != case.seal(b"same")


# --------------------------------------------------------------------------- tampering
@SETTINGS
@given(data=st.data())
def test_any_bit_flip_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader], data: st.DataObject
) -> None:
    env, _ = sealed
    bit = data.draw(st.integers(0, len(env) * 8 - 1))
    flipped = bytearray(env)
    flipped[bit // 8] ^= 1 << (bit % 8)
    _rejected(case, bytes(flipped))


def test_every_header_bit_flip_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader]
) -> None:
    env, header = sealed
    for bit in range(header.size * 8):
        flipped = bytearray(env)
        flipped[bit // 8] ^= 1 << (bit % 8)
        _rejected(case, bytes(flipped))


def test_every_header_truncation_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader]
) -> None:
    env, header = sealed
    for end in range(header.size + 1):
        _rejected(case, env[:end])
        with pytest.raises(DecryptionError):
            parse_header(env[:end])


@SETTINGS
@given(data=st.data())
def test_body_truncation_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader], data: st.DataObject
) -> None:
    env, header = sealed
    end = data.draw(st.integers(header.size, len(env) - 1))
    _rejected(case, env[:end])
    # Dropping bytes from the front of the body (or anywhere) is also truncation.
    start = data.draw(st.integers(header.size, len(env) - 1))
    _rejected(case, env[:start] + env[start + 1 :])


@SETTINGS
@given(extra=st.binary(min_size=1, max_size=64))
def test_extension_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader], extra: bytes
) -> None:
    env, _ = sealed
    _rejected(case, env + extra)


def test_last_byte_removed_and_zero_byte_added_are_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader]
) -> None:
    env, _ = sealed
    assert _open(case, env) == b"attack at dawn" * 5
    _rejected(case, env[:-1])
    _rejected(case, env + b"\0")


# --------------------------------------------------------------------------- binding
def test_wrong_key_is_rejected(case: Case, sealed: tuple[bytes, EnvelopeHeader]) -> None:
    env, _ = sealed
    for open_with_wrong_key in case.wrong_keys:
        with pytest.raises(DecryptionError):
            open_with_wrong_key(env)


@SETTINGS
@given(context=st.binary(max_size=32))
def test_wrong_context_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader], context: bytes
) -> None:
    env, _ = sealed
    if context != b"tenant=7;row=42":
        with pytest.raises(DecryptionError):
            case.open(env, context=context)


def test_context_is_required_again(case: Case) -> None:
    env = case.seal(b"x", context=b"row=1")
    with pytest.raises(DecryptionError):
        case.open(env)
    with pytest.raises(DecryptionError):
        case.open(env, context=b"row=10")
    assert case.open(env, context=b"row=1") == b"x"


def test_wrong_expected_key_id_or_version_is_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader]
) -> None:
    env, header = sealed
    assert (header.key_id, header.key_version) == ("k", 3)
    for kwargs in ({"key_id": "K"}, {"key_id": ""}, {"key_version": 2}, {"key_version": 4}):
        with pytest.raises(DecryptionError):
            case.open(env, context=b"tenant=7;row=42", **kwargs)
    assert case.open(env, context=b"tenant=7;row=42", key_id="k", key_version=3)


def test_cross_mode_is_rejected(case: Case, sealed: tuple[bytes, EnvelopeHeader]) -> None:
    """A public-key envelope does not open as a symmetric one, nor the reverse."""
    env, _ = sealed
    with pytest.raises(DecryptionError):
        if case.mode is Mode.SYMMETRIC:
            open_sealed(_key("ML-KEM-768"), env, context=b"tenant=7;row=42")
        else:
            open_symmetric(os.urandom(32), env, context=b"tenant=7;row=42")


def test_rewritten_header_fields_are_rejected(
    case: Case, sealed: tuple[bytes, EnvelopeHeader]
) -> None:
    """A well-formed header with another key ID or version does not open the body."""
    env, header = sealed
    body = env[header.size :]
    for key_id, key_version in (("j", 3), ("k", 2), ("", 3), ("k" * 255, 3)):
        other = _rebuilt_header(header, key_id, key_version)
        forged = other + body
        assert parse_header(forged).key_id == key_id
        _rejected(case, forged)


def _rebuilt_header(header: EnvelopeHeader, key_id: str, key_version: int) -> bytes:
    """A valid header of the same version, mode, suite and algorithm with other fields."""
    if header.version == 1:
        return envelope_header._header(header.mode, header.algorithm, key_id, key_version)
    suite = Suite(header.kem_id, header.kdf_id, header.aead_id)
    return envelope_header._header_v2(header.mode, suite, header.algorithm, key_id, key_version)


# --------------------------------------------------------------------------- arbitrary input
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_garbage_raises_only_decryption_error(data: bytes) -> None:
    key = _key("ML-KEM-768")
    for attempt in (
        lambda: parse_header(data),
        lambda: open_sealed(key, data),
        lambda: open_symmetric(bytes(32), data),
    ):
        with contextlib.suppress(DecryptionError):
            attempt()


@settings(max_examples=200, deadline=None)
@given(
    mode=st.integers(0, 255),
    algorithm=st.sampled_from(
        ["AES-256-GCM", "ML-KEM-768", "ML-KEM-512", "ml-kem-768", "ML-DSA-65", "X", ""]
    ),
    key_id=st.binary(max_size=8),
    tail=st.binary(max_size=40),
)
@pytest.mark.parametrize("version", [1, 2])
def test_near_valid_headers_raise_only_decryption_error(
    version: int, mode: int, algorithm: str, key_id: bytes, tail: bytes
) -> None:
    alg = algorithm.encode()
    # v2: a suite of IDs near the real ones (mode byte reused as a variation source)
    suite = bytes([0, 0x41 + mode % 3, 0, mode % 4, 0, 1 + mode % 3]) if version == 2 else b""
    data = (
        b"QRCE" + bytes([version, mode]) + suite + bytes([len(alg)]) + alg
        + bytes([len(key_id)]) + key_id + tail
    )  # fmt: skip
    try:
        header = parse_header(data)
    except DecryptionError:
        return
    # Whatever parses names a real algorithm of the right kind for its mode.
    assert header.algorithm == get_info(header.algorithm).id
    assert header.mode in (Mode.HPKE, Mode.KEM_DEM, Mode.SYMMETRIC)


# --------------------------------------------------------------------------- format (spec)
def _layout(env: bytes) -> tuple[bytes, int, str, str, int, bytes]:
    """Decode the header exactly as docs/formats.md lays it out, independently of the code.

    Envelope v1 (symmetric) or v2 (public key); the v2 suite is read by :func:`_suite_of`.
    """
    assert env[:4] == b"QRCE" and env[4] in (1, 2)
    at = 6 if env[4] == 1 else 12  # v2: mode, then u16 kem_id, kdf_id, aead_id
    mode, alg_size = env[5], env[at]
    algorithm = env[at + 1 : at + 1 + alg_size].decode("ascii")
    key_id_size = env[at + 1 + alg_size]
    key_id = env[at + 2 + alg_size : at + 2 + alg_size + key_id_size].decode()
    end = at + 6 + alg_size + key_id_size
    version = int.from_bytes(env[end - 4 : end], "big")
    return env[:end], mode, algorithm, key_id, version, env[end:]


def _suite_of(env: bytes) -> tuple[int, int, int]:
    assert env[4] == 2
    return (
        int.from_bytes(env[6:8], "big"),
        int.from_bytes(env[8:10], "big"),
        int.from_bytes(env[10:12], "big"),
    )


def test_header_layout_matches_the_spec() -> None:
    key = bytes(range(32))
    env = seal_symmetric(key, b"hi", context=b"c", key_id="key-\u00e9", key_version=0x01020304)
    header, mode, algorithm, key_id, version, body = _layout(env)
    assert header == (b"QRCE\x01\x03\x0bAES-256-GCM\x06key-\xc3\xa9\x01\x02\x03\x04")
    assert (mode, algorithm, key_id, version) == (3, "AES-256-GCM", "key-\u00e9", 0x01020304)
    assert parse_header(env) == EnvelopeHeader(
        1, Mode.SYMMETRIC, "AES-256-GCM", "key-\u00e9", 0x01020304, len(header), aead_id=2
    )
    assert len(body) == 12 + 2 + 16


def test_v2_header_layout_matches_the_spec() -> None:
    public = _key("ML-KEM-1024").public_key()
    env = seal(public, b"hi", context=b"c", key_id="key-\u00e9", key_version=0x01020304)
    header, mode, algorithm, key_id, version, body = _layout(env)
    assert header == (
        b"QRCE\x02\x01\x00\x42\x00\x02\x00\x02\x0bML-KEM-1024\x06key-\xc3\xa9\x01\x02\x03\x04"
    )
    assert (mode, algorithm, key_id, version) == (1, "ML-KEM-1024", "key-\u00e9", 0x01020304)
    assert parse_header(env) == EnvelopeHeader(
        2, Mode.HPKE, "ML-KEM-1024", "key-\u00e9", 0x01020304, len(header), 0x42, 0x02, 0x02
    )
    assert len(body) == 1568 + 2 + 16


def test_symmetric_body_matches_the_spec() -> None:
    key = os.urandom(32)
    for algorithm, cipher in (("AES-256-GCM", AESGCM), ("ChaCha20-Poly1305", ChaCha20Poly1305)):
        env = seal_symmetric(key, b"plain", algorithm=algorithm, context=b"ctx")
        header, *_, body = _layout(env)
        assert cipher(key).decrypt(body[:12], body[12:], header + b"ctx") == b"plain"


def test_hpke_body_matches_the_spec() -> None:
    private = _key("ML-KEM-768")
    env = seal(private.public_key(), b"plain", context=b"ctx")
    header, mode, *_, body = _layout(env)
    assert mode == 1 and _suite_of(env) == (0x0041, 0x0001, 0x0002)
    suite = hpke.Suite(hpke.KEM.MLKEM768, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    assert len(body) == 1088 + 5 + 16
    pyca_key = private.to_pyca()  # type: ignore[attr-defined]
    assert suite.decrypt(body, pyca_key, info=header + b"ctx") == b"plain"


def test_hybrid_hpke_body_matches_the_spec() -> None:
    private = _key("X25519MLKEM768")
    env = seal(private.public_key(), b"plain", context=b"ctx")
    header, mode, algorithm, *_, body = _layout(env)
    assert (mode, algorithm) == (1, "X25519MLKEM768")
    assert _suite_of(env) == (0x647A, 0x0001, 0x0002)
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    hpke_key = private.to_hpke()  # type: ignore[attr-defined]
    assert suite.decrypt(body, hpke_key, info=header + b"ctx") == b"plain"


@pytest.mark.parametrize(
    ("algorithm", "kem_id", "kdf_id"),
    [
        ("ML-KEM-768", 0x0041, 0x0001),
        ("ML-KEM-512", 0x0040, 0x0001),
        ("ML-KEM-1024", 0x0042, 0x0002),
        ("HQC-128", 0x0000, 0x0001),
        ("HQC-256", 0x0000, 0x0002),
    ],
)
def test_kem_dem_body_matches_the_spec(algorithm: str, kem_id: int, kdf_id: int) -> None:
    """Re-derive the DEM key with pyca's HKDF, as docs/formats.md states it (v2)."""
    private = _key(algorithm)
    public = private.public_key()
    env = seal(public, b"plain", context=b"ctx", key_id="", mode=Mode.KEM_DEM)
    header, mode, *_, body = _layout(env)
    assert mode == 2 and _suite_of(env) == (kem_id, kdf_id, 0x0002)
    ct_size = get_info(algorithm).ciphertext_size
    kem_ct, dem_ct = body[:ct_size], body[ct_size:]
    shared = private.decapsulate(kem_ct)
    name, hash_algorithm = ("sha256", SHA256()) if kdf_id == 1 else ("sha384", SHA384())
    pk_hash = hashlib.new(name, public.public_bytes()).digest()
    th = hashlib.new(name, header + pk_hash + kem_ct + b"ctx").digest()
    okm = HKDF(hash_algorithm, 44, salt=b"", info=b"QRCE-v2 KEM-DEM" + th).derive(shared)
    assert AESGCM(okm[:32]).decrypt(okm[32:], dem_ct, header) == b"plain"


# --------------------------------------------------------------------------- routing, defaults
def test_default_mode_follows_the_registry() -> None:
    assert envelope.default_mode("X25519MLKEM768") is Mode.HPKE
    assert envelope.default_mode("P384MLKEM1024") is Mode.HPKE
    assert envelope.default_mode("ML-KEM-768") is Mode.HPKE
    assert envelope.default_mode("ML-KEM-1024") is Mode.HPKE
    assert envelope.default_mode("ML-KEM-512") is Mode.HPKE  # draft-ietf-hpke-pq 0x0040
    assert envelope.default_mode("HQC-256") is Mode.KEM_DEM
    assert envelope.default_mode("Classic-McEliece-348864") is Mode.KEM_DEM
    assert envelope.default_mode("AES-256-GCM") is Mode.SYMMETRIC


def test_default_key_id_is_the_fingerprint_and_can_be_omitted() -> None:
    private = _key("ML-KEM-768")
    public = private.public_key()
    assert parse_header(seal(public, b"")).key_id == public.fingerprint()
    assert parse_header(seal(public, b"", mode=Mode.KEM_DEM)).key_id == public.fingerprint()
    assert parse_header(seal(public, b"", key_id="")).key_id == ""
    assert parse_header(seal_symmetric(bytes(32), b"")).key_id == ""


def test_classic_mceliece_round_trip_and_tamper() -> None:
    private = _key("Classic-McEliece-348864")
    env = seal(private.public_key(), b"code-based", context=b"c")
    assert parse_header(env).mode is Mode.KEM_DEM
    assert open_sealed(private, env, context=b"c") == b"code-based"
    for index in (0, parse_header(env).size, len(env) - 1):
        flipped = bytearray(env)
        flipped[index] ^= 0x80
        with pytest.raises(DecryptionError):
            open_sealed(private, bytes(flipped), context=b"c")


def test_classical_dhkem_uses_hpke() -> None:
    private = _key("X25519")
    env = seal(private.public_key(), b"classical")
    assert parse_header(env).mode is Mode.HPKE
    assert open_sealed(private, env) == b"classical"


def test_hpke_header_for_a_kem_without_hpke_is_rejected() -> None:
    private = _key("HQC-128")
    env = seal(private.public_key(), b"x", key_id="")
    forged = bytearray(env)
    forged[5] = Mode.HPKE
    with pytest.raises(DecryptionError):
        parse_header(bytes(forged))
    with pytest.raises(UnsupportedAlgorithm):
        seal(private.public_key(), b"x", mode=Mode.HPKE)
    # Envelope v1 never had HPKE for ML-KEM-512: such a v1 header is not read either.
    v1 = envelope_header._header(Mode.HPKE, "ML-KEM-512", "", 1) + bytes(768 + 16)
    with pytest.raises(DecryptionError):
        parse_header(v1)


def test_non_canonical_algorithm_spelling_is_rejected() -> None:
    env = seal_symmetric(bytes(32), b"x")
    forged = env.replace(b"AES-256-GCM", b"aes-256-gcm", 1)
    with pytest.raises(DecryptionError):
        parse_header(forged)


# --------------------------------------------------------------------------- argument checks
def test_seal_argument_limits() -> None:
    public = _key("ML-KEM-768").public_key()
    with pytest.raises(ValueError, match="key ID"):
        seal(public, b"", key_id="x" * 256)
    with pytest.raises(ValueError, match="key ID"):
        seal(public, b"", key_id="\u00e9" * 128)  # 256 bytes of UTF-8
    assert parse_header(seal(public, b"", key_id="x" * 255)).key_id == "x" * 255
    for version in (-1, 2**32):
        with pytest.raises(ValueError, match="version"):
            seal(public, b"", key_version=version)
    with pytest.raises(TypeError):
        seal(public, b"", key_id=7)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        seal(public, b"", mode=Mode.SYMMETRIC)
    with pytest.raises(UnsupportedAlgorithm):
        seal_symmetric(bytes(32), b"", algorithm="ML-KEM-768")
    with pytest.raises(UnsupportedAlgorithm):
        seal_symmetric(bytes(32), b"", algorithm="AES-128-GCM")
    for size in (0, 16, 31, 33):
        with pytest.raises(KeyFormatError):
            seal_symmetric(bytes(size), b"")
    with pytest.raises(UnsupportedAlgorithm):
        open_symmetric(bytes(32), seal_symmetric(bytes(32), b""), algorithm="nope")


def test_plaintext_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "MAX_PLAINTEXT_SIZE", 8)
    with pytest.raises(ValueError, match="at most"):
        seal(_key("ML-KEM-768").public_key(), b"123456789")
    with pytest.raises(ValueError, match="at most"):
        seal_symmetric(bytes(32), b"123456789")
    assert open_symmetric(bytes(32), seal_symmetric(bytes(32), b"12345678")) == b"12345678"


def test_symmetric_expected_algorithm() -> None:
    key = os.urandom(32)
    env = seal_symmetric(key, b"x", algorithm="ChaCha20-Poly1305")
    assert open_symmetric(key, env, algorithm="chacha20-poly1305") == b"x"
    with pytest.raises(DecryptionError):
        open_symmetric(key, env, algorithm="AES-256-GCM")


@pytest.fixture
def disallowed() -> Iterator[Callable[[str], None]]:
    changed: dict[str, Status] = {}

    def disallow(algorithm: str) -> None:
        changed.setdefault(algorithm, get_info(algorithm).status)
        set_status(algorithm, Status.DISALLOWED)

    yield disallow
    for algorithm, status in changed.items():
        set_status(algorithm, status)


def test_disallowed_algorithms_are_refused(disallowed: Callable[[str], None]) -> None:
    private = _key("ML-KEM-768")
    key = os.urandom(32)
    sealed_kem = seal(private.public_key(), b"x")
    sealed_sym = seal_symmetric(key, b"x")
    disallowed("ML-KEM-768")
    disallowed("AES-256-GCM")
    with pytest.raises(AlgorithmNotAllowed):
        seal(private.public_key(), b"x")
    with pytest.raises(AlgorithmNotAllowed):
        open_sealed(private, sealed_kem)
    with pytest.raises(AlgorithmNotAllowed):
        seal_symmetric(key, b"x")
    with pytest.raises(AlgorithmNotAllowed):
        open_symmetric(key, sealed_sym)


def test_decryption_error_says_nothing() -> None:
    with pytest.raises(DecryptionError) as info:
        parse_header(b"QRCE")
    assert str(info.value) == "decryption failed"
    assert info.value.__cause__ is None
