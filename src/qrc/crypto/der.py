"""A small, strict DER codec: only what key files need.

Universal types SEQUENCE, INTEGER, OCTET STRING, BIT STRING, OBJECT IDENTIFIER and NULL,
and context-specific tags ``[n]`` (explicit or implicit). Decoding is strict (X.690 §10):
definite lengths only, in the fewest octets; minimal INTEGER and OID encodings; BIT STRING
padding bits zero; no trailing bytes. Every length is checked against what is left before
anything is sliced, and nothing recurses, so hostile input costs at most one pass.

Every decoding failure raises :class:`DERError`, a :class:`~qrc.crypto.errors.KeyFormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrc.crypto.errors import KeyFormatError

__all__ = [
    "BIT_STRING",
    "INTEGER",
    "NULL",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "SEQUENCE",
    "DERError",
    "Element",
    "Reader",
    "context_tag",
    "decode",
    "decode_bit_string",
    "decode_integer",
    "decode_oid",
    "encode_bit_string",
    "encode_explicit",
    "encode_implicit",
    "encode_integer",
    "encode_null",
    "encode_octet_string",
    "encode_oid",
    "encode_sequence",
    "encode_tlv",
]

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30

_CONTEXT = 0x80
_CONSTRUCTED = 0x20
# Four length octets allow 4 GiB, far beyond any key (a McEliece public key is ~1.3 MB).
_MAX_LENGTH_OCTETS = 4


class DERError(KeyFormatError):
    """The bytes are not valid DER of the expected shape."""


def context_tag(number: int, *, constructed: bool) -> int:
    """The identifier octet of context-specific tag ``[number]`` (0-30)."""
    if not 0 <= number <= 30:
        raise ValueError("context tag numbers are 0-30 (low-tag-number form)")
    return _CONTEXT | (_CONSTRUCTED if constructed else 0) | number


# --------------------------------------------------------------------------- encoding
def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(octets) > _MAX_LENGTH_OCTETS:
        raise ValueError("DER content too long")
    return bytes([0x80 | len(octets)]) + octets


def encode_tlv(tag: int, content: bytes) -> bytes:
    """One element: identifier octet, minimal definite length, content."""
    if not 0 <= tag <= 0xFF or tag & 0x1F == 0x1F:
        raise ValueError("only single-octet (low-tag-number) identifiers are supported")
    return bytes([tag]) + _encode_length(len(content)) + bytes(content)


def encode_integer(value: int) -> bytes:
    """INTEGER in the minimal two's-complement form."""
    magnitude = value if value >= 0 else ~value
    length = magnitude.bit_length() // 8 + 1  # room for the sign bit
    return encode_tlv(INTEGER, value.to_bytes(length, "big", signed=True))


def encode_octet_string(data: bytes) -> bytes:
    """OCTET STRING."""
    return encode_tlv(OCTET_STRING, data)


def encode_bit_string(data: bytes) -> bytes:
    """BIT STRING of whole octets (no unused bits), as keys always are."""
    return encode_tlv(BIT_STRING, b"\x00" + bytes(data))


def encode_null() -> bytes:
    """NULL."""
    return b"\x05\x00"


def encode_oid(oid: str) -> bytes:
    """OBJECT IDENTIFIER from dotted text (``"2.16.840.1.101.3.4.4.2"``)."""
    try:
        arcs = [int(part) for part in oid.split(".")]
    except ValueError:
        raise ValueError(f"not a dotted OID: {oid!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or any(arc < 0 for arc in arcs):
        raise ValueError(f"not a valid OID: {oid!r}")
    if arcs[0] < 2 and arcs[1] > 39:
        raise ValueError(f"not a valid OID: {oid!r}")
    content = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        content += bytes(reversed(chunk))
    return encode_tlv(OBJECT_IDENTIFIER, bytes(content))


def encode_sequence(*elements: bytes) -> bytes:
    """SEQUENCE of already-encoded elements."""
    return encode_tlv(SEQUENCE, b"".join(elements))


def encode_explicit(number: int, element: bytes) -> bytes:
    """``[number] EXPLICIT``: a constructed tag wrapping a whole encoded element."""
    return encode_tlv(context_tag(number, constructed=True), element)


def encode_implicit(number: int, content: bytes, *, constructed: bool = False) -> bytes:
    """``[number] IMPLICIT``: the tag replaces the underlying type's tag."""
    return encode_tlv(context_tag(number, constructed=constructed), content)


# --------------------------------------------------------------------------- decoding
@dataclass(frozen=True, slots=True)
class Element:
    """One decoded TLV: its identifier octet and its content octets."""

    tag: int
    content: bytes

    @property
    def constructed(self) -> bool:
        """Whether the content is itself a series of elements."""
        return bool(self.tag & _CONSTRUCTED)

    def reader(self) -> Reader:
        """A reader over the content (for SEQUENCE and constructed context tags)."""
        if not self.constructed:
            raise DERError("expected a constructed element")
        return Reader(self.content)


def _read_tlv(data: bytes, offset: int) -> tuple[Element, int]:
    end = len(data)
    if offset >= end:
        raise DERError("truncated DER: element expected")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DERError("high-tag-number identifiers are not supported")
    offset += 1
    if offset >= end:
        raise DERError("truncated DER: length expected")
    first = data[offset]
    offset += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DERError("indefinite lengths are not allowed in DER")
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS:
            raise DERError("DER length field too long")
        if offset + count > end:
            raise DERError("truncated DER: length octets")
        octets = data[offset : offset + count]
        offset += count
        if octets[0] == 0:
            raise DERError("non-minimal DER length (leading zero)")
        length = int.from_bytes(octets, "big")
        if length < 0x80:
            raise DERError("non-minimal DER length (long form for a short length)")
    if length > end - offset:
        raise DERError("truncated DER: content shorter than its length")
    return Element(tag, bytes(data[offset : offset + length])), offset + length


def decode(data: bytes) -> Element:
    """Exactly one element; trailing bytes are an error."""
    data = bytes(data)
    element, offset = _read_tlv(data, 0)
    if offset != len(data):
        raise DERError("trailing bytes after DER element")
    return element


def decode_integer(content: bytes) -> int:
    """The value of INTEGER content, rejecting non-minimal encodings."""
    if not content:
        raise DERError("empty INTEGER")
    if len(content) > 1 and (
        (content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise DERError("non-minimal INTEGER encoding")
    return int.from_bytes(content, "big", signed=True)


def decode_oid(content: bytes) -> str:
    """Dotted text of OBJECT IDENTIFIER content, rejecting non-minimal sub-identifiers."""
    if not content:
        raise DERError("empty OBJECT IDENTIFIER")
    if content[-1] & 0x80:
        raise DERError("truncated OBJECT IDENTIFIER")
    values: list[int] = []
    value, starting = 0, True
    for octet in content:
        if starting and octet == 0x80:
            raise DERError("non-minimal OBJECT IDENTIFIER sub-identifier")
        value = (value << 7) | (octet & 0x7F)
        starting = not octet & 0x80
        if starting:
            values.append(value)
            value = 0
    first = values[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + values[1:])


def decode_bit_string(content: bytes) -> bytes:
    """The octets of BIT STRING content; only whole octets (no unused bits) are accepted."""
    if not content:
        raise DERError("empty BIT STRING")
    if content[0] != 0:
        raise DERError("BIT STRING with unused bits (keys are whole octets)")
    return bytes(content[1:])


class Reader:
    """Reads the elements inside one constructed element, in order."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._offset = 0

    @property
    def at_end(self) -> bool:
        """Whether every element has been read."""
        return self._offset >= len(self._data)

    def peek_tag(self) -> int | None:
        """The identifier octet of the next element, or None at the end."""
        return None if self.at_end else self._data[self._offset]

    def read(self) -> Element:
        """The next element, whatever its tag."""
        element, self._offset = _read_tlv(self._data, self._offset)
        return element

    def read_tag(self, tag: int, what: str = "element") -> bytes:
        """The content of the next element, which must have identifier ``tag``."""
        if self.peek_tag() != tag:
            raise DERError(f"expected {what} (tag 0x{tag:02x})")
        return self.read().content

    def optional(self, tag: int) -> bytes | None:
        """The content of the next element if it has identifier ``tag``, else None."""
        return self.read().content if self.peek_tag() == tag else None

    def read_integer(self) -> int:
        """INTEGER."""
        return decode_integer(self.read_tag(INTEGER, "INTEGER"))

    def read_octet_string(self) -> bytes:
        """OCTET STRING (primitive: DER forbids the constructed form)."""
        return self.read_tag(OCTET_STRING, "OCTET STRING")

    def read_bit_string(self) -> bytes:
        """BIT STRING of whole octets."""
        return decode_bit_string(self.read_tag(BIT_STRING, "BIT STRING"))

    def read_oid(self) -> str:
        """OBJECT IDENTIFIER as dotted text."""
        return decode_oid(self.read_tag(OBJECT_IDENTIFIER, "OBJECT IDENTIFIER"))

    def read_null(self) -> None:
        """NULL (empty content)."""
        if self.read_tag(NULL, "NULL"):
            raise DERError("NULL with content")

    def read_sequence(self) -> Reader:
        """A reader over the next SEQUENCE."""
        return Reader(self.read_tag(SEQUENCE, "SEQUENCE"))

    def read_explicit(self, number: int) -> Reader:
        """A reader over the content of ``[number] EXPLICIT``."""
        return Reader(self.read_tag(context_tag(number, constructed=True), f"[{number}]"))

    def finish(self) -> None:
        """Check that nothing is left."""
        if not self.at_end:
            raise DERError("unexpected trailing elements")
