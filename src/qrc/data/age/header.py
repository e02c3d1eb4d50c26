"""The age v1 header: version line, recipient stanzas, MAC (``c2sp.org/age``, "Header").

Parsing is strict and bounded: every line is read with a length limit, the header as a
whole is capped at :data:`MAX_HEADER_SIZE`, base64 must be canonical and unpadded, and
any deviation from the ABNF raises :class:`HeaderFailure`. The raw bytes read are kept so
that the MAC is checked over exactly what was received.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from qrc.data.age.errors import HeaderFailure, MacFailure

__all__ = [
    "MAX_HEADER_SIZE",
    "Header",
    "Stanza",
    "b64decode",
    "b64encode",
    "encode_header",
    "hkdf_sha256",
    "read_header",
    "read_stanza",
    "write_stanza",
]

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
_MAC_MARK = b"---"
_COLUMNS = 64
# Bounds: an argument line holds at most a few KiB (an ML-KEM ciphertext is 1,494 base64
# characters); a whole header of 1 MiB is thousands of stanzas.
MAX_LINE = 16 << 10
MAX_HEADER_SIZE = 1 << 20
_B64_CHARS = re.compile(rb"[A-Za-z0-9+/]*")
_VCHARS = re.compile(rb"[\x21-\x7e]+")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA-256 (RFC 5869) with 32 bytes of output, as age uses it throughout."""
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def b64encode(data: bytes) -> str:
    """Unpadded standard base64."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes) -> bytes:
    """Canonical unpadded standard base64; anything else raises :class:`HeaderFailure`."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    if _B64_CHARS.fullmatch(raw) is None or len(raw) % 4 == 1:
        raise HeaderFailure
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except binascii.Error:
        raise HeaderFailure from None
    # Canonical: the unused bits of the last character are zero (RFC 4648 §3.5).
    if base64.b64encode(data).rstrip(b"=") != raw:
        raise HeaderFailure
    return data


@dataclass(frozen=True)
class Stanza:
    """A recipient stanza: its type (first argument), the other arguments and the body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        """The stanza's lines, the body wrapped at 64 columns, ending with a short line."""
        return write_stanza((self.type, *self.args), self.body)


def write_stanza(arguments: Sequence[str], body: bytes, prefix: bytes = b"-> ") -> bytes:
    """``-> arg arg...\\n`` and the body's base64 lines (the last shorter than 64)."""
    for argument in arguments:
        if _VCHARS.fullmatch(argument.encode("ascii", "replace")) is None:
            raise ValueError(f"invalid age stanza argument {argument!r}")
    text = b64encode(body)
    lines = [text[i : i + _COLUMNS] for i in range(0, len(text), _COLUMNS)]
    if not lines or len(lines[-1]) == _COLUMNS:
        lines.append("")
    head = prefix + " ".join(arguments).encode("ascii")
    return head + b"\n" + "".join(line + "\n" for line in lines).encode("ascii")


def _readline(src: BinaryIO, budget: int) -> bytes:
    line = src.readline(min(MAX_LINE, budget) + 1)
    if not line.endswith(b"\n") or len(line) > budget:
        raise HeaderFailure  # end of file, an over-long line, or the header cap
    return line


def read_stanza(src: BinaryIO, first: bytes, budget: int) -> tuple[list[str], bytes, int]:
    """Parse one stanza whose ``-> `` line is ``first``: ``(arguments, body, bytes read)``.

    Also used for the plugin protocol, whose commands are stanzas.
    """
    if not first.startswith(b"-> "):
        raise HeaderFailure
    arguments = first[3:-1].split(b" ")
    if any(_VCHARS.fullmatch(a) is None for a in arguments):
        raise HeaderFailure  # no arguments, an empty one, or a character outside VCHAR
    used, lines = 0, []
    while True:
        line = _readline(src, budget - used)
        used += len(line)
        text = line[:-1]
        if len(text) > _COLUMNS:
            raise HeaderFailure
        lines.append(text)
        if len(text) < _COLUMNS:
            break
    body = b64decode(b"".join(lines))
    return [a.decode("ascii") for a in arguments], body, used


@dataclass(frozen=True)
class Header:
    """A parsed header: its stanzas, its MAC and the exact bytes the MAC covers."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    covered: bytes  # from the version line to "---", as received

    def verify_mac(self, file_key: bytes) -> None:
        """Raise :class:`MacFailure` unless the MAC matches under ``file_key``."""
        if not hmac.compare_digest(_mac(file_key, self.covered), self.mac):
            raise MacFailure


def _mac(file_key: bytes, covered: bytes) -> bytes:
    return hmac.digest(hkdf_sha256(file_key, b"", b"header"), covered, "sha256")


def read_header(src: BinaryIO) -> Header:
    """Read a header from ``src``, leaving it at the first byte of the payload.

    Raises:
        HeaderFailure: anything that is not an age v1 header, or a header over the cap.
    """
    budget = MAX_HEADER_SIZE
    version = src.readline(len(VERSION_LINE))
    if version != VERSION_LINE:
        raise HeaderFailure
    covered = [version]
    budget -= len(version)
    stanzas: list[Stanza] = []
    while True:
        line = _readline(src, budget)
        budget -= len(line)
        if line.startswith(_MAC_MARK):
            break
        arguments, body, used = read_stanza(src, line, budget)
        budget -= used
        stanzas.append(Stanza(arguments[0], tuple(arguments[1:]), body))
    if not stanzas or not line.startswith(b"--- ") or len(line) != 48:
        raise HeaderFailure
    mac = b64decode(line[4:-1])
    # Re-encoding is exact for a strictly parsed header; it equals the bytes received.
    covered.extend(s.encode() for s in stanzas)
    covered.append(_MAC_MARK)
    return Header(tuple(stanzas), mac, b"".join(covered))


def encode_header(stanzas: Sequence[Stanza], file_key: bytes) -> bytes:
    """The complete header for ``stanzas``, MAC line included."""
    covered = b"".join([VERSION_LINE, *(s.encode() for s in stanzas), _MAC_MARK])
    return covered + b" " + b64encode(_mac(file_key, covered)).encode("ascii") + b"\n"
