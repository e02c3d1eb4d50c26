"""The pyca back end through our interfaces: round trips, sizes, key handling and errors.

Known answers live in ``test_wycheproof_pyca.py``; this file checks the contract every
implementation owes the rest of qrc (``base.py``): registry sizes, ``KeyFormatError`` for bad
key bytes, ``DecryptionError`` for bad ciphertexts, ``InvalidSignature`` for every failed
verification, context handling, and key objects that neither print nor pickle their bytes.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.backends import pyca, pyca_dhkem
from qrc.crypto.base import AEAD, KEM, SignatureScheme
from qrc.crypto.errors import DecryptionError, InvalidSignature, KeyFormatError
from qrc.crypto.registry import all_algorithms, get_info
from qrc.crypto.schemes import get_aead, get_kem, get_scheme, get_signature

KEMS = ["ML-KEM-768", "ML-KEM-1024", "X25519", "P-256", "P-384"]
MLKEMS = ["ML-KEM-768", "ML-KEM-1024"]
DHKEMS = ["X25519", "P-256", "P-384"]
SIGS = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "Ed25519", "ECDSA-P256", "ECDSA-P384"]
MLDSAS = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]
NO_CONTEXT = ["Ed25519", "ECDSA-P256", "ECDSA-P384"]
AEADS = ["AES-256-GCM", "ChaCha20-Poly1305"]
NIST = ["P-256", "P-384", "ECDSA-P256", "ECDSA-P384"]

# Affine generators (SEC 2): the private scalar 1 must give them as the public key.
_GENERATORS = {
    256: (
        "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
        "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
    ),
    384: (
        "AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
        "5502F25DBF55296C3A545E3872760AB7"
        "3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
        "0A60B1CE1D7E819D7A431D7C90EA0E5F"
    ),
}
# X25519 u-coordinates that give an all-zero shared secret: 0, 1, a point of order 8, and
# p (a non-canonical encoding of 0).
_LOW_ORDER_X25519 = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    (2**255 - 19).to_bytes(32, "little"),
]


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --------------------------------------------------------------------------- wiring
SCHEMES = pyca.SCHEMES | pyca_dhkem.SCHEMES  # the pyca provider's two modules


def test_schemes_table_matches_registry() -> None:
    """``SCHEMES`` holds exactly the registry entries whose provider is pyca."""
    pyca_ids = {info.id for info in all_algorithms() if info.provider == "pyca"}
    assert set(SCHEMES) == pyca_ids == set(KEMS + SIGS + AEADS)
    assert not set(pyca.SCHEMES) & set(pyca_dhkem.SCHEMES)
    for algorithm, cls in SCHEMES.items():
        assert cls.algorithm == algorithm
        assert cls.kind is get_info(algorithm).kind


@pytest.mark.parametrize("algorithm", KEMS + SIGS + AEADS)
def test_registry_resolves_to_pyca_class(algorithm: str) -> None:
    scheme = get_scheme(algorithm)
    assert type(scheme) is SCHEMES[algorithm]
    assert get_scheme(algorithm, provider="pyca") is scheme
    assert scheme.info == get_info(algorithm)
    assert repr(scheme) == f"<{type(scheme).__name__} {algorithm}>"
    expected_base = {"kem": KEM, "signature": SignatureScheme, "aead": AEAD}[scheme.kind]
    assert isinstance(scheme, expected_base)


@pytest.mark.parametrize("algorithm", KEMS)
def test_kem_class_sizes_match_registry(algorithm: str) -> None:
    kem = get_kem(algorithm)
    info = kem.info
    assert isinstance(kem, pyca._PycaKem)
    assert (kem.public_size, kem.private_size, kem.ciphertext_size) == (
        info.public_key_size,
        info.private_key_size,
        info.ciphertext_size,
    )


@pytest.mark.parametrize("algorithm", SIGS)
def test_signature_class_sizes_match_registry(algorithm: str) -> None:
    scheme = get_signature(algorithm)
    assert isinstance(scheme, pyca._PycaSignature)
    info = scheme.info
    assert (scheme.public_size, scheme.private_size) == (
        info.public_key_size,
        info.private_key_size,
    )
    assert scheme.supports_context is (algorithm in MLDSAS)


# --------------------------------------------------------------------------- KEMs
@pytest.mark.parametrize("algorithm", KEMS)
def test_kem_round_trip_and_sizes(algorithm: str) -> None:
    kem = get_kem(algorithm)
    info = kem.info
    private = kem.generate()
    public = private.public_key()
    assert private.algorithm == public.algorithm == algorithm
    assert len(public.public_bytes()) == info.public_key_size
    assert len(private.private_bytes()) == info.private_key_size
    ciphertext, secret = public.encapsulate()
    assert len(ciphertext) == info.ciphertext_size
    assert len(secret) == info.shared_secret_size
    assert private.decapsulate(ciphertext) == secret
    ciphertext2, secret2 = public.encapsulate()
    assert ciphertext2 != ciphertext and secret2 != secret  # fresh randomness each time
    # Another key pair gets another secret from the same ciphertext (or refuses it).
    other = kem.generate()
    assert other.public_key().public_bytes() != public.public_bytes()
    assert other.decapsulate(ciphertext) != secret


@pytest.mark.parametrize("algorithm", KEMS)
def test_kem_load_round_trip(algorithm: str) -> None:
    kem = get_kem(algorithm)
    private = kem.generate()
    raw = private.private_bytes()
    loaded = kem.load_private(raw)
    assert loaded.private_bytes() == raw
    assert loaded.public_key().public_bytes() == private.public_key().public_bytes()
    public = kem.load_public(private.public_key().public_bytes())
    assert public.public_bytes() == private.public_key().public_bytes()
    assert public.fingerprint() == private.public_key().fingerprint() == private.fingerprint()
    ciphertext, secret = public.encapsulate()
    assert private.decapsulate(ciphertext) == secret
    assert loaded.decapsulate(ciphertext) == secret
    # bytearray and memoryview inputs are accepted as bytes.
    assert kem.load_private(bytearray(raw)).private_bytes() == raw
    assert loaded.decapsulate(bytearray(ciphertext)) == secret


@pytest.mark.parametrize("algorithm", KEMS)
def test_kem_wrong_length_keys(algorithm: str) -> None:
    kem = get_kem(algorithm)
    info = kem.info
    for size in {0, 1, info.private_key_size - 1, info.private_key_size + 1}:
        with pytest.raises(KeyFormatError):
            kem.load_private(bytes(size))
    for size in {0, 1, info.public_key_size - 1, info.public_key_size + 1}:
        with pytest.raises(KeyFormatError):
            kem.load_public(b"\x04" * size)


@pytest.mark.parametrize("algorithm", MLKEMS)
def test_mlkem_rejects_unreduced_public_key(algorithm: str) -> None:
    """FIPS 203 §7.2 modulus check: a coefficient >= q = 3329 is refused at load time."""
    kem = get_kem(algorithm)
    raw = bytearray(kem.generate().public_key().public_bytes())
    raw[0], raw[1] = 0xFF, raw[1] | 0x0F  # first 12-bit coefficient := 4095
    with pytest.raises(KeyFormatError):
        kem.load_public(bytes(raw))


@pytest.mark.parametrize("algorithm", NIST)
def test_nist_curve_malformed_keys(algorithm: str) -> None:
    scheme: KEM | SignatureScheme = (
        get_kem(algorithm) if algorithm.startswith("P-") else get_signature(algorithm)
    )
    info = scheme.info
    size = info.private_key_size
    for scalar in (bytes(size), b"\xff" * size):  # 0 and a value above the group order
        with pytest.raises(KeyFormatError):
            scheme.load_private(scalar)
    coordinates = info.public_key_size - 1
    for point in (
        b"\x04" + bytes(coordinates),  # (0, 0) is not on the curve
        b"\x04" + b"\x01" * coordinates,  # nor is this
        b"\x05" + bytes.fromhex(_GENERATORS[size * 8]),  # unknown point format
        b"\x00" * info.public_key_size,
    ):
        with pytest.raises(KeyFormatError):
            scheme.load_public(point)


@pytest.mark.parametrize("algorithm", NIST)
def test_nist_curve_scalar_encoding(algorithm: str) -> None:
    """The raw private key is the big-endian scalar: 1 gives the generator."""
    scheme: KEM | SignatureScheme = (
        get_kem(algorithm) if algorithm.startswith("P-") else get_signature(algorithm)
    )
    size = scheme.info.private_key_size
    one = (1).to_bytes(size, "big")
    key = scheme.load_private(one)
    assert key.private_bytes() == one
    assert key.public_key().public_bytes() == b"\x04" + bytes.fromhex(_GENERATORS[size * 8])


@pytest.mark.parametrize("algorithm", KEMS)
def test_kem_wrong_length_ciphertext(algorithm: str) -> None:
    kem = get_kem(algorithm)
    private = kem.generate()
    ciphertext, _ = private.public_key().encapsulate()
    for bad in (b"", ciphertext[:-1], ciphertext + b"\x00", ciphertext * 2):
        with pytest.raises(DecryptionError):
            private.decapsulate(bad)


@pytest.mark.parametrize("algorithm", MLKEMS)
def test_mlkem_implicit_rejection(algorithm: str) -> None:
    """A tampered ciphertext of the right length gives a different secret, not an error."""
    private = get_kem(algorithm).generate()
    ciphertext, secret = private.public_key().encapsulate()
    for index in (0, len(ciphertext) // 2, len(ciphertext) - 1):
        tampered = _flip(ciphertext, index)
        rejected = private.decapsulate(tampered)
        assert len(rejected) == 32 and rejected != secret
        assert private.decapsulate(tampered) == rejected  # deterministic (derived from z)


@pytest.mark.parametrize("algorithm", MLKEMS)
def test_mlkem_private_bytes_is_the_seed(algorithm: str) -> None:
    kem = get_kem(algorithm)
    seed = os.urandom(64)
    assert kem.load_private(seed).private_bytes() == seed


@pytest.mark.parametrize("algorithm", DHKEMS)
def test_dhkem_tampered_ciphertext(algorithm: str) -> None:
    """DHKEM has no implicit rejection: a changed ``enc`` is refused or gives another secret."""
    private = get_kem(algorithm).generate()
    ciphertext, secret = private.public_key().encapsulate()
    tampered = _flip(ciphertext, len(ciphertext) - 1)
    with contextlib.suppress(DecryptionError):
        assert private.decapsulate(tampered) != secret


@pytest.mark.parametrize("algorithm", ["P-256", "P-384"])
def test_dhkem_nist_off_curve_ciphertext(algorithm: str) -> None:
    kem = get_kem(algorithm)
    private = kem.generate()
    size = kem.info.ciphertext_size
    for bad in (b"\x04" + bytes(size - 1), bytes(size), b"\x02" + b"\x01" * (size - 1)):
        with pytest.raises(DecryptionError):
            private.decapsulate(bad)


@pytest.mark.parametrize("point", _LOW_ORDER_X25519, ids=["zero", "one", "order8", "p"])
def test_x25519_low_order_ciphertext(point: bytes) -> None:
    """RFC 9180 §7.1.4: an all-zero DH output aborts Decap."""
    private = get_kem("X25519").generate()
    with pytest.raises(DecryptionError):
        private.decapsulate(point)


@pytest.mark.parametrize("point", _LOW_ORDER_X25519, ids=["zero", "one", "order8", "p"])
def test_x25519_low_order_public_key(point: bytes) -> None:
    """Encap to a low-order key aborts too (RFC 9180 §7.1.4), as a KeyFormatError.

    Either ``load_public`` or ``encapsulate`` may refuse it, but never with a bare library
    exception.
    """
    kem = get_kem("X25519")
    with pytest.raises(KeyFormatError):
        kem.load_public(point).encapsulate()


@pytest.mark.parametrize("algorithm", DHKEMS)
def test_dhkem_enc_is_ephemeral_public_key(algorithm: str) -> None:
    """``enc`` is a loadable public key of the same curve, different every time."""
    kem = get_kem(algorithm)
    public = kem.generate().public_key()
    encs = {public.encapsulate()[0] for _ in range(3)}
    assert len(encs) == 3
    for enc in encs:
        assert kem.load_public(enc).public_bytes() == enc


@pytest.mark.parametrize(("algorithm", "hash_cls"), [("X25519", hashes.SHA256),
                                                     ("P-256", hashes.SHA256),
                                                     ("P-384", hashes.SHA384)])  # fmt: skip
@pytest.mark.parametrize("length", [1, 32, 33, 48, 64, 100, 255 * 32])
def test_dhkem_labeled_hkdf_matches_pyca(
    algorithm: str, hash_cls: type[hashes.HashAlgorithm], length: int
) -> None:
    """Our hand-written LabeledExtract/LabeledExpand are HKDF with the RFC 9180 labels."""
    kem = get_kem(algorithm)
    assert isinstance(kem, pyca_dhkem._DHKEM)
    suite = b"KEM" + kem.kem_id.to_bytes(2, "big")
    ikm, info = os.urandom(40), os.urandom(17)
    length = min(length, 255 * hash_cls.digest_size)
    labeled_ikm = b"HPKE-v1" + suite + b"eae_prk" + ikm
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite + b"shared_secret" + info
    prk = kem._labeled_extract(b"", b"eae_prk", ikm)
    assert len(prk) == hash_cls.digest_size
    ours = kem._labeled_expand(prk, b"shared_secret", info, length)
    assert ours == HKDFExpand(hash_cls(), length, labeled_info).derive(prk)
    assert ours == HKDF(hash_cls(), length, None, labeled_info).derive(labeled_ikm)
    salt = os.urandom(8)
    salted = kem._labeled_extract(salt, b"eae_prk", ikm)
    assert kem._labeled_expand(salted, b"shared_secret", info, length) == HKDF(
        hash_cls(), length, salt, labeled_info
    ).derive(labeled_ikm)


# --------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("algorithm", SIGS)
def test_signature_round_trip_and_sizes(algorithm: str) -> None:
    scheme = get_signature(algorithm)
    info = scheme.info
    key = scheme.generate()
    public = key.public_key()
    assert key.algorithm == public.algorithm == algorithm
    assert len(public.public_bytes()) == info.public_key_size
    assert len(key.private_bytes()) == info.private_key_size
    message = b"attack at dawn"
    signature = key.sign(message)
    if algorithm.startswith("ECDSA"):
        assert len(signature) <= info.signature_size  # DER: a maximum
    else:
        assert len(signature) == info.signature_size
    public.verify(signature, message)
    assert public.is_valid(signature, message)
    assert public.is_valid(bytearray(signature), bytearray(message))
    for bad_message in (b"", message + b"!", message[:-1]):
        with pytest.raises(InvalidSignature):
            public.verify(signature, bad_message)
    with pytest.raises(InvalidSignature):
        scheme.generate().public_key().verify(signature, message)


@pytest.mark.parametrize("algorithm", SIGS)
def test_signature_tampering_is_invalid_signature(algorithm: str) -> None:
    """Every malformed signature gives InvalidSignature, never another exception."""
    key = get_signature(algorithm).generate()
    public = key.public_key()
    signature = key.sign(b"m")
    size = len(signature)
    bad = [b"", b"\x30", signature[:-1], signature + b"\x00", bytes(size), b"\xff" * size]
    bad += [_flip(signature, i) for i in (0, 1, size // 2, size - 1)]
    for candidate in bad:
        with pytest.raises(InvalidSignature):
            public.verify(candidate, b"m")
        assert not public.is_valid(candidate, b"m")


@pytest.mark.parametrize("algorithm", SIGS)
def test_signature_load_round_trip(algorithm: str) -> None:
    scheme = get_signature(algorithm)
    key = scheme.generate()
    raw = key.private_bytes()
    loaded = scheme.load_private(raw)
    assert loaded.private_bytes() == raw
    assert loaded.public_key().public_bytes() == key.public_key().public_bytes()
    public = scheme.load_public(key.public_key().public_bytes())
    assert public.public_bytes() == key.public_key().public_bytes()
    public.verify(loaded.sign(b"m"), b"m")
    key.public_key().verify(loaded.sign(b"m"), b"m")


@pytest.mark.parametrize("algorithm", SIGS)
def test_signature_wrong_length_keys(algorithm: str) -> None:
    scheme = get_signature(algorithm)
    info = scheme.info
    for size in {0, 1, info.private_key_size - 1, info.private_key_size + 1}:
        with pytest.raises(KeyFormatError):
            scheme.load_private(b"\x01" * size)
    for size in {0, 1, info.public_key_size - 1, info.public_key_size + 1}:
        with pytest.raises(KeyFormatError):
            scheme.load_public(b"\x04" * size)


@pytest.mark.parametrize("algorithm", MLDSAS)
def test_mldsa_private_bytes_is_the_seed(algorithm: str) -> None:
    scheme = get_signature(algorithm)
    seed = os.urandom(32)
    key = scheme.load_private(seed)
    assert key.private_bytes() == seed
    # FIPS 204 key generation is deterministic in the seed.
    assert scheme.load_private(seed).public_key().public_bytes() == (
        key.public_key().public_bytes()
    )


@pytest.mark.parametrize("algorithm", MLDSAS)
def test_mldsa_context_binding(algorithm: str) -> None:
    key = get_signature(algorithm).generate()
    public = key.public_key()
    message = b"message"
    bound = key.sign(message, b"A")
    public.verify(bound, message, b"A")
    for other in (b"", b"B", b"A\x00", b"a"):
        with pytest.raises(InvalidSignature):
            public.verify(bound, message, other)
    plain = key.sign(message)
    public.verify(plain, message, b"")
    with pytest.raises(InvalidSignature):
        public.verify(plain, message, b"A")
    longest = b"\x07" * 255
    public.verify(key.sign(message, longest), message, longest)
    with pytest.raises(ValueError):
        key.sign(message, b"\x07" * 256)
    with pytest.raises(InvalidSignature):
        public.verify(key.sign(message, longest), message, longest + b"\x07")


@pytest.mark.parametrize("algorithm", MLDSAS)
def test_mldsa_signing_is_hedged(algorithm: str) -> None:
    key = get_signature(algorithm).generate()
    assert key.sign(b"m") != key.sign(b"m")


@pytest.mark.parametrize("algorithm", NO_CONTEXT)
def test_no_context_algorithms(algorithm: str) -> None:
    """Ed25519 and ECDSA have no context: refused on sign, never valid on verify."""
    key = get_signature(algorithm).generate()
    public = key.public_key()
    with pytest.raises(ValueError):
        key.sign(b"m", b"ctx")
    signature = key.sign(b"m")
    public.verify(signature, b"m", b"")
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"m", b"ctx")
    assert not public.is_valid(signature, b"m", b"\x00")


@settings(max_examples=15, deadline=None)
@given(
    algorithm=st.sampled_from(SIGS),
    message=st.binary(max_size=300),
    context=st.binary(max_size=255),
)
def test_signature_property(algorithm: str, message: bytes, context: bytes) -> None:
    key = get_signature(algorithm).generate()
    if algorithm not in MLDSAS:
        context = b""
    signature = key.sign(message, context)
    assert key.public_key().is_valid(signature, message, context)
    assert not key.public_key().is_valid(signature, message + b"\x00", context)


# --------------------------------------------------------------------------- AEADs
@pytest.mark.parametrize("algorithm", AEADS)
def test_aead_round_trip(algorithm: str) -> None:
    aead = get_aead(algorithm)
    assert (aead.key_size, aead.nonce_size, aead.tag_size) == (32, 12, 16)
    assert aead.info.private_key_size == aead.key_size
    key, nonce = aead.generate_key(), os.urandom(12)
    assert len(key) == 32 and key != aead.generate_key()
    sealed = aead.encrypt(key, nonce, b"plaintext", b"aad")
    assert len(sealed) == len(b"plaintext") + 16
    assert aead.decrypt(key, nonce, sealed, b"aad") == b"plaintext"
    assert aead.decrypt(key, nonce, aead.encrypt(key, nonce, b"", b""), b"") == b""


@pytest.mark.parametrize("algorithm", AEADS)
def test_aead_failures_are_decryption_error(algorithm: str) -> None:
    aead = get_aead(algorithm)
    key, nonce = aead.generate_key(), os.urandom(12)
    sealed = aead.encrypt(key, nonce, b"plaintext", b"aad")
    bad_calls = [
        (aead.generate_key(), nonce, sealed, b"aad"),  # wrong key
        (key, os.urandom(12), sealed, b"aad"),  # wrong nonce
        (key, nonce, sealed, b"aaD"),  # wrong aad
        (key, nonce, sealed, b""),
        (key, nonce[:11], sealed, b"aad"),  # nonce of the wrong length
        (key, nonce + b"\x00", sealed, b"aad"),
        (key, nonce, sealed[:-1], b"aad"),  # truncated
        (key, nonce, sealed + b"\x00", b"aad"),
        (key, nonce, sealed[-16:], b"aad"),  # tag only
    ]
    bad_calls += [(key, nonce, sealed[:n], b"aad") for n in range(16)]  # shorter than a tag
    bad_calls += [(key, nonce, _flip(sealed, i), b"aad") for i in range(len(sealed))]
    for call in bad_calls:
        with pytest.raises(DecryptionError):
            aead.decrypt(*call)


@pytest.mark.parametrize("algorithm", AEADS)
def test_aead_parameter_sizes(algorithm: str) -> None:
    aead = get_aead(algorithm)
    key, nonce = aead.generate_key(), os.urandom(12)
    for bad_key in (b"", key[:16], key[:24], key + b"\x00"):
        with pytest.raises(KeyFormatError):
            aead.encrypt(bad_key, nonce, b"p", b"")
        # decrypt refuses too (the key size is the caller's mistake, not the ciphertext's).
        with pytest.raises((KeyFormatError, DecryptionError)):
            aead.decrypt(bad_key, nonce, bytes(32), b"")
    for bad_nonce in (b"", nonce[:8], nonce + b"\x00", nonce * 2):
        with pytest.raises(ValueError):
            aead.encrypt(key, bad_nonce, b"p", b"")


@settings(max_examples=25, deadline=None)
@given(
    algorithm=st.sampled_from(AEADS),
    plaintext=st.binary(max_size=200),
    aad=st.binary(max_size=50),
    data=st.data(),
)
def test_aead_property(algorithm: str, plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    aead = get_aead(algorithm)
    key, nonce = aead.generate_key(), os.urandom(12)
    sealed = aead.encrypt(key, nonce, plaintext, aad)
    assert aead.decrypt(key, nonce, sealed, aad) == plaintext
    index = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(DecryptionError):
        aead.decrypt(key, nonce, _flip(sealed, index), aad)


# --------------------------------------------------------------------------- key objects
@pytest.mark.parametrize("algorithm", KEMS + SIGS)
def test_key_objects_hide_their_bytes(algorithm: str) -> None:
    if algorithm in KEMS:
        kem_key = get_kem(algorithm).generate()
        private, public = kem_key, kem_key.public_key()
        private_hex = kem_key.private_bytes().hex()
    else:
        sig_key = get_signature(algorithm).generate()
        private, public = sig_key, sig_key.public_key()
        private_hex = sig_key.private_bytes().hex()
    public_hex = public.public_bytes().hex()
    for key in (private, public):
        text = repr(key)
        assert algorithm in text and key.fingerprint() in text
        assert str(key) == text
        # No 8-byte run of the private key (or of the public key) shows.
        for start in range(0, len(private_hex) - 15, 2):
            assert private_hex[start : start + 16] not in text
        for start in range(0, len(public_hex) - 15, 2):
            assert public_hex[start : start + 16] not in text
        assert not hasattr(key, "__dict__")  # __slots__ all the way down
        with pytest.raises(TypeError):
            pickle.dumps(key)
        with pytest.raises(TypeError):
            copy.copy(key)
    assert private.fingerprint() == public.fingerprint()
    assert len(public.fingerprint()) == 16
