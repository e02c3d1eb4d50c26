"""Tests of qrc.crypto.composite against the LAMPS vectors and by construction."""

from __future__ import annotations

import base64
import hashlib
import pickle
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.composite import _ECDSA, PREFIX, SCHEMES, CompositeSigningKey, _Composite
from qrc.crypto.errors import InvalidSignature, KeyFormatError
from qrc.crypto.registry import get_info
from qrc.crypto.schemes import get_signature
from tests.vectors import load_json

ALGORITHMS = list(SCHEMES)
# the traditional private key encodings of the vectors: raw Ed25519, RFC 5915 ECPrivateKey
EXPECTED_PRIVATE_SIZE = {
    "MLDSA44-Ed25519-SHA512": 32 + 32,
    "MLDSA65-Ed25519-SHA512": 32 + 32,
    "MLDSA65-ECDSA-P256-SHA512": 32 + 51,
    "MLDSA87-ECDSA-P384-SHA512": 32 + 64,
}

_FILE = load_json("composite-sigs/testvectors.json")
MESSAGE = base64.b64decode(_FILE["m"])
CONTEXT = base64.b64decode(_FILE["ctx"])
VECTORS = {t["tcId"].removeprefix("id-"): t for t in _FILE["tests"]}


def _scheme(algorithm: str) -> _Composite:
    scheme = SCHEMES[algorithm]()
    assert isinstance(scheme, _Composite)
    return scheme


@pytest.fixture(scope="module", params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> CompositeSigningKey:
    return _scheme(request.param).generate()


# --------------------------------------------------------------------------- LAMPS vectors
@pytest.mark.parametrize("algorithm", ALGORITHMS)
class TestVectors:
    def vector(self, algorithm: str) -> dict[str, bytes]:
        test = VECTORS[algorithm]
        return {k: base64.b64decode(v) for k, v in test.items() if k != "tcId"}

    def test_signatures_verify(self, algorithm: str) -> None:
        v = self.vector(algorithm)
        public = _scheme(algorithm).load_public(v["pk"])
        public.verify(v["s"], MESSAGE)
        public.verify(v["sWithContext"], MESSAGE, CONTEXT)
        assert not public.is_valid(v["s"], MESSAGE, CONTEXT)
        assert not public.is_valid(v["sWithContext"], MESSAGE)

    def test_private_key_loads_round_trips_and_signs(self, algorithm: str) -> None:
        v = self.vector(algorithm)
        private = _scheme(algorithm).load_private(v["sk"])
        assert private.public_key().public_bytes() == v["pk"]
        assert private.private_bytes() == v["sk"]
        assert len(v["sk"]) == EXPECTED_PRIVATE_SIZE[algorithm]
        public = _scheme(algorithm).load_public(v["pk"])
        public.verify(private.sign(MESSAGE), MESSAGE)
        public.verify(private.sign(MESSAGE, CONTEXT), MESSAGE, CONTEXT)

    def test_pkcs8_wraps_the_raw_key_under_the_registry_oid(self, algorithm: str) -> None:
        v = self.vector(algorithm)
        oid = _der_oid(get_info(algorithm).oid or "")
        # OneAsymmetricKey: version 0, AlgorithmIdentifier { oid }, OCTET STRING { sk }
        assert oid in v["sk_pkcs8"]
        assert v["sk_pkcs8"].endswith(_der_length(len(v["sk"])) + v["sk"])

    def test_certificate_oid_key_and_self_signature(self, algorithm: str) -> None:
        v = self.vector(algorithm)
        cert = x509.load_der_x509_certificate(v["x5c"])
        assert cert.signature_algorithm_oid.dotted_string == get_info(algorithm).oid
        assert v["pk"] in v["x5c"]
        # the certificate is self-signed with the composite (empty context)
        public = _scheme(algorithm).load_public(v["pk"])
        public.verify(cert.signature, cert.tbs_certificate_bytes)


def _der_length(n: int) -> bytes:
    return bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82]) + n.to_bytes(2)


def _der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:  # base-128, high bit set on all but the last byte
            chunk.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(chunk)
    return b"\x06" + bytes([len(body)]) + body


def test_all_four_composites_have_vectors() -> None:
    assert set(ALGORITHMS) <= set(VECTORS)


def test_registry_oids() -> None:
    expected = {
        "MLDSA44-Ed25519-SHA512": "1.3.6.1.5.5.7.6.39",
        "MLDSA65-Ed25519-SHA512": "1.3.6.1.5.5.7.6.48",
        "MLDSA65-ECDSA-P256-SHA512": "1.3.6.1.5.5.7.6.45",
        "MLDSA87-ECDSA-P384-SHA512": "1.3.6.1.5.5.7.6.49",
    }
    assert {a: get_info(a).oid for a in ALGORITHMS} == expected


# --------------------------------------------------------------------------- by construction
def test_scheme_lookup_through_registry() -> None:
    for algorithm in ALGORITHMS:
        assert type(get_signature(algorithm)) is SCHEMES[algorithm]


def test_sizes(key: CompositeSigningKey) -> None:
    info = get_info(key.algorithm)
    assert len(key.public_key().public_bytes()) == info.public_key_size
    assert len(key.private_bytes()) == info.private_key_size == EXPECTED_PRIVATE_SIZE[key.algorithm]
    assert len(key.sign(b"m")) <= info.signature_size


@pytest.mark.parametrize("context", [b"", b"ctx", bytes(255)])
def test_sign_verify(key: CompositeSigningKey, context: bytes) -> None:
    signature = key.sign(b"hello", context)
    key.public_key().verify(signature, b"hello", context)
    reloaded = _scheme(key.algorithm).load_public(key.public_key().public_bytes())
    reloaded.verify(signature, b"hello", context)
    again = _scheme(key.algorithm).load_private(key.private_bytes())
    again.public_key().verify(again.sign(b"hello", context), b"hello", context)


def test_failures_are_invalid_signature(key: CompositeSigningKey) -> None:
    public = key.public_key()
    scheme = _scheme(key.algorithm)
    split = scheme.mldsa_signature_size
    signature = key.sign(b"hello", b"ctx")
    other = key.sign(b"other", b"ctx")
    flip_mldsa = bytes([signature[0] ^ 1]) + signature[1:]
    flip_trad = signature[:-1] + bytes([signature[-1] ^ 1])
    cases: list[tuple[bytes, bytes, bytes]] = [
        (signature, b"hello", b""),  # context dropped
        (signature, b"hello", b"ctX"),  # wrong context
        (signature, b"hellO", b"ctx"),  # wrong message
        (flip_mldsa, b"hello", b"ctx"),
        (flip_trad, b"hello", b"ctx"),
        (signature[:split] + other[split:], b"hello", b"ctx"),  # swapped traditional part
        (other[:split] + signature[split:], b"hello", b"ctx"),  # swapped ML-DSA part
        (signature[:split], b"hello", b"ctx"),  # traditional part stripped
        (signature[:-1], b"hello", b"ctx"),
        (signature + b"\0", b"hello", b"ctx"),
        (b"", b"hello", b"ctx"),
        (signature, b"hello", bytes(256)),  # over-long context
    ]
    for sig, message, context in cases:
        with pytest.raises(InvalidSignature):
            public.verify(sig, message, context)


def test_signature_from_another_composite_key_fails(key: CompositeSigningKey) -> None:
    stranger = _scheme(key.algorithm).generate()
    assert not stranger.public_key().is_valid(key.sign(b"m"), b"m")


def test_components_sign_the_message_representative(key: CompositeSigningKey) -> None:
    scheme = _scheme(key.algorithm)
    signature = key.sign(b"hello", b"ctx")
    representative = PREFIX + scheme.label + b"\x03ctx" + hashlib.sha512(b"hello").digest()
    mldsa_public, _ = key.public_key().components()
    mldsa_sig = signature[: scheme.mldsa_signature_size]
    mldsa_public.verify(mldsa_sig, representative, scheme.label)
    with pytest.raises(Exception):  # the label binds: not a plain ML-DSA signature of M'
        mldsa_public.verify(mldsa_sig, representative)
    mldsa_private, trad_private = key.components()
    assert mldsa_private.public_key().public_bytes_raw() == mldsa_public.public_bytes_raw()
    scheme._trad.verify(
        trad_private.public_key(), signature[scheme.mldsa_signature_size :], representative
    )


def test_context_too_long_to_sign(key: CompositeSigningKey) -> None:
    with pytest.raises(ValueError):
        key.sign(b"m", bytes(256))


def test_malformed_keys_raise_key_format_error(key: CompositeSigningKey) -> None:
    scheme = _scheme(key.algorithm)
    sk, pk = key.private_bytes(), key.public_key().public_bytes()
    bad_private = [sk[:-1], sk + b"\0", b""]
    bad_public = [pk[:-1], pk + b"\0", b""]
    split = scheme.mldsa_public_size
    if "ECDSA" in key.algorithm:
        trad = scheme._trad
        assert isinstance(trad, _ECDSA)
        header, size = trad._header, trad.scalar_size
        zero = sk[:32] + header + bytes(size) + sk[32 + len(header) + size :]
        bad_private += [sk[:32] + b"\x31" + sk[33:], zero]  # not a SEQUENCE; scalar 0
        bad_public += [pk[:split] + b"\x02" + pk[split + 1 :]]  # compressed-point prefix
        bad_public += [pk[:-1] + bytes([pk[-1] ^ 1])]  # off the curve
    for data in bad_private:
        with pytest.raises(KeyFormatError):
            scheme.load_private(data)
    for data in bad_public:
        with pytest.raises(KeyFormatError):
            scheme.load_public(data)


def test_keys_hide_material_and_refuse_pickling(key: CompositeSigningKey) -> None:
    assert key.private_bytes().hex()[:16] not in repr(key)
    assert key.fingerprint() in repr(key.public_key())
    for obj in (key, key.public_key()):
        with pytest.raises(TypeError):
            pickle.dumps(obj)


@settings(max_examples=15, deadline=None)
@given(message=st.binary(max_size=200), context=st.binary(max_size=255))
def test_sign_verify_property(message: bytes, context: bytes) -> None:
    key = _KEY_FOR_PROPERTY
    signature = key.sign(message, context)
    assert key.public_key().is_valid(signature, message, context)
    assert not key.public_key().is_valid(signature, message + b"x", context)


_KEY_FOR_PROPERTY: Any = _scheme("MLDSA65-Ed25519-SHA512").generate()


# --------------------------------------------------------------------------- ECDSA low-S
_ECDSA_COMPOSITES = [a for a in ALGORITHMS if "ECDSA" in a]


def _split_ecdsa(algorithm: str, signature: bytes) -> tuple[int, int, int]:
    """``(r, s, n)`` of the ECDSA part of a composite signature."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    scheme = _scheme(algorithm)
    trad = scheme._trad
    assert isinstance(trad, _ECDSA)
    r, s = decode_dss_signature(signature[scheme.mldsa_signature_size :])
    return r, s, trad.order


@pytest.mark.parametrize("algorithm", _ECDSA_COMPOSITES)
def test_ecdsa_component_is_signed_low_s(algorithm: str) -> None:
    """Signing normalises s to s <= n/2 (64 signatures: 2^-64 to pass by luck before)."""
    signer = _scheme(algorithm).generate()
    for i in range(64):
        signature = signer.sign(b"message %d" % i)
        _r, s, n = _split_ecdsa(algorithm, signature)
        assert 0 < s <= n // 2
        signer.public_key().verify(signature, b"message %d" % i)


@pytest.mark.parametrize("algorithm", _ECDSA_COMPOSITES)
def test_high_s_still_verifies_by_decision(algorithm: str) -> None:
    """Verification accepts (r, n - s): docs/security-model.md says why (interoperability).

    The draft's own vectors carry high-S ECDSA components, which must keep verifying.
    """
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    scheme = _scheme(algorithm)
    signer = scheme.generate()
    signature = signer.sign(b"malleable", b"ctx")
    r, s, n = _split_ecdsa(algorithm, signature)
    mauled = signature[: scheme.mldsa_signature_size] + encode_dss_signature(r, n - s)
    assert mauled != signature
    signer.public_key().verify(mauled, b"malleable", b"ctx")
    vector = VECTORS[algorithm]
    components = [
        _split_ecdsa(algorithm, base64.b64decode(vector[f])) for f in ("s", "sWithContext")
    ]
    high = [s_value for _r, s_value, order in components if s_value > order // 2]
    assert high, "the draft vectors of this composite carry a high-S component"
