"""The strict DER codec: known encodings, round trips, and rejection of non-DER input."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto import der
from qrc.crypto.errors import KeyFormatError

# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
        (600_000, "02030927c0"),
    ],
)
def test_integer_known_encodings(value: int, encoding: str) -> None:
    assert der.encode_integer(value).hex() == encoding
    assert der.decode_integer(der.decode(bytes.fromhex(encoding)).content) == value


@pytest.mark.parametrize(
    ("oid", "encoding"),
    [
        ("1.2.840.113549", "06062a864886f70d"),
        ("2.16.840.1.101.3.4.4.2", "0609608648016503040402"),
        ("1.3.6.1.4.1.62253.25722", "060b2b0601040183e62d81c87a"),  # X-Wing, from its draft
        ("2.999.3", "0603883703"),  # X.690 example: first arc 2, second > 39
        ("0.0", "060100"),
    ],
)
def test_oid_known_encodings(oid: str, encoding: str) -> None:
    assert der.encode_oid(oid).hex() == encoding
    assert der.decode_oid(der.decode(bytes.fromhex(encoding)).content) == oid


def test_lengths_use_the_fewest_octets() -> None:
    assert der.encode_octet_string(b"\0" * 127)[:2].hex() == "047f"
    assert der.encode_octet_string(b"\0" * 128)[:3].hex() == "048180"
    assert der.encode_octet_string(b"\0" * 256)[:4].hex() == "04820100"
    assert der.encode_octet_string(b"\0" * 65536)[:5].hex() == "0483010000"


def test_context_tags() -> None:
    assert der.encode_implicit(0, b"ab").hex() == "80026162"
    assert der.encode_implicit(1, b"", constructed=True).hex() == "a100"
    assert der.encode_explicit(1, der.encode_null()).hex() == "a1020500"
    with pytest.raises(ValueError):
        der.context_tag(31, constructed=False)


@pytest.mark.parametrize("bad", ["1", "3.1", "1.40", "1.2.x", "", "1.-2"])
def test_encode_oid_rejects_invalid_text(bad: str) -> None:
    with pytest.raises(ValueError):
        der.encode_oid(bad)


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("hex_input", "reason"),
    [
        ("", "empty"),
        ("04", "no length"),
        ("0403aabb", "content shorter than length"),
        ("3080020100 0000", "indefinite length"),
        ("048105aabbccddee", "long form for a short length"),
        ("04820005aabbccddee", "leading zero length octet"),
        ("0485ffffffffff", "five length octets"),
        ("0401aa00", "trailing byte"),
        ("1f0100", "high tag number"),
        ("0484ffffffff", "huge length, no content"),
    ],
)
def test_decode_rejects(hex_input: str, reason: str) -> None:
    with pytest.raises(der.DERError):
        der.decode(bytes.fromhex(hex_input.replace(" ", "")))


@pytest.mark.parametrize("content", ["", "0001", "007f", "ff80", "ffff"])
def test_non_minimal_or_empty_integers_are_rejected(content: str) -> None:
    with pytest.raises(der.DERError):
        der.decode_integer(bytes.fromhex(content))


@pytest.mark.parametrize("content", ["", "2a80", "2a8001", "808001", "2a86"])
def test_bad_oids_are_rejected(content: str) -> None:
    with pytest.raises(der.DERError):
        der.decode_oid(bytes.fromhex(content))


def test_bit_string_must_be_whole_octets() -> None:
    assert der.decode_bit_string(b"\x00ab") == b"ab"
    with pytest.raises(der.DERError):
        der.decode_bit_string(b"\x01\xfe")
    with pytest.raises(der.DERError):
        der.decode_bit_string(b"")


def test_reader_checks_tags_and_leftovers() -> None:
    reader = der.decode(der.encode_sequence(der.encode_integer(5), der.encode_null())).reader()
    with pytest.raises(der.DERError):
        reader.read_oid()
    assert reader.read_integer() == 5
    assert reader.optional(der.INTEGER) is None
    with pytest.raises(der.DERError):
        reader.finish()
    reader.read_null()
    reader.finish()
    with pytest.raises(der.DERError):
        der.Reader(b"\x05\x01\x00").read_null()
    with pytest.raises(der.DERError):
        der.decode(der.encode_integer(1)).reader()


def test_der_error_is_a_key_format_error() -> None:
    assert issubclass(der.DERError, KeyFormatError)


# --------------------------------------------------------------------------- properties

_oids = st.builds(
    lambda first, second, rest: ".".join(str(a) for a in [first, second, *rest]),
    st.integers(0, 2),
    st.integers(0, 39),
    st.lists(st.integers(0, 2**130), max_size=8),
) | st.builds(lambda second: f"2.{second}", st.integers(40, 2**70))

_leaves = st.one_of(
    st.tuples(st.just("int"), st.integers(-(2**300), 2**300)),
    st.tuples(st.just("oid"), _oids),
    st.tuples(st.just("octets"), st.binary(max_size=300)),
    st.tuples(st.just("bits"), st.binary(max_size=40)),
    st.tuples(st.just("null")),
    st.tuples(st.just("implicit"), st.integers(0, 30), st.binary(max_size=40)),
)
_trees = st.recursive(
    _leaves,
    lambda children: st.tuples(
        st.sampled_from(["seq", "explicit0", "explicit1"]), st.lists(children, max_size=5)
    ),
    max_leaves=25,
)


def _encode(tree: Any) -> bytes:
    kind = tree[0]
    if kind == "int":
        return der.encode_integer(tree[1])
    if kind == "oid":
        return der.encode_oid(tree[1])
    if kind == "octets":
        return der.encode_octet_string(tree[1])
    if kind == "bits":
        return der.encode_bit_string(tree[1])
    if kind == "null":
        return der.encode_null()
    if kind == "implicit":
        return der.encode_implicit(tree[1], tree[2])
    inner = b"".join(_encode(child) for child in tree[1])
    if kind == "seq":
        return der.encode_tlv(der.SEQUENCE, inner)
    return der.encode_tlv(der.context_tag(int(kind[-1]), constructed=True), inner)


def _walk(element: der.Element) -> Any:
    """Decode an element tree with the public API (the generic reader a parser would use)."""
    if element.constructed:
        reader = element.reader()
        children = []
        while not reader.at_end:
            children.append(_walk(reader.read()))
        kind = {der.SEQUENCE: "seq", 0xA0: "explicit0", 0xA1: "explicit1"}.get(element.tag, "?")
        return (kind, children)
    if element.tag == der.INTEGER:
        return ("int", der.decode_integer(element.content))
    if element.tag == der.OBJECT_IDENTIFIER:
        return ("oid", der.decode_oid(element.content))
    if element.tag == der.OCTET_STRING:
        return ("octets", element.content)
    if element.tag == der.BIT_STRING:
        return ("bits", der.decode_bit_string(element.content))
    if element.tag == der.NULL:
        der.Reader(der.encode_tlv(der.NULL, element.content)).read_null()
        return ("null",)
    return ("implicit", element.tag & 0x1F, element.content)


def _normalise(tree: Any) -> Any:
    if tree[0] in ("seq", "explicit0", "explicit1"):
        return (tree[0], [_normalise(child) for child in tree[1]])
    return tuple(tree)


@settings(max_examples=200, deadline=None)
@given(_trees)
def test_encode_decode_round_trip(tree: Any) -> None:
    encoded = _encode(tree)
    assert _walk(der.decode(encoded)) == _normalise(tree)


_powers_of_two_edges = st.builds(
    lambda bits, sign, delta: sign * 2**bits + delta,
    st.integers(0, 300),
    st.sampled_from([1, -1]),
    st.integers(-1, 1),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**2000), 2**2000) | _powers_of_two_edges)
def test_integer_round_trip(value: int) -> None:
    assert der.decode_integer(der.decode(der.encode_integer(value)).content) == value


@settings(max_examples=200, deadline=None)
@given(_oids)
def test_oid_round_trip(oid: str) -> None:
    assert der.decode_oid(der.decode(der.encode_oid(oid)).content) == oid


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_der_errors(data: bytes) -> None:
    with contextlib.suppress(der.DERError):
        _walk(der.decode(data))


@settings(max_examples=300, deadline=None)
@given(_trees, st.data())
def test_mutated_encodings_raise_only_der_errors(tree: Any, data: st.DataObject) -> None:
    encoded = bytearray(_encode(tree))
    position = data.draw(st.integers(0, len(encoded) - 1))
    action = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if action == "flip":
        encoded[position] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        del encoded[position:]
    else:
        encoded.insert(position, data.draw(st.integers(0, 255)))
    with contextlib.suppress(der.DERError):
        _walk(der.decode(bytes(encoded)))
