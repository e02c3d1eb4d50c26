"""Wycheproof and RFC 9180 vectors against the pyca back end, through our interfaces.

Every case goes through ``get_kem``/``get_signature``/``get_aead`` and our key classes, so the
wrapping (length checks, error mapping, context handling) is tested, not only pyca.

* ML-DSA-44/65/87 verify: ``valid`` verifies; ``invalid`` is rejected (``KeyFormatError`` at
  ``load_public`` or ``InvalidSignature`` at ``verify``).
* ML-DSA sign from seed: pyca signs hedged only, so instead of comparing signature bytes we
  check the derived public key, that the expected signature verifies under it and that ours
  verifies too. ``Internal`` cases (``mu`` instead of a message, Sign_internal) cannot be
  expressed with our API; their key and signature are checked through the wrapped pyca key's
  ``verify_mu``. ``Randomized`` (a given ``rnd``) is treated like any valid case.
* X25519: raw X25519 through our key classes' pyca objects, plus our DHKEM decapsulation.
* Ed25519 verify, AES-256-GCM and ChaCha20-Poly1305 (other AES-GCM sizes must be refused).
* RFC 9180 DHKEM(X25519) and DHKEM(P-256) from ``cryptography-vectors`` (``HPKE/test-vectors
  .json``), including DeriveKeyPair, which runs our hand-written LabeledExtract/Expand.
  RFC 9180 has no P-384 vectors (its NIST suites are P-256 and P-521).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from qrc.crypto.backends.pyca_dhkem import _DHKEM
from qrc.crypto.errors import (
    DecryptionError,
    InvalidSignature,
    KeyFormatError,
)
from qrc.crypto.schemes import get_aead, get_kem, get_signature
from tests.vectors import load_json

pytestmark = pytest.mark.vectors

Case = tuple[dict[str, Any], dict[str, Any]]  # (test group, test)


def _cases(relative: str) -> list[Any]:
    """One ``pytest.param((group, test))`` per test in a Wycheproof file, id = tcId."""
    data = load_json(relative)
    return [
        pytest.param((group, test), id=f"tc{test['tcId']}")
        for group in data["testGroups"]
        for test in group["tests"]
    ]


def _hex(value: str | None) -> bytes:
    return bytes.fromhex(value or "")


# --------------------------------------------------------------------------- ML-DSA verify
MLDSA = ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87")
_VERIFY = [
    pytest.param(alg, *p.values, id=f"{alg}-{p.id}")
    for alg in MLDSA
    for p in _cases(f"wycheproof/mldsa_{alg[-2:]}_verify_test.json")
]


@pytest.mark.parametrize(("algorithm", "case"), _VERIFY)
def test_mldsa_verify(algorithm: str, case: Case) -> None:
    group, test = case
    scheme = get_signature(algorithm)
    sig, msg, ctx = _hex(test["sig"]), _hex(test["msg"]), _hex(test.get("ctx"))
    if test["result"] == "valid":
        key = scheme.load_public(_hex(group["publicKey"]))
        key.verify(sig, msg, ctx)
        assert key.is_valid(sig, msg, ctx)
        return
    assert test["result"] == "invalid"
    try:
        key = scheme.load_public(_hex(group["publicKey"]))
    except KeyFormatError:
        return  # an unusable public key is a rejection too
    with pytest.raises(InvalidSignature):
        key.verify(sig, msg, ctx)
    assert not key.is_valid(sig, msg, ctx)


# --------------------------------------------------------------------------- ML-DSA sign (seed)
_SIGN = [
    pytest.param(alg, *p.values, id=f"{alg}-{p.id}")
    for alg in MLDSA
    for p in _cases(f"wycheproof/mldsa_{alg[-2:]}_sign_seed_test.json")
]


@pytest.mark.parametrize(("algorithm", "case"), _SIGN)
def test_mldsa_sign_from_seed(algorithm: str, case: Case) -> None:
    group, test = case
    scheme = get_signature(algorithm)
    seed = _hex(group["privateSeed"])
    if "IncorrectPrivateKeyLength" in test["flags"]:
        assert test["result"] == "invalid"
        with pytest.raises(KeyFormatError):
            scheme.load_private(seed)
        return

    key = scheme.load_private(seed)
    public = key.public_key()
    assert public.public_bytes() == _hex(group["publicKey"])
    assert key.private_bytes() == seed
    # The public key also loads from its raw bytes to an equal key.
    assert scheme.load_public(public.public_bytes()).public_bytes() == public.public_bytes()

    if "Internal" in test["flags"]:
        # Sign_internal over a given mu: not expressible with our API (which hashes the
        # message itself); check the expected signature with the wrapped pyca key.
        assert test["result"] == "valid"
        public.to_pyca().verify_mu(_hex(test["sig"]), _hex(test["mu"]))
        return

    msg, ctx = _hex(test["msg"]), _hex(test.get("ctx"))
    if "InvalidContext" in test["flags"]:
        assert test["result"] == "invalid" and len(ctx) > 255
        with pytest.raises(ValueError):
            key.sign(msg, ctx)
        with pytest.raises(InvalidSignature):
            public.verify(key.sign(msg, ctx[:255]), msg, ctx)
        return

    assert test["result"] == "valid", test["flags"]
    # Hedged signing gives other bytes than the vector; both must verify under our key.
    public.verify(_hex(test["sig"]), msg, ctx)
    ours = key.sign(msg, ctx)
    assert len(ours) == scheme.info.signature_size
    public.verify(ours, msg, ctx)
    if ctx:
        with pytest.raises(InvalidSignature):
            public.verify(ours, msg)


# --------------------------------------------------------------------------- X25519
_X25519 = _cases("wycheproof/x25519_test.json")


@pytest.mark.parametrize("case", _X25519)
def test_x25519(case: Case) -> None:
    """Raw X25519 through our key classes, and our DHKEM decapsulation on the same inputs.

    The file has only ``valid`` and ``acceptable`` results (RFC 7748 allows both accepting
    and rejecting twist points, non-canonical encodings and low-order points). Our policy:
    every case is computed as RFC 7748 says, except when the result is the all-zero shared
    secret (``ZeroSharedSecret``: a low-order public key), which RFC 7748 §6.1 lets and
    RFC 9180 §7.1.4 requires an implementation to refuse. There pyca's ``exchange`` raises
    ``ValueError`` and our ``decapsulate`` must raise ``DecryptionError`` (the peer's public
    key is the DHKEM ciphertext ``enc``).
    """
    _group, test = case
    kem = get_kem("X25519")
    private = kem.load_private(_hex(test["private"]))
    peer_raw, shared = _hex(test["public"]), _hex(test["shared"])
    peer = kem.load_public(peer_raw)
    assert peer.public_bytes() == peer_raw

    if shared == bytes(32):
        assert test["result"] == "acceptable" and "ZeroSharedSecret" in test["flags"]
        with pytest.raises(ValueError):
            private.to_pyca().exchange(peer.to_pyca())
        with pytest.raises(DecryptionError):
            private.decapsulate(peer_raw)
        return

    assert "ZeroSharedSecret" not in test["flags"]
    assert test["result"] in ("valid", "acceptable")
    assert private.to_pyca().exchange(peer.to_pyca()) == shared
    # DHKEM Decap: ExtractAndExpand(DH(skR, enc), enc || pkR), with enc as received.
    assert isinstance(kem, _DHKEM)
    expected = kem._extract_and_expand(shared, peer_raw + private.public_key().public_bytes())
    assert private.decapsulate(peer_raw) == expected


# --------------------------------------------------------------------------- Ed25519
_ED25519 = _cases("wycheproof/ed25519_test.json")


@pytest.mark.parametrize("case", _ED25519)
def test_ed25519_verify(case: Case) -> None:
    group, test = case
    scheme = get_signature("Ed25519")
    key = scheme.load_public(_hex(group["publicKey"]["pk"]))
    sig, msg = _hex(test["sig"]), _hex(test["msg"])
    if test["result"] == "valid":
        key.verify(sig, msg)
        assert key.is_valid(sig, msg)
        # Ed25519 takes no context: a valid signature with one is rejected.
        with pytest.raises(InvalidSignature):
            key.verify(sig, msg, b"ctx")
    else:
        assert test["result"] == "invalid"
        with pytest.raises(InvalidSignature):
            key.verify(sig, msg)


# --------------------------------------------------------------------------- AEADs
def _check_aead(algorithm: str, test: dict[str, Any]) -> None:
    aead = get_aead(algorithm)
    key, nonce, aad = _hex(test["key"]), _hex(test["iv"]), _hex(test["aad"])
    msg, sealed = _hex(test["msg"]), _hex(test["ct"]) + _hex(test["tag"])
    if test["result"] == "valid":
        assert aead.decrypt(key, nonce, sealed, aad) == msg
        assert aead.encrypt(key, nonce, msg, aad) == sealed
    else:
        assert test["result"] == "invalid"
        with pytest.raises(DecryptionError):
            aead.decrypt(key, nonce, sealed, aad)


def _aes_in_scope(group: dict[str, Any]) -> bool:
    return (group["keySize"], group["ivSize"], group["tagSize"]) in ((256, 96, 128),)


_AES = _cases("wycheproof/aes_gcm_test.json")


@pytest.mark.parametrize("case", _AES)
def test_aes_gcm(case: Case) -> None:
    """AES-256-GCM with 96-bit nonces; every other key or nonce size must be refused."""
    group, test = case
    if _aes_in_scope(group):
        _check_aead("AES-256-GCM", test)
        return
    aead = get_aead("AES-256-GCM")
    key, nonce, aad = _hex(test["key"]), _hex(test["iv"]), _hex(test["aad"])
    sealed = _hex(test["ct"]) + _hex(test["tag"])
    refused = (KeyFormatError, ValueError, DecryptionError)
    with pytest.raises(refused):
        aead.encrypt(key, nonce, _hex(test["msg"]), aad)
    with pytest.raises(refused):
        aead.decrypt(key, nonce, sealed, aad)


_CHACHA = _cases("wycheproof/chacha20_poly1305_test.json")


@pytest.mark.parametrize("case", _CHACHA)
def test_chacha20_poly1305(case: Case) -> None:
    group, test = case
    assert (group["keySize"], group["tagSize"]) == (256, 128)
    _check_aead("ChaCha20-Poly1305", test)
    if "InvalidNonceSize" in test["flags"]:
        with pytest.raises(ValueError):
            get_aead("ChaCha20-Poly1305").encrypt(
                _hex(test["key"]), _hex(test["iv"]), _hex(test["msg"]), _hex(test["aad"])
            )


# --------------------------------------------------------------------------- RFC 9180 DHKEM
def _hpke_vectors() -> list[dict[str, Any]]:
    try:
        import cryptography_vectors
    except ImportError:
        message = "RFC 9180 vectors need the cryptography-vectors package (dev extras)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)
    with cryptography_vectors.open_vector_file("HPKE/test-vectors.json", "r") as handle:
        vectors: list[dict[str, Any]] = json.load(handle)
    return vectors


_HPKE_KEMS = {0x0020: "X25519", 0x0010: "P-256", 0x0011: "P-384"}
_N = {  # group orders, for DeriveKeyPair's rejection sampling (RFC 9180 §7.1.3)
    "P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P-384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}
_HPKE = [
    pytest.param(
        _HPKE_KEMS[int(v["kem_id"])],
        v,
        id=f"{_HPKE_KEMS[int(v['kem_id'])]}-mode{v['mode']}-kdf{v['kdf_id']}-aead{v['aead_id']}",
    )
    for v in _hpke_vectors()
    if int(v["kem_id"]) in _HPKE_KEMS
]


def _derive_private(kem: _DHKEM, ikm: bytes) -> bytes:
    """RFC 9180 §7.1.3 DeriveKeyPair, built on the back end's LabeledExtract/Expand."""
    prk = kem._labeled_extract(b"", b"dkp_prk", ikm)
    size = kem.info.private_key_size
    if kem.algorithm == "X25519":
        return kem._labeled_expand(prk, b"sk", b"", size)
    for counter in range(256):
        candidate = kem._labeled_expand(prk, b"candidate", bytes([counter]), size)
        value = int.from_bytes(candidate, "big")  # bitmask 0xff for P-256 and P-384
        if 0 < value < _N[kem.algorithm]:
            return candidate
    raise AssertionError("DeriveKeyPair found no scalar")


def test_hpke_vectors_cover_our_dhkems() -> None:
    names = {p.values[0] for p in _HPKE}
    assert names == {"X25519", "P-256"}  # RFC 9180 has no P-384 suite vectors


@pytest.mark.parametrize(("algorithm", "vector"), _HPKE)
def test_rfc9180_dhkem(algorithm: str, vector: dict[str, Any]) -> None:
    kem = get_kem(algorithm)
    assert isinstance(kem, _DHKEM)
    sk_r, pk_r, enc = _hex(vector["skRm"]), _hex(vector["pkRm"]), _hex(vector["enc"])
    assert _derive_private(kem, _hex(vector["ikmR"])) == sk_r
    assert _derive_private(kem, _hex(vector["ikmE"])) == _hex(vector["skEm"])

    recipient = kem.load_private(sk_r)
    assert recipient.public_key().public_bytes() == pk_r
    assert recipient.private_bytes() == sk_r
    assert kem.load_private(_hex(vector["skEm"])).public_key().public_bytes() == enc

    shared = _hex(vector["shared_secret"])
    mode = int(vector["mode"])
    if mode in (0, 1):  # base and psk: plain Encap/Decap
        assert recipient.decapsulate(enc) == shared
    else:  # auth modes: AuthDecap with the sender's static key, from the same pieces
        sender = kem.load_private(_hex(vector["skSm"]))
        pk_s = sender.public_key().public_bytes()
        assert pk_s == _hex(vector["pkSm"])
        dh = kem._exchange(recipient.to_pyca(), kem.load_public(enc).to_pyca())
        dh += kem._exchange(recipient.to_pyca(), sender.public_key().to_pyca())
        assert kem._extract_and_expand(dh, enc + pk_r + pk_s) == shared
