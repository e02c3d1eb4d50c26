"""TLS over asyncio streams with pyOpenSSL memory BIOs (the tunnel's transport).

OpenSSL reads ciphertext from one memory BIO and writes to another; :class:`TLSStream`
moves bytes between those BIOs and an asyncio TCP stream. Everything runs on the event
loop's thread, so the ``SSL`` object is never touched by two threads at once, and the two
directions of a connection (one task each) interleave only at ``await`` points.
"""

from __future__ import annotations

import asyncio
from typing import Final

from OpenSSL import SSL

__all__ = ["TLSStream", "Truncated", "flush_tls"]

_READ: Final = 256 * 1024  # from TCP
# One TLS record carries at most 16 KiB of plaintext, and SSL_read returns one record; a
# larger buffer would only make each call allocate more (pyOpenSSL allocates per call, and
# above glibc's mmap threshold that is a mmap/munmap pair every time).
_RECORD: Final = 16 * 1024
_BIO_CHUNK: Final = 64 * 1024


class Truncated(Exception):
    """The peer closed TCP without TLS ``close_notify`` (or in the middle of a handshake)."""


async def flush_tls(stream: TLSStream) -> None:
    """Send whatever OpenSSL has written to its outgoing BIO."""
    await stream.flush()


class TLSStream:
    """One TLS connection (``conn`` on memory BIOs) over ``reader``/``writer``."""

    __slots__ = ("_eof", "conn", "reader", "writer")

    def __init__(
        self, conn: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self._eof = False

    def _pending_out(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self.conn.bio_read(_BIO_CHUNK))
            except SSL.WantReadError:
                return b"".join(chunks)

    async def flush(self) -> None:
        out = self._pending_out()
        if out:
            self.writer.write(out)
            await self.writer.drain()

    async def _feed(self) -> None:
        """Read ciphertext from TCP into OpenSSL; TCP EOF is :class:`Truncated`."""
        data = await self.reader.read(_READ)
        if not data:
            raise Truncated
        self.conn.bio_write(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                await self.flush()
                await self._feed()
            else:
                await self.flush()
                return

    async def recv(self) -> bytes:
        """The next plaintext (up to 256 KiB; every complete record received so far), or
        ``b""`` once the peer sent ``close_notify``. Raises :class:`Truncated` on TCP EOF
        without it."""
        while True:
            chunks: list[bytes] = []
            size = 0
            try:
                while size < _READ:
                    chunk = self.conn.recv(_RECORD)
                    chunks.append(chunk)
                    size += len(chunk)
            except SSL.WantReadError:
                pass
            except SSL.ZeroReturnError:
                self._eof = True
            if chunks:
                return b"".join(chunks)
            if self._eof:
                return b""
            # Reading may have produced records to send (a KeyUpdate answer).
            await self.flush()
            await self._feed()

    async def send(self, data: bytes) -> None:
        """Encrypt ``data`` and hand it to TCP, waiting while the kernel buffer is full.

        pyOpenSSL turns on partial writes, so one ``send`` seals one record (16 KiB): all of
        ``data`` (at most one plain read, 256 KiB) is sealed first and written in one go,
        rather than one socket write per record.
        """
        view = memoryview(data)
        while view:
            view = view[self.conn.send(view) :]
        await self.flush()

    async def close_write(self) -> None:
        """Send ``close_notify``: no more data this way; reading goes on (TLS 1.3 half-close)."""
        try:
            self.conn.shutdown()
        except SSL.Error:
            return
        await self.flush()
