"""The pqcrypto back end: round trips, sizes, malformed input, contexts, interop, KATs."""

from __future__ import annotations

import base64
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.backends import pqcrypto as backend
from qrc.crypto.base import KemPrivateKey, SignatureScheme, SigningKey
from qrc.crypto.errors import (
    DecryptionError,
    InvalidSignature,
    KeyFormatError,
    SelfTestFailure,
    UnsupportedAlgorithm,
)
from qrc.crypto.registry import Kind, all_algorithms, get_info
from qrc.crypto.schemes import get_kem, get_signature

KEMS = [alg for alg, cls in backend.SCHEMES.items() if cls.kind is Kind.KEM]
SIGNATURES = [alg for alg, cls in backend.SCHEMES.items() if cls.kind is Kind.SIGNATURE]
SLH_DSA = [alg for alg in SIGNATURES if alg.startswith("SLH-DSA")]
ML_DSA = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]
_SLOW = {a for a in SLH_DSA if a.endswith("s")} | {
    a for a in KEMS if a.startswith("Classic-McEliece") and not a.startswith("Classic-McEliece-3")
}
MESSAGE = b"attack at dawn"
CONTEXT = b"qrc test context"


def _marked(algorithms: list[str]) -> list[Any]:
    """Parameters, with the sets whose key generation or signing is slow marked ``slow``."""
    return [pytest.param(a, marks=pytest.mark.slow) if a in _SLOW else a for a in algorithms]


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


_KEYS: dict[str, Any] = {}


def _key(algorithm: str) -> Any:
    """One generated key per algorithm for the whole module (McEliece keygen is slow)."""
    if algorithm not in _KEYS:
        _KEYS[algorithm] = backend.SCHEMES[algorithm]().generate()  # type: ignore[attr-defined]
    return _KEYS[algorithm]


_SIGNATURES: dict[str, bytes] = {}


def _signature(algorithm: str) -> bytes:
    """One signature of MESSAGE with CONTEXT per algorithm (SLH-DSA "s" signing is slow)."""
    if algorithm not in _SIGNATURES:
        _SIGNATURES[algorithm] = _key(algorithm).sign(MESSAGE, CONTEXT)
    return _SIGNATURES[algorithm]


# --------------------------------------------------------------------------- registry
def test_implements_every_pqcrypto_algorithm_of_the_registry() -> None:
    wanted = {info.id for info in all_algorithms() if info.provider == "pqcrypto"}
    assert wanted <= set(backend.SCHEMES)
    assert len([a for a in KEMS if a.startswith("Classic-McEliece")]) == 10
    assert len(SLH_DSA) == 12
    for algorithm, cls in backend.SCHEMES.items():
        assert get_info(algorithm).id == algorithm == cls.algorithm
        assert get_info(algorithm).kind is cls.kind


@pytest.mark.parametrize("algorithm", _marked(KEMS))
def test_kem_sizes_match_registry(algorithm: str) -> None:
    info = get_info(algorithm)
    key = _key(algorithm)
    ct, ss = key.public_key().encapsulate()
    assert len(key.public_key().public_bytes()) == info.public_key_size
    assert len(key.private_bytes()) == info.private_key_size
    assert (len(ct), len(ss)) == (info.ciphertext_size, info.shared_secret_size)


@pytest.mark.parametrize("algorithm", _marked(SIGNATURES))
def test_signature_sizes_match_registry(algorithm: str) -> None:
    info = get_info(algorithm)
    key = _key(algorithm)
    assert len(key.public_key().public_bytes()) == info.public_key_size
    assert len(_signature(algorithm)) == info.signature_size
    if algorithm in ML_DSA:  # the alternate's raw private key is the expanded sk || pk
        scheme = backend.SCHEMES[algorithm]()
        assert len(key.private_bytes()) == scheme.private_size  # type: ignore[attr-defined]
        assert scheme.private_size > info.private_key_size  # type: ignore[attr-defined]
    else:
        assert len(key.private_bytes()) == info.private_key_size


# --------------------------------------------------------------------------- KEMs
@pytest.mark.parametrize("algorithm", _marked(KEMS))
def test_kem_round_trip_and_reload(algorithm: str) -> None:
    kem = get_kem(algorithm, provider="pqcrypto")
    key: KemPrivateKey = _key(algorithm)
    assert key.algorithm == algorithm
    ct, ss = key.public_key().encapsulate()
    assert key.decapsulate(ct) == ss
    again = kem.load_private(key.private_bytes())
    assert again.public_key().public_bytes() == key.public_key().public_bytes()
    assert again.decapsulate(ct) == ss
    public = kem.load_public(key.public_key().public_bytes())
    ct2, ss2 = public.encapsulate()
    assert key.decapsulate(ct2) == ss2 != ss


@pytest.mark.parametrize("algorithm", _marked(KEMS))
def test_kem_rejects_wrong_lengths(algorithm: str) -> None:
    kem = get_kem(algorithm, provider="pqcrypto")
    key: KemPrivateKey = _key(algorithm)
    raw, pk = key.private_bytes(), key.public_key().public_bytes()
    ct, _ss = key.public_key().encapsulate()
    for bad in (raw[:-1], raw + b"\0", b""):
        with pytest.raises(KeyFormatError):
            kem.load_private(bad)
    for bad in (pk[:-1], pk + b"\0", b""):
        with pytest.raises(KeyFormatError):
            kem.load_public(bad)
    for bad in (ct[:-1], ct + b"\0", b""):
        with pytest.raises(DecryptionError):
            key.decapsulate(bad)


def test_mceliece_refuses_mismatched_halves() -> None:
    kem = get_kem("Classic-McEliece-348864", provider="pqcrypto")
    mine, other = _key("Classic-McEliece-348864"), _key("Classic-McEliece-348864f")
    sk_size = len(mine.private_bytes()) - len(mine.public_key().public_bytes())
    mixed = mine.private_bytes()[:sk_size] + other.public_key().public_bytes()
    with pytest.raises(KeyFormatError):
        kem.load_private(mixed)


def test_hqc_public_key_is_the_start_of_the_secret_key() -> None:
    key = _key("HQC-128")
    assert key.private_bytes().startswith(key.public_key().public_bytes())


def test_wrong_ciphertext_does_not_give_the_secret() -> None:
    for algorithm in ("HQC-128", "Classic-McEliece-348864"):
        key = _key(algorithm)
        ct, ss = key.public_key().encapsulate()
        assert key.decapsulate(_flip(ct, len(ct) // 2)) != ss


# --------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("algorithm", _marked(SIGNATURES))
def test_sign_verify_with_context(algorithm: str) -> None:
    scheme = get_signature(algorithm, provider="pqcrypto")
    assert scheme.supports_context
    key: SigningKey = _key(algorithm)
    public = key.public_key()
    signature = _signature(algorithm)
    public.verify(signature, MESSAGE, CONTEXT)
    assert public.is_valid(signature, MESSAGE, CONTEXT)
    # context binding: the same signature fails without or with another context
    for context in (b"", CONTEXT + b"!", b"x" * 256):
        with pytest.raises(InvalidSignature):
            public.verify(signature, MESSAGE, context)
    with pytest.raises(InvalidSignature):
        public.verify(signature, MESSAGE + b"!", CONTEXT)
    for bad in (_flip(signature), _flip(signature, len(signature) - 1), signature[:-1], b""):
        with pytest.raises(InvalidSignature):
            public.verify(bad, MESSAGE, CONTEXT)
    # a reloaded key signs for the same public key
    again = scheme.load_private(key.private_bytes())
    assert again.public_key().public_bytes() == public.public_bytes()
    reloaded_public = scheme.load_public(public.public_bytes())
    reloaded_public.verify(signature, MESSAGE, CONTEXT)


@pytest.mark.parametrize("algorithm", _marked(SIGNATURES))
def test_signature_rejects_wrong_lengths_and_long_context(algorithm: str) -> None:
    scheme = get_signature(algorithm, provider="pqcrypto")
    key: SigningKey = _key(algorithm)
    raw, pk = key.private_bytes(), key.public_key().public_bytes()
    for bad in (raw[:-1], raw + b"\0", b""):
        with pytest.raises(KeyFormatError):
            scheme.load_private(bad)
    for bad in (pk[:-1], pk + b"\0", b""):
        with pytest.raises(KeyFormatError):
            scheme.load_public(bad)
    with pytest.raises(ValueError):
        key.sign(MESSAGE, b"x" * 256)


@pytest.mark.parametrize("algorithm", ["SLH-DSA-SHA2-128f", "SLH-DSA-SHAKE-128f"])
def test_slh_dsa_empty_context_and_public_half(algorithm: str) -> None:
    key: SigningKey = _key(algorithm)
    signature = key.sign(MESSAGE)
    key.public_key().verify(signature, MESSAGE)
    assert not key.public_key().is_valid(signature, MESSAGE, CONTEXT)
    raw = key.private_bytes()
    assert raw[len(raw) // 2 :] == key.public_key().public_bytes()


@pytest.mark.parametrize("algorithm", ML_DSA)
def test_mldsa_alternate_refuses_mismatched_halves(algorithm: str) -> None:
    scheme = get_signature(algorithm, provider="pqcrypto")
    raw = _key(algorithm).private_bytes()
    pk_size = get_info(algorithm).public_key_size
    other = scheme.generate().public_key().public_bytes()
    with pytest.raises(KeyFormatError):
        scheme.load_private(raw[:-pk_size] + other)


def test_keys_are_not_picklable_and_repr_hides_them() -> None:
    for algorithm in ("HQC-128", "SLH-DSA-SHA2-128f", "ML-DSA-44"):
        key = _key(algorithm)
        with pytest.raises(TypeError):
            pickle.dumps(key)
        assert key.private_bytes().hex()[:16] not in repr(key)
        assert algorithm in repr(key)


# --------------------------------------------------------------------------- interop with pyca
@pytest.mark.parametrize("algorithm", ML_DSA)
@pytest.mark.parametrize("context", [b"", CONTEXT])
def test_mldsa_interop_with_pyca(algorithm: str, context: bytes) -> None:
    ours: SignatureScheme = get_signature(algorithm, provider="pqcrypto")
    pyca: SignatureScheme = get_signature(algorithm, provider="pyca")
    for signer_scheme, verifier_scheme in ((ours, pyca), (pyca, ours)):
        signer = signer_scheme.generate()
        signature = signer.sign(MESSAGE, context)
        verifier = verifier_scheme.load_public(signer.public_key().public_bytes())
        verifier.verify(signature, MESSAGE, context)
        assert not verifier.is_valid(signature, MESSAGE, context + b"!")
        assert not verifier.is_valid(_flip(signature), MESSAGE, context)


@settings(max_examples=20, deadline=None)
@given(message=st.binary(max_size=200), context=st.binary(max_size=255))
def test_mldsa_44_pqcrypto_signatures_verify_under_pyca(message: bytes, context: bytes) -> None:
    signer = _key("ML-DSA-44")
    verifier = get_signature("ML-DSA-44", provider="pyca").load_public(
        signer.public_key().public_bytes()
    )
    verifier.verify(signer.sign(message, context), message, context)


# --------------------------------------------------------------------------- known answers
def test_known_answers_cover_hqc_mceliece_and_slh_dsa() -> None:
    stored = set(backend._kat_data())
    expected = {a for a in backend.SCHEMES if a.startswith(("HQC", "Classic-McEliece", "SLH"))}
    assert stored == expected
    for algorithm in sorted(stored):
        backend.known_answer_test(algorithm)


def test_known_answer_test_detects_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dict(backend._kat_data())
    kem_entry = dict(data["HQC-128"])
    kem_entry["ss_sha256"] = "00" * 32
    sig_entry = dict(data["SLH-DSA-SHA2-128s"])
    sig = base64.b64decode(sig_entry["sig"])
    sig_entry["sig"] = base64.b64encode(_flip(sig, 100)).decode()
    broken_sk = dict(data["Classic-McEliece-348864"])
    broken_sk["ct"] = base64.b64encode(b"short").decode()
    data.update({"HQC-128": kem_entry, "SLH-DSA-SHA2-128s": sig_entry})
    data["Classic-McEliece-348864"] = broken_sk  # its "f" twin shares this record
    monkeypatch.setattr(backend, "_kat_data", lambda: data)
    for algorithm in ("HQC-128", "SLH-DSA-SHA2-128s", "Classic-McEliece-348864f"):
        with pytest.raises(SelfTestFailure):
            backend.known_answer_test(algorithm)


def test_known_answer_test_of_an_unstored_algorithm() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        backend.known_answer_test("ML-DSA-65")
