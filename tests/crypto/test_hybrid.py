"""Tests of qrc.crypto.hybrid: X-Wing and MLKEM1024-P384, vectors and pyca HPKE interop."""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.primitives import hpke
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.errors import DecryptionError, KeyFormatError
from qrc.crypto.hybrid import (
    P384MLKEM1024,
    SCHEMES,
    HybridPrivateKey,
    XWing,
    _derandomized_encapsulate_for_tests,
)
from qrc.crypto.registry import get_info
from qrc.crypto.schemes import get_kem
from tests.crypto.mlkem_kat import encaps_internal
from tests.vectors import load_json

ALGORITHMS = ["X25519MLKEM768", "P384MLKEM1024"]
SUITE_AEAD = (hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@pytest.fixture(scope="module", params=ALGORITHMS)
def keypair(request: pytest.FixtureRequest) -> HybridPrivateKey:
    private = SCHEMES[request.param]().generate()
    assert isinstance(private, HybridPrivateKey)
    return private


def test_schemes_registered_under_qrc_provider() -> None:
    assert isinstance(get_kem("X25519MLKEM768"), XWing)
    assert isinstance(get_kem("P384MLKEM1024"), P384MLKEM1024)


def test_sizes_match_registry(keypair: HybridPrivateKey) -> None:
    info = get_info(keypair.algorithm)
    ciphertext, shared = keypair.public_key().encapsulate()
    assert len(keypair.private_bytes()) == info.private_key_size
    assert len(keypair.public_key().public_bytes()) == info.public_key_size
    assert len(ciphertext) == info.ciphertext_size
    assert len(shared) == info.shared_secret_size


def test_encapsulate_decapsulate_round_trip(keypair: HybridPrivateKey) -> None:
    ciphertext, shared = keypair.public_key().encapsulate()
    assert keypair.decapsulate(ciphertext) == shared
    other_ct, other_ss = keypair.public_key().encapsulate()
    assert other_ct != ciphertext and other_ss != shared


def test_keys_reload_from_their_encodings(keypair: HybridPrivateKey) -> None:
    scheme = SCHEMES[keypair.algorithm]()
    again = scheme.load_private(keypair.private_bytes())
    assert again.public_key().public_bytes() == keypair.public_key().public_bytes()
    public = scheme.load_public(keypair.public_key().public_bytes())
    ciphertext, shared = public.encapsulate()
    assert again.decapsulate(ciphertext) == shared


def test_tampered_mlkem_ciphertext_rejects_implicitly(keypair: HybridPrivateKey) -> None:
    ciphertext, shared = keypair.public_key().encapsulate()
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert keypair.decapsulate(tampered) != shared  # ML-KEM implicit rejection, no error


def test_wrong_length_ciphertext_raises(keypair: HybridPrivateKey) -> None:
    ciphertext, _ = keypair.public_key().encapsulate()
    for bad in (ciphertext[:-1], ciphertext + b"\0", b""):
        with pytest.raises(DecryptionError):
            keypair.decapsulate(bad)


def test_degenerate_classical_ciphertext_raises(keypair: HybridPrivateKey) -> None:
    ciphertext, _ = keypair.public_key().encapsulate()
    scheme = SCHEMES[keypair.algorithm]()
    assert isinstance(scheme, XWing | P384MLKEM1024)
    # all-zero: a low-order X25519 point, or not a valid P-384 encoding at all
    bad = ciphertext[: scheme._mlkem_ct_size] + bytes(scheme._trad_size)
    with pytest.raises(DecryptionError):
        keypair.decapsulate(bad)


def test_wrong_length_keys_raise(keypair: HybridPrivateKey) -> None:
    scheme = SCHEMES[keypair.algorithm]()
    public = keypair.public_key().public_bytes()
    for bad in (keypair.private_bytes()[:-1], keypair.private_bytes() + b"\0", b""):
        with pytest.raises(KeyFormatError):
            scheme.load_private(bad)
    for bad in (public[:-1], public + b"\0", b""):
        with pytest.raises(KeyFormatError):
            scheme.load_public(bad)


def test_degenerate_classical_public_key_raises(keypair: HybridPrivateKey) -> None:
    scheme = SCHEMES[keypair.algorithm]()
    assert isinstance(scheme, XWing | P384MLKEM1024)
    public = keypair.public_key().public_bytes()
    pk_m, pk_t = public[: scheme._mlkem_pk_size], public[scheme._mlkem_pk_size :]
    with pytest.raises(KeyFormatError):
        scheme.load_public(pk_m + bytes(len(pk_t)))
    if isinstance(scheme, P384MLKEM1024):
        with pytest.raises(KeyFormatError):  # a point that is not on the curve
            scheme.load_public(pk_m + pk_t[:-1] + bytes([pk_t[-1] ^ 1]))
        with pytest.raises(KeyFormatError):  # a compressed-point prefix
            scheme.load_public(pk_m + b"\x02" + pk_t[1:])


def test_p384_seed_out_of_range_is_a_key_format_error() -> None:
    scheme = P384MLKEM1024()
    with pytest.raises(ValueError):
        scheme._trad_from_seed(b"\xff" * 48)
    with pytest.raises(ValueError):
        scheme._trad_from_seed(bytes(48))


def test_key_objects_hide_material_and_refuse_pickling(keypair: HybridPrivateKey) -> None:
    assert keypair.private_bytes().hex() not in repr(keypair)
    assert keypair.fingerprint() in repr(keypair)
    with pytest.raises(TypeError):
        pickle.dumps(keypair)
    with pytest.raises(TypeError):
        pickle.dumps(keypair.public_key())


@settings(max_examples=10, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), algorithm=st.sampled_from(ALGORITHMS))
def test_any_seed_is_a_working_key(seed: bytes, algorithm: str) -> None:
    private = SCHEMES[algorithm]().load_private(seed)
    assert private.private_bytes() == seed
    ciphertext, shared = private.public_key().encapsulate()
    assert private.decapsulate(ciphertext) == shared


# --------------------------------------------------------------------------- pyca HPKE
@pytest.mark.parametrize("info", [b"", b"qrc test info"])
def test_pyca_hpke_seal_to_our_public_key_opens_with_our_private_key(
    keypair: HybridPrivateKey, info: bytes
) -> None:
    suite = hpke.Suite(keypair.hpke_kem, *SUITE_AEAD)
    public = SCHEMES[keypair.algorithm]().load_public(keypair.public_key().public_bytes())
    sealed = suite.encrypt(b"attack at dawn", public.to_hpke(), info=info)
    assert public.hpke_kem is keypair.hpke_kem
    assert len(sealed) == keypair.hpke_kem.enc_length() + len(b"attack at dawn") + 16
    reloaded = SCHEMES[keypair.algorithm]().load_private(keypair.private_bytes())
    assert suite.decrypt(sealed, reloaded.to_hpke(), info=info) == b"attack at dawn"


def test_pyca_hpke_rejects_with_another_key(keypair: HybridPrivateKey) -> None:
    suite = hpke.Suite(keypair.hpke_kem, *SUITE_AEAD)
    sealed = suite.encrypt(b"x", keypair.public_key().to_hpke())
    other = SCHEMES[keypair.algorithm]().generate()
    assert isinstance(other, HybridPrivateKey)
    with pytest.raises(Exception):  # pyca: InvalidTag or ValueError
        suite.decrypt(sealed, other.to_hpke())


# --------------------------------------------------------------------------- X-Wing vectors
XWING_VECTORS = load_json("xwing/test-vectors.json")


@pytest.mark.parametrize("vector", XWING_VECTORS, ids=lambda v: v["pk"][:8])
def test_xwing_vector(vector: dict[str, str]) -> None:
    sk, pk, ct, ss = (bytes.fromhex(vector[k]) for k in ("sk", "pk", "ct", "ss"))
    assert vector["seed"] == vector["sk"]  # X-Wing's private key is its seed
    private = XWing().load_private(sk)
    assert private.public_key().public_bytes() == pk
    assert private.decapsulate(ct) == ss

    # EncapsDerand(pk, eseed): pyca has no FIPS 203 Encaps_internal, so the test supplies
    # pycryptodome's (tests/crypto/mlkem_kat.py, checked against Wycheproof).
    public = XWing().load_public(pk)
    eseed = bytes.fromhex(vector["eseed"])
    assert _derandomized_encapsulate_for_tests(public, eseed, encaps_internal) == (ct, ss)
