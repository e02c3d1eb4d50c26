"""The plugin encodings of the key-service recipient and identity (``docs/formats.md``).

``age1qrc1...`` (Bech32, HRP ``age1qrc``) carries everything a writer needs, so that
encrypting to a managed key needs neither the service nor a token::

    0x01 | len8(algorithm) | algorithm | len8(key_id) | key_id | u32 version
         | len16(context) | context | public key

``AGE-PLUGIN-QRC-1...`` (HRP ``AGE-PLUGIN-QRC-``) names the service that holds the
private keys and the context to bind; it holds no secret (the bearer token and the CA come
from ``QRC_TOKEN``/``QRC_CA_FILE`` or the data directory, as for ``qrc keys``)::

    0x01 | len16(url) | url | len16(context) | context

All strings are UTF-8, integers big-endian; trailing bytes are rejected.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qrc.crypto.base import KemPublicKey
from qrc.crypto.errors import KeyFormatError
from qrc.data.age import bech32
from qrc.data.age.keyservice import KeyRecipient, ServiceIdentity, remote_opener

if TYPE_CHECKING:
    from qrc.transit.client import PQClient

__all__ = [
    "IDENTITY_HRP",
    "RECIPIENT_HRP",
    "ServiceLocator",
    "client_for",
    "decode_identity",
    "decode_recipient",
    "encode_identity",
    "encode_recipient",
    "resolve",
]

RECIPIENT_HRP = "age1qrc"
IDENTITY_HRP = "AGE-PLUGIN-QRC-"
_FORMAT = 1


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise KeyFormatError("truncated qrc plugin key")
        out = self._data[self._at : self._at + size]
        self._at += size
        return out

    def text(self, length_size: int) -> str:
        size = int.from_bytes(self.take(length_size), "big")
        try:
            return self.take(size).decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFormatError("malformed qrc plugin key") from None

    def rest(self) -> bytes:
        out = self._data[self._at :]
        self._at = len(self._data)
        return out

    def end(self) -> None:
        if self._at != len(self._data):
            raise KeyFormatError("trailing bytes in qrc plugin key")


def _text(value: str, length_size: int) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) >= 1 << (8 * length_size):
        raise ValueError("field too long for a qrc plugin key")
    return len(raw).to_bytes(length_size, "big") + raw


def _payload(text: str, hrp: str) -> _Reader:
    try:
        found, data = bech32.decode(text.strip())
    except bech32.Bech32Error as exc:
        raise KeyFormatError(f"malformed qrc plugin key: {exc}") from None
    if found != hrp.lower():
        raise KeyFormatError("not a qrc plugin key")
    reader = _Reader(data)
    if reader.take(1)[0] != _FORMAT:
        raise KeyFormatError("unknown qrc plugin key format")
    return reader


def encode_recipient(recipient: KeyRecipient) -> str:
    """The ``age1qrc1`` string of a key-service recipient."""
    data = b"".join(
        (
            bytes([_FORMAT]),
            _text(recipient.public.algorithm, 1),
            _text(recipient.key_id, 1),
            struct.pack(">I", recipient.version),
            _text(recipient.context, 2),
            recipient.public.public_bytes(),
        )
    )
    return bech32.encode(RECIPIENT_HRP, data)


def decode_recipient(text: str) -> KeyRecipient:
    """Parse an ``age1qrc1`` string.

    Raises:
        KeyFormatError: malformed, or a public key that does not load.
    """
    from qrc.crypto.schemes import get_kem  # noqa: PLC0415

    reader = _payload(text, RECIPIENT_HRP)
    algorithm, key_id = reader.text(1), reader.text(1)
    (version,) = struct.unpack(">I", reader.take(4))
    context = reader.text(2)
    public = get_kem(algorithm).load_public(reader.rest())
    if not isinstance(public, KemPublicKey):
        raise KeyFormatError("not a KEM public key")
    try:
        return KeyRecipient(public, key_id=key_id, version=version, context=context)
    except ValueError as exc:
        raise KeyFormatError(str(exc)) from None


@dataclass(frozen=True)
class ServiceLocator:
    """Where the key service is, and the context the identity binds."""

    url: str
    context: str = ""


def encode_identity(locator: ServiceLocator) -> str:
    """The ``AGE-PLUGIN-QRC-1`` string of a service identity."""
    data = bytes([_FORMAT]) + _text(locator.url, 2) + _text(locator.context, 2)
    return bech32.encode(IDENTITY_HRP, data).upper()


def decode_identity(text: str) -> ServiceLocator:
    """Parse an ``AGE-PLUGIN-QRC-1`` string."""
    reader = _payload(text, IDENTITY_HRP)
    url, context = reader.text(2), reader.text(2)
    reader.end()
    if not url.startswith(("https://", "http://")):
        raise KeyFormatError("the qrc identity's service URL must be https:// (or http://)")
    return ServiceLocator(url, context)


def client_for(url: str) -> PQClient:
    """A PQ HTTPS client for ``url`` with the token and CA of the environment."""
    from qrc.transit.client import PQClient  # noqa: PLC0415

    data_dir = Path(os.environ.get("QRC_DATA_DIR", ".qrc"))
    token = os.environ.get("QRC_TOKEN")
    token_file = data_dir / "admin.token"
    if token is None and token_file.exists():
        token = token_file.read_text("utf-8").strip()
    if token is None:
        raise KeyFormatError("no token for the key service: set QRC_TOKEN")
    ca = os.environ.get("QRC_CA_FILE") or str(data_dir / "tls" / "ca.pem")
    return PQClient(url, ca_file=ca if url.startswith("https://") else None, token=token)


def resolve(text: str) -> KeyRecipient | ServiceIdentity | None:
    """The recipient or identity of a qrc plugin string (``None``: not ours)."""
    stripped = text.strip()
    if stripped.lower().startswith(RECIPIENT_HRP + "1"):
        return decode_recipient(stripped)
    if stripped.upper().startswith(IDENTITY_HRP + "1"):
        locator = decode_identity(stripped)
        client = client_for(locator.url)
        return ServiceIdentity(remote_opener(client), context=locator.context)
    return None
