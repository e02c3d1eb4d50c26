"""Signature bundles: round trip, binding, strict parsing, one opaque error."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.bundle import MAGIC, SignatureBundle, parse_bundle, sign_bundle, verify_bundle
from qrc.crypto.errors import InvalidSignature
from qrc.crypto.schemes import get_signature

SIGNER = get_signature("ML-DSA-44").generate()
OTHER = get_signature("ML-DSA-44").generate()
MESSAGE = b"transfer 100 EUR to account 42"


def test_round_trip_with_context() -> None:
    data = sign_bundle(SIGNER, MESSAGE, b"payments")
    verify_bundle(SIGNER.public_key(), data, MESSAGE, b"payments")
    parsed = parse_bundle(data)
    assert parsed.algorithm == "ML-DSA-44"
    assert data.startswith(MAGIC)


@pytest.mark.parametrize(
    ("key", "message", "context"),
    [
        (OTHER, MESSAGE, b"payments"),
        (SIGNER, MESSAGE + b"0", b"payments"),
        (SIGNER, MESSAGE, b""),
        (SIGNER, MESSAGE, b"payment"),
    ],
)
def test_wrong_key_message_or_context_rejected(key: object, message: bytes, context: bytes) -> None:
    data = sign_bundle(SIGNER, MESSAGE, b"payments")
    with pytest.raises(InvalidSignature):
        verify_bundle(key.public_key(), data, message, context)  # type: ignore[attr-defined]


def test_algorithm_mismatch_rejected() -> None:
    ed = get_signature("Ed25519").generate()
    data = sign_bundle(ed, MESSAGE)
    forged = SignatureBundle("ML-DSA-44", parse_bundle(data).key_hash, parse_bundle(data).signature)
    with pytest.raises(InvalidSignature):
        verify_bundle(ed.public_key(), forged.to_bytes(), MESSAGE)


ED = get_signature("Ed25519").generate()
BUNDLE = sign_bundle(ED, MESSAGE)


def test_unmodified_bundle_verifies() -> None:
    verify_bundle(ED.public_key(), BUNDLE, MESSAGE)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(BUNDLE) * 8 - 1))
def test_every_bit_flip_rejected(bit: int) -> None:
    data = bytearray(BUNDLE)
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidSignature):
        verify_bundle(ED.public_key(), bytes(data), MESSAGE)


@pytest.mark.parametrize("cut", range(len(BUNDLE)))
def test_every_truncation_is_malformed(cut: int) -> None:
    with pytest.raises(InvalidSignature):
        parse_bundle(BUNDLE[:cut])


def test_extension_and_bad_lengths_rejected() -> None:
    with pytest.raises(InvalidSignature):
        parse_bundle(BUNDLE + b"\0")
    huge = BUNDLE[: 6 + 9 + 32] + struct.pack(">I", 1 << 30)
    with pytest.raises(InvalidSignature):
        parse_bundle(huge)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_invalid_signature(data: bytes) -> None:
    with pytest.raises(InvalidSignature):
        parse_bundle(MAGIC + b"\x01" + data)
