"""The age payload: a 16-byte nonce, then 64 KiB ChaCha20-Poly1305 STREAM chunks.

``payload key = HKDF-SHA-256(file key, salt = nonce, info = "payload")``; chunk ``i`` is
sealed under the 12-byte nonce ``i`` (11 bytes, big-endian) || ``0x01`` for the final chunk
and ``0x00`` before it. The final chunk may be short but is empty only when the whole
payload is. Truncation (no final chunk), reordering (wrong counter), a dropped final flag,
data after the final chunk and any altered byte all fail the tag check or the framing.

Both directions work in constant memory: one sealed and one plain chunk buffer, reused,
and the AEAD writes into them (``encrypt_into``/``decrypt_into``) so no chunk is allocated per call.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from qrc.data.age.errors import HeaderFailure, PayloadFailure
from qrc.data.age.header import hkdf_sha256

__all__ = ["CHUNK_SIZE", "NONCE_SIZE", "PayloadReader", "PayloadWriter"]

CHUNK_SIZE = 64 << 10
_TAG = 16
_SEALED = CHUNK_SIZE + _TAG
NONCE_SIZE = 16
_LAST_COUNTER = (1 << 88) - 1


def _payload_cipher(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf_sha256(file_key, nonce, b"payload"))


def _chunk_nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _read_full(src: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``src`` unless the input ends first; the number of bytes read."""
    readinto = getattr(src, "readinto", None)
    if readinto is not None:
        filled = readinto(view) or 0
        while filled < len(view) and (n := readinto(view[filled:])):
            filled += n
        return int(filled)
    filled = 0
    while filled < len(view) and (data := src.read(len(view) - filled)):
        view[filled : filled + len(data)] = data
        filled += len(data)
    return filled


class PayloadWriter(io.RawIOBase):
    """Writes plaintext; seals it chunk by chunk onto ``dst``. ``close()`` seals the last.

    ``close()`` does not close ``dst``.
    """

    def __init__(self, dst: BinaryIO, file_key: bytes) -> None:
        super().__init__()
        nonce = os.urandom(NONCE_SIZE)
        self._dst, self._cipher = dst, _payload_cipher(file_key, nonce)
        self._plain = bytearray(CHUNK_SIZE)
        self._plain_view = memoryview(self._plain)
        self._sealed = bytearray(_SEALED)
        self._sealed_view = memoryview(self._sealed)
        self._filled = 0
        self._counter = 0
        dst.write(nonce)

    def writable(self) -> bool:
        return True

    def _seal(self, chunk: memoryview, final: bool) -> None:
        if self._counter > _LAST_COUNTER:
            raise OverflowError("age payload too long")
        out = self._sealed_view[: len(chunk) + _TAG]
        self._cipher.encrypt_into(_chunk_nonce(self._counter, final), chunk, None, out)
        self._dst.write(out)
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed age writer")
        view = memoryview(data).cast("B")
        size, at = len(view), 0
        while at < size:
            if self._filled == CHUNK_SIZE:
                # More data follows, so the buffered full chunk is not the last.
                self._seal(self._plain_view, final=False)
                self._filled = 0
            if self._filled == 0 and size - at > CHUNK_SIZE:
                # Whole chunks straight from the caller's buffer, keeping one back in case
                # it is the last.
                self._seal(view[at : at + CHUNK_SIZE], final=False)
                at += CHUNK_SIZE
                continue
            take = min(CHUNK_SIZE - self._filled, size - at)
            self._plain_view[self._filled : self._filled + take] = view[at : at + take]
            self._filled += take
            at += take
        return size

    def close(self) -> None:
        if not self.closed:
            try:
                self._seal(self._plain_view[: self._filled], final=True)
            finally:
                super().close()

    def abort(self) -> None:
        """Close without sealing the final chunk (the payload stays incomplete)."""
        if not self.closed:
            super().close()


class PayloadReader(io.RawIOBase):
    """Reads and checks the payload from ``src`` (positioned after the header).

    Plaintext is released a chunk at a time, only after that chunk's tag is checked; an
    error at chunk ``n`` comes after the plaintext of chunks ``0..n-1`` was released (and
    trailing data is found after the final chunk was), so
    callers writing to disk must treat the output as incomplete until the end
    (:meth:`chunks` is exhausted or ``read`` returns ``b""``).

    Raises:
        HeaderFailure: the 16-byte nonce is missing (the test kit counts it as header).
        PayloadFailure: any failure of the STREAM payload.
    """

    def __init__(self, src: BinaryIO, file_key: bytes) -> None:
        super().__init__()
        nonce = bytearray(NONCE_SIZE)
        if _read_full(src, memoryview(nonce)) != NONCE_SIZE:
            raise HeaderFailure
        self._src, self._cipher = src, _payload_cipher(file_key, bytes(nonce))
        self._sealed = bytearray(_SEALED)
        self._sealed_view = memoryview(self._sealed)
        self._plain = bytearray(CHUNK_SIZE)
        self._plain_view = memoryview(self._plain)
        self._counter = 0
        self._done = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _open(self, sealed: memoryview, out: memoryview, final: bool) -> bool:
        try:
            self._cipher.decrypt_into(_chunk_nonce(self._counter, final), sealed, None, out)
        except InvalidTag:
            return False
        return True

    def _next_chunk(self) -> memoryview | None:
        """The next chunk's plaintext (a view valid until the next call), None at the end."""
        if self._done:
            # After the final chunk the input must end: trailing data is an error.
            if _read_full(self._src, memoryview(bytearray(1))):
                raise PayloadFailure
            return None
        size = _read_full(self._src, self._sealed_view)
        # Nothing left without a final chunk is truncation; a short chunk can only be
        # the last one, and the last is empty only when the whole payload is.
        if size < _TAG or (size == _TAG and self._counter > 0):
            raise PayloadFailure
        if self._counter > _LAST_COUNTER:
            raise PayloadFailure
        final = size < _SEALED
        sealed, out = self._sealed_view[:size], self._plain_view[: size - _TAG]
        if not self._open(sealed, out, final):
            # A full-size chunk may still be the final one: the flag in the nonce decides.
            if final or not self._open(sealed, out, True):
                raise PayloadFailure
            final = True
        self._counter += 1
        self._done = final
        return out

    def chunks(self) -> Iterator[memoryview]:
        """Each chunk's plaintext in order (views reused: copy or write them at once)."""
        if self._pending:
            pending, self._pending = self._pending, memoryview(b"")
            yield pending
        while (chunk := self._next_chunk()) is not None:
            if chunk:
                yield chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = self._next_chunk()
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
