"""Wrapped key v1 (docs/formats.md): layout, strict parsing, binding, opacity.

The GCM step is checked against an independent AESGCM call that follows the written spec
(AAD = header || aad), so code and document agree.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.keys.custody.base import UnwrapError
from qrc.keys.custody.wrapped import (
    MAX_PLAINTEXT_SIZE,
    aesgcm_unwrap,
    aesgcm_wrap,
    blob_kek_id,
    build_blob,
    encode_header,
    parse_blob,
    validate_kek_id,
)

KEY = bytes(range(32))
AEAD = AESGCM(KEY)
KEK_ID = "local-0123456789abcdef"

kek_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255
)


def test_layout_matches_the_spec() -> None:
    blob = aesgcm_wrap(AEAD, KEK_ID, b"private key", b"key-1/v2")
    header = b"QRCW\x01" + bytes([len(KEK_ID)]) + KEK_ID.encode()
    assert blob.startswith(header)
    nonce = blob[len(header) : len(header) + 12]
    body = blob[len(header) + 12 :]
    assert len(body) == len(b"private key") + 16
    # Independent decryption with the documented AAD.
    assert AESGCM(KEY).decrypt(nonce, body, header + b"key-1/v2") == b"private key"
    assert encode_header(KEK_ID) == header


def test_round_trip_edge_sizes() -> None:
    for size in (0, 1, 32, 14_000, MAX_PLAINTEXT_SIZE):
        data = os.urandom(size)
        assert aesgcm_unwrap(AEAD, KEK_ID, aesgcm_wrap(AEAD, KEK_ID, data, b""), b"") == data


def test_nonces_are_fresh() -> None:
    blobs = {aesgcm_wrap(AEAD, KEK_ID, b"same", b"same") for _ in range(50)}
    assert len(blobs) == 50


def test_oversized_plaintext_is_refused() -> None:
    with pytest.raises(ValueError):
        aesgcm_wrap(AEAD, KEK_ID, bytes(MAX_PLAINTEXT_SIZE + 1), b"")


@pytest.mark.parametrize(
    "bad", ["", "x" * 256, "with space", "tab\t", "é", "nul\x00", "\x7f"], ids=repr
)
def test_kek_id_rules(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_kek_id(bad)


def test_kek_id_bounds_accepted() -> None:
    for good in ("a", "~" * 255, "pkcs11:ceacf7e00ce19d99:qrc-root-kek:0011223344556677"):
        assert parse_blob(aesgcm_wrap(AEAD, good, b"k", b"")).kek_id == good


def test_binding() -> None:
    blob = aesgcm_wrap(AEAD, KEK_ID, b"secret", b"key-1/v1/ML-KEM-768")
    cases = {
        "wrong aad": (AEAD, KEK_ID, blob, b"key-1/v2/ML-KEM-768"),
        "empty aad": (AEAD, KEK_ID, blob, b""),
        "wrong KEK": (AESGCM(os.urandom(32)), KEK_ID, blob, b"key-1/v1/ML-KEM-768"),
        "other KEK id": (AEAD, "local-ffffffffffffffff", blob, b"key-1/v1/ML-KEM-768"),
        "truncated": (AEAD, KEK_ID, blob[:-1], b"key-1/v1/ML-KEM-768"),
        "extended": (AEAD, KEK_ID, blob + b"\x00", b"key-1/v1/ML-KEM-768"),
        "empty": (AEAD, KEK_ID, b"", b"key-1/v1/ML-KEM-768"),
    }
    for name, (aead, kek_id, data, aad) in cases.items():
        with pytest.raises(UnwrapError) as info:
            aesgcm_unwrap(aead, kek_id, data, aad)
        # One opaque message, whatever failed.
        assert str(info.value) == str(UnwrapError()), name


def test_kek_id_is_authenticated_not_just_compared() -> None:
    """Rewriting the header's KEK ID (same length) fails GCM even for a matching caller."""
    blob = aesgcm_wrap(AEAD, "local-aaaa", b"secret", b"")
    forged = blob.replace(b"local-aaaa", b"local-bbbb", 1)
    with pytest.raises(UnwrapError):
        aesgcm_unwrap(AEAD, "local-bbbb", forged, b"")


def test_parse_rejects_malformed_headers() -> None:
    good = aesgcm_wrap(AEAD, KEK_ID, b"secret", b"")
    bad = [
        b"QRCX" + good[4:],
        b"QRCW\x02" + good[5:],
        good[:5] + b"\x00" + good[6:],  # empty KEK id
        good[:5] + b"\xff" + good[6:],  # id length past the end
        good[:6] + b" " + good[7:],  # non-printable id byte
        good[: 6 + len(KEK_ID) + 12 + 15],  # shorter than a tag
        b"QRCW\x01",
        "not bytes",
    ]
    for data in bad:
        with pytest.raises(UnwrapError):
            parse_blob(data)  # type: ignore[arg-type]


def test_blob_kek_id_names_the_kek() -> None:
    assert blob_kek_id(aesgcm_wrap(AEAD, "local-1234", b"k", b"")) == "local-1234"
    with pytest.raises(UnwrapError):
        blob_kek_id(b"garbage")


def test_build_blob_checks_sizes() -> None:
    header = encode_header(KEK_ID)
    with pytest.raises(ValueError):
        build_blob(header, bytes(11), bytes(16))
    with pytest.raises(ValueError):
        build_blob(header, bytes(12), bytes(15))


@settings(max_examples=200, deadline=None)
@given(
    kek_id=kek_ids,
    nonce=st.binary(min_size=12, max_size=12),
    body=st.binary(min_size=16, max_size=200),
)
def test_build_parse_round_trip(kek_id: str, nonce: bytes, body: bytes) -> None:
    blob = build_blob(encode_header(kek_id), nonce, body)
    parsed = parse_blob(blob)
    assert (parsed.kek_id, parsed.nonce, parsed.ciphertext) == (kek_id, nonce, body)
    assert parsed.header + parsed.nonce + parsed.ciphertext == blob


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), st.binary(max_size=300).map(b"QRCW\x01".__add__)))
def test_parse_arbitrary_bytes_is_strict_and_canonical(data: bytes) -> None:
    """Any input either raises UnwrapError or parses into parts that re-encode to it."""
    try:
        parsed = parse_blob(data)
    except UnwrapError:
        return
    assert build_blob(encode_header(parsed.kek_id), parsed.nonce, parsed.ciphertext) == data


@settings(max_examples=200, deadline=None)
@given(
    plaintext=st.binary(max_size=64),
    aad=st.binary(max_size=32),
    kek_id=kek_ids,
    where=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_bit_flip_fails(
    plaintext: bytes, aad: bytes, kek_id: str, where: int, bit: int
) -> None:
    blob = bytearray(aesgcm_wrap(AEAD, kek_id, plaintext, aad))
    assert aesgcm_unwrap(AEAD, kek_id, bytes(blob), aad) == plaintext
    blob[where % len(blob)] ^= 1 << bit
    with pytest.raises(UnwrapError):
        aesgcm_unwrap(AEAD, kek_id, bytes(blob), aad)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=64), cut=st.integers(min_value=1))
def test_any_truncation_fails(plaintext: bytes, cut: int) -> None:
    blob = aesgcm_wrap(AEAD, KEK_ID, plaintext, b"ctx")
    with pytest.raises(UnwrapError):
        aesgcm_unwrap(AEAD, KEK_ID, blob[: cut % len(blob)], b"ctx")
