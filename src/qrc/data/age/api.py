"""Encrypting and decrypting age files as streams.

``encrypt`` returns a writer: write plaintext into it and close it. ``decrypt`` returns a
reader: read plaintext until ``b""``. Neither ever holds more than two 64 KiB chunks.
Decryption detects ASCII armor: a binary age file starts with its version line, so any
other start (after optional whitespace) is read as armor.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from qrc.data.age.armor import ArmorReader, ArmorWriter
from qrc.data.age.errors import HeaderFailure, NoIdentityMatch
from qrc.data.age.header import Header, encode_header, read_header
from qrc.data.age.recipients import FILE_KEY_SIZE, POSTQUANTUM, Identity, Recipient
from qrc.data.age.stream import CHUNK_SIZE, PayloadReader, PayloadWriter

__all__ = [
    "AgeReader",
    "AgeWriter",
    "check_labels",
    "decrypt",
    "decrypt_bytes",
    "encrypt",
    "encrypt_bytes",
    "unwrap_file_key",
]

_BUFFER = CHUNK_SIZE + 16


def check_labels(recipients: Sequence[Recipient]) -> None:
    """Refuse recipients that must not share a file, with the reason.

    As age 1.3 does: every recipient must carry the same labels. A passphrase carries a
    label of its own, so it is always alone; post-quantum recipients carry
    ``postquantum``, so they never mix with classical ones (the file would be only as
    strong as its weakest stanza: readable by a quantum computer).

    Raises:
        ValueError: no recipient, or a forbidden mix.
    """
    if not recipients:
        raise ValueError("at least one recipient is needed")
    first = recipients[0].labels
    for other in recipients[1:]:
        if other.labels != first:
            if POSTQUANTUM in first ^ other.labels:
                raise ValueError(
                    "post-quantum and classical recipients cannot share a file: "
                    "the file would be vulnerable to quantum computers"
                )
            raise ValueError("a passphrase (scrypt) must be the file's only recipient")


class AgeWriter(io.RawIOBase):
    """Plaintext in, an age file out to ``dst``; ``close()`` finishes the file.

    Closing does not close ``dst``. Leaving the ``with`` block on an exception aborts
    instead: no final chunk is written, so the partial output fails to decrypt (callers
    writing to disk should still remove it).
    """

    def __init__(self, dst: BinaryIO, recipients: Sequence[Recipient], armor: bool) -> None:
        super().__init__()
        check_labels(recipients)
        file_key = os.urandom(FILE_KEY_SIZE)
        stanzas = [stanza for r in recipients for stanza in r.wrap(file_key)]
        self._armor = ArmorWriter(dst) if armor else None
        sink: BinaryIO = self._armor if self._armor is not None else dst  # type: ignore[assignment]
        sink.write(encode_header(stanzas, file_key))
        self._payload = PayloadWriter(sink, file_key)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return self._payload.write(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._payload.close()
                if self._armor is not None:
                    self._armor.close()
            finally:
                super().close()

    def abort(self) -> None:
        """Stop without the final chunk: what was written cannot decrypt as a whole file."""
        if not self.closed:
            self._payload.abort()
            super().close()

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        # Leaving the block on an exception must not finish the file: closing would seal
        # the last chunk and make a truncated plaintext look complete.
        if exc_type is not None:
            self.abort()
        else:
            self.close()


class _Prefixed(io.RawIOBase):
    """``prefix`` then the rest of ``src`` (what armor detection read ahead)."""

    def __init__(self, prefix: bytes, src: BinaryIO) -> None:
        super().__init__()
        self._prefix, self._src = prefix, src

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(target), len(self._prefix))
            target[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        readinto = getattr(self._src, "readinto", None)
        if readinto is not None:
            return int(readinto(target) or 0)
        data = self._src.read(len(target))
        target[: len(data)] = data
        return len(data)


_MAGIC = b"age-encryption.org/"


def _detect(src: BinaryIO) -> BinaryIO:
    """A buffered reader of the binary age file in ``src``, de-armored if need be."""
    peek = getattr(src, "peek", None)
    if peek is not None and hasattr(src, "readline"):
        # A buffered reader (a file, stdin): look without consuming, and read it directly.
        start = bytes(peek(len(_MAGIC))[: len(_MAGIC)])
        if not start or start.startswith(_MAGIC):
            return src
        if not _MAGIC.startswith(start):  # not a prefix of a binary file: armor
            return io.BufferedReader(ArmorReader(src), _BUFFER)
        # A short peek of a slow pipe: read ahead instead.
    start = b""
    while len(start) < len(_MAGIC):
        more = src.read(len(_MAGIC) - len(start))
        if not more:
            break
        start += more
    raw = io.BufferedReader(_Prefixed(start, src), _BUFFER)
    if not start or start.startswith(_MAGIC):
        return raw
    return io.BufferedReader(ArmorReader(raw), _BUFFER)


def unwrap_file_key(header: Header, identities: Sequence[Identity]) -> bytes:
    """The file key, by trying each identity in turn; the header MAC is checked.

    Raises:
        HeaderFailure, NoIdentityMatch, MacFailure.
    """
    stanzas = header.stanzas
    # A passphrase promises that whoever wrote the file knew it: nothing else may be there.
    if len(stanzas) > 1 and any(s.type == "scrypt" for s in stanzas):
        raise HeaderFailure
    for identity in identities:
        file_key = identity.unwrap(stanzas)
        if file_key is not None:
            if len(file_key) != FILE_KEY_SIZE:
                raise HeaderFailure
            header.verify_mac(file_key)
            return file_key
    raise NoIdentityMatch


class AgeReader(io.RawIOBase):
    """The plaintext of an age file; see :class:`~qrc.data.age.stream.PayloadReader`."""

    def __init__(self, src: BinaryIO, identities: Sequence[Identity]) -> None:
        super().__init__()
        source = _detect(src)
        self.header = read_header(source)
        file_key = unwrap_file_key(self.header, identities)
        self._payload = PayloadReader(source, file_key)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._payload.readinto(buffer)

    def chunks(self) -> Iterator[memoryview]:
        """The plaintext a checked chunk at a time (views reused between steps)."""
        return self._payload.chunks()


def encrypt(dst: BinaryIO, recipients: Sequence[Recipient], *, armor: bool = False) -> AgeWriter:
    """A writer that encrypts to ``recipients`` onto ``dst``; close it to finish the file.

    Raises:
        ValueError: no recipients, or recipients that must not share a file.
    """
    return AgeWriter(dst, recipients, armor)


def decrypt(src: BinaryIO, identities: Sequence[Identity]) -> AgeReader:
    """A reader of the plaintext of the age file (binary or armored) in ``src``.

    Raises:
        DecryptionError: (one of its age subclasses) from here or from any read.
    """
    return AgeReader(src, identities)


def encrypt_bytes(
    plaintext: bytes, recipients: Sequence[Recipient], *, armor: bool = False
) -> bytes:
    """An age file of ``plaintext`` (for small messages)."""
    out = io.BytesIO()
    with encrypt(out, recipients, armor=armor) as writer:
        writer.write(plaintext)
    return out.getvalue()


def decrypt_bytes(data: bytes, identities: Sequence[Identity]) -> bytes:
    """The plaintext of a whole age file held in memory."""
    reader = decrypt(io.BytesIO(data), identities)
    return b"".join(bytes(chunk) for chunk in reader.chunks())
