"""The data envelope's bytes and text form, property-tested (no key service)."""

from __future__ import annotations

import contextlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from qrc.crypto.errors import DecryptionError
from qrc.data.format import (
    TEXT_PREFIX,
    from_text,
    open_value,
    parse,
    replace_wrapped,
    seal_value,
    split,
    to_text,
)

CIPHER = AESGCM(os.urandom(32))
KEY_ID = "k_" + "ab" * 16


def _seal(plaintext: bytes, context: bytes, wrapped: bytes = b"w" * 90, version: int = 3) -> bytes:
    return seal_value(
        CIPHER, plaintext, context=context, key_id=KEY_ID, key_version=version, wrapped_key=wrapped
    )


@given(st.binary(max_size=2000), st.binary(max_size=300), st.binary(min_size=1, max_size=400))
def test_round_trip_through_bytes_and_text(
    plaintext: bytes, context: bytes, wrapped: bytes
) -> None:
    data = _seal(plaintext, context, wrapped)
    header = parse(from_text(to_text(data)))
    assert (header.key_id, header.key_version, header.wrapped_key) == (KEY_ID, 3, wrapped)
    assert open_value(CIPHER, header, context=context) == plaintext
    assert split(data)[3] == len(data) - len(header.body)


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=50))
def test_other_contexts_fail(plaintext: bytes, other: bytes) -> None:
    data = _seal(plaintext, b"row/1")
    if other != b"row/1":
        with pytest.raises(DecryptionError):
            open_value(CIPHER, parse(data), context=other)


@given(st.text(max_size=300))
def test_any_text_is_a_ciphertext_or_the_one_error(text: str) -> None:
    with contextlib.suppress(DecryptionError):
        parse(from_text(TEXT_PREFIX + text))


def test_rewrap_replaces_only_the_header() -> None:
    data = _seal(b"value", b"ctx")
    moved = replace_wrapped(data, KEY_ID, 4, b"n" * 120)
    assert parse(moved).body == parse(data).body and parse(moved).key_version == 4
    assert open_value(CIPHER, parse(moved), context=b"ctx") == b"value"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"QRD\x02" + b"\x01" * 60,  # another format version
        b"QRD\x01\x02" + b"\x01" * 60,  # another suite
        b"QRD\x01\x01\x00" + b"\x00" * 60,  # empty key ID
        b"QRD\x01\x01\x05k_\xff\xfe\x01" + b"\x00" * 60,  # key ID not ASCII
    ],
)
def test_malformed_headers(bad: bytes) -> None:
    with pytest.raises(DecryptionError):
        parse(bad)


def test_limits_on_writing() -> None:
    with pytest.raises(ValueError):
        _seal(b"x", b"c" * 70_000)
    with pytest.raises(ValueError):
        _seal(b"x", b"", wrapped=b"w" * 16_385)
    with pytest.raises(ValueError):
        _seal(b"x", b"", version=0)
