"""The byte layout of an agent message v1 (``docs/formats.md``, "Agent message v1").

Encoding and strict parsing only: every length is bounded before it is read, and
trailing bytes are refused. Signing, sealing and the checks live in
:mod:`qrc.transit.agents`; the relay uses :func:`parse_header` to route a message without
being able to read it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ENC_SIZE",
    "HEADER_MAGIC",
    "INFO_LABEL",
    "MAX_BODY",
    "MAX_MESSAGE",
    "SIGNATURE_CONTEXT",
    "SUITE",
    "Inner",
    "MalformedMessage",
    "check_agent_id",
    "encode_header",
    "encode_inner_unsigned",
    "parse_header",
    "parse_inner",
    "signed_data",
]

HEADER_MAGIC: Final = b"QRAM\x01"
SUITE: Final = (0x647A, 0x0001, 0x0002)  # MLKEM768-X25519, HKDF-SHA256, AES-256-GCM
ENC_SIZE: Final = 1120
INFO_LABEL: Final = b"qrc agent message v1\x00"
SIGNATURE_CONTEXT: Final = b"agent-message-v1"
MAX_BODY: Final = 1 << 20
MAX_MESSAGE: Final = MAX_BODY + 4096 + ENC_SIZE + 8192  # body, fields, enc, signature
MESSAGE_ID_SIZE: Final = 16
_MAX_ID: Final = 200
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SUITE_BYTES: Final = struct.pack(">HHH", *SUITE)


class MalformedMessage(ValueError):
    """The bytes are not an agent message v1 (the reason is for logs, never for peers)."""


def check_agent_id(agent_id: str) -> bytes:
    """``agent_id`` as UTF-8, if it is a valid agent ID (1..200 bytes, no controls)."""
    raw = agent_id.encode("utf-8")
    if not 1 <= len(raw) <= _MAX_ID or _CONTROL.search(agent_id):
        raise ValueError(f"invalid agent ID {agent_id!r}")
    return raw


def _len8(value: bytes) -> bytes:
    if len(value) > 255:
        raise ValueError("field longer than 255 bytes")
    return bytes([len(value)]) + value


class _Reader:
    __slots__ = ("at", "data", "end")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.at, self.end = bytes(data), 0, len(data)

    def take(self, size: int) -> bytes:
        at = self.at
        if at + size > self.end:
            raise MalformedMessage("truncated")
        self.at = at + size
        return self.data[at : at + size]

    def len8(self) -> bytes:
        if self.at >= self.end:
            raise MalformedMessage("truncated")
        size = self.data[self.at]
        self.at += 1
        return self.take(size)

    def text(self) -> str:
        raw = self.len8()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("bad agent ID") from None
        if not raw or _CONTROL.search(text):
            raise MalformedMessage("bad agent ID")
        return text

    def rest(self) -> bytes:
        return self.take(self.end - self.at)


def encode_header(recipient: str) -> bytes:
    """The outer header: magic, version, recipient, suite (everything before ``enc``)."""
    return HEADER_MAGIC + _len8(check_agent_id(recipient)) + _SUITE_BYTES


def parse_header(message: bytes | memoryview) -> tuple[str, int]:
    """``(recipient, header length)`` of a message; checks the suite and the sizes."""
    if len(message) > MAX_MESSAGE:
        raise MalformedMessage("too large")
    reader = _Reader(message[:263])  # magic, a len8 ID and the suite fit in 263 bytes
    if reader.take(len(HEADER_MAGIC)) != HEADER_MAGIC:
        raise MalformedMessage("not an agent message v1")
    recipient = reader.text()
    if reader.take(6) != _SUITE_BYTES:
        raise MalformedMessage("unsupported suite")
    if len(message) - reader.at < ENC_SIZE + 16:
        raise MalformedMessage("truncated")
    return recipient, reader.at


@dataclass(frozen=True)
class Inner:
    """The sealed part of a message."""

    sender: str
    recipient: str
    message_id: bytes
    timestamp_ms: int
    signature_algorithm: str
    content_type: str
    body: bytes
    signature: bytes
    signed: bytes  # the inner form up to the signature length


def encode_inner_unsigned(
    sender: str,
    recipient: str,
    message_id: bytes,
    timestamp_ms: int,
    signature_algorithm: str,
    content_type: str,
    body: bytes,
) -> bytes:
    """The inner form up to (without) the signature length: what :func:`signed_data` takes."""
    if len(message_id) != MESSAGE_ID_SIZE:
        raise ValueError("a message ID is 16 bytes")
    if len(body) > MAX_BODY:
        raise ValueError(f"a message body is at most {MAX_BODY} bytes")
    ctype = content_type.encode("utf-8")
    if _CONTROL.search(content_type):
        raise ValueError("invalid content type")
    return b"".join(
        (
            _len8(check_agent_id(sender)),
            _len8(check_agent_id(recipient)),
            message_id,
            struct.pack(">Q", timestamp_ms),
            _len8(signature_algorithm.encode("ascii")),
            _len8(ctype),
            struct.pack(">I", len(body)),
            body,
        )
    )


def signed_data(header: bytes, recipient_kem_digest: bytes, unsigned_inner: bytes) -> bytes:
    """What the sender signs (under :data:`SIGNATURE_CONTEXT`)."""
    return b"".join((INFO_LABEL, header, recipient_kem_digest, unsigned_inner))


def parse_inner(data: bytes) -> Inner:
    """Strictly parse the HPKE plaintext."""
    reader = _Reader(data)
    sender, recipient = reader.text(), reader.text()
    message_id = reader.take(MESSAGE_ID_SIZE)
    (timestamp_ms,) = struct.unpack(">Q", reader.take(8))
    try:
        algorithm = reader.len8().decode("ascii")
        content_type = reader.len8().decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("bad text field") from None
    (size,) = struct.unpack(">I", reader.take(4))
    if size > MAX_BODY:
        raise MalformedMessage("body too large")
    body = reader.take(size)
    signed = reader.data[: reader.at]
    (sig_size,) = struct.unpack(">H", reader.take(2))
    signature = reader.take(sig_size)
    if reader.rest():
        raise MalformedMessage("trailing bytes")
    return Inner(
        sender, recipient, message_id, timestamp_ms, algorithm, content_type, body, signature,
        signed,
    )  # fmt: skip
