"""Property tests of the age parsers: round trips, and nothing but the opaque error on junk."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.errors import DecryptionError
from qrc.data.age import X25519Identity, bech32, decrypt_bytes, encrypt_bytes
from qrc.data.age.header import Stanza, encode_header, read_header

_VCHAR = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
STANZAS = st.lists(
    st.builds(
        Stanza,
        type=_VCHAR,
        args=st.lists(_VCHAR, max_size=4).map(tuple),
        body=st.binary(max_size=300),
    ),
    min_size=1,
    max_size=5,
)
IDENTITY = X25519Identity.generate()


@given(stanzas=STANZAS, file_key=st.binary(min_size=16, max_size=16))
def test_header_round_trip(stanzas: list[Stanza], file_key: bytes) -> None:
    encoded = encode_header(stanzas, file_key)
    header = read_header(io.BufferedReader(io.BytesIO(encoded + b"payload")))
    assert list(header.stanzas) == stanzas
    header.verify_mac(file_key)
    assert encoded.startswith(header.covered)


@settings(max_examples=300)
@given(stanzas=STANZAS, position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_altered_headers_fail_opaquely(stanzas: list[Stanza], position: int, byte: int) -> None:
    encoded = bytearray(encode_header(stanzas, bytes(16)))
    position %= len(encoded)
    encoded[position] = byte
    try:
        decrypt_bytes(bytes(encoded), [IDENTITY])
    except DecryptionError as exc:
        assert str(exc) == "decryption failed"
    else:  # pragma: no cover - the payload is missing: decryption cannot succeed
        raise AssertionError("an altered header decrypted")


@given(data=st.binary(max_size=2000))
def test_any_input_fails_opaquely(data: bytes) -> None:
    try:
        decrypt_bytes(data, [IDENTITY])
    except DecryptionError as exc:
        assert str(exc) == "decryption failed"


@given(data=st.binary(max_size=5000), armor=st.booleans())
def test_payload_round_trip(data: bytes, armor: bool) -> None:
    sealed = encrypt_bytes(data, [IDENTITY.recipient()], armor=armor)
    assert decrypt_bytes(sealed, [IDENTITY]) == data


@given(hrp=st.sampled_from(["age", "age1pq", "age-secret-key-", "age1qrc"]), data=st.binary())
def test_bech32_round_trip(hrp: str, data: bytes) -> None:
    text = bech32.encode(hrp, data)
    assert bech32.decode(text) == (hrp, data)
    assert bech32.decode(text.upper()) == (hrp, data)
