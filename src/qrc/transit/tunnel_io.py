"""The tunnel's transport: TCP sides as asyncio protocols, TLS on pyOpenSSL memory BIOs.

OpenSSL reads ciphertext from one memory BIO and writes to another; this module moves bytes
between those BIOs and asyncio transports, all on the event loop's thread, so an ``SSL``
object is never touched by two threads at once.

- :class:`Side` is one TCP connection. During the handshake it buffers what arrives and
  :meth:`Side.read` waits for it; once the handshake is done, :class:`Relay` makes it call
  straight into the data path (no stream reader, no task switch per chunk).
- :class:`TLSStream` runs the handshake over a :class:`Side`.
- :class:`Relay` carries data both ways between a TLS side and a plain side: half-close
  (EOF one way keeps the other way open), backpressure (a side whose peer cannot take more
  stops reading: asyncio's ``pause_writing`` becomes the other transport's
  ``pause_reading``), truncation (TCP EOF without ``close_notify``) aborts both.

Bulk throughput is bound by CPU (both ends, the application and the service often share a
few cores), and much of it went to fresh 256 KiB buffers: a new one per read, per joined
batch of records and per BIO read, which glibc gives back to the kernel when freed and
page-faults in again on the next read. So sides read with ``recv_into``
(:class:`asyncio.BufferedProtocol`) into a buffer that stays, decrypted records are
gathered in another that stays (replaced only when a transport keeps a view of it), and
ciphertext leaves OpenSSL in one read of about its size. The two buffers are shared by the
connections of the loop's thread: each read is carried to the end, copied where it is kept,
before the loop reads again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Final, TypeAlias

from OpenSSL import SSL

__all__ = ["Relay", "Side", "TLSStream", "Truncated"]

# One TLS record carries at most 16 KiB of plaintext, and SSL_read returns one record.
_RECORD: Final = 16 * 1024
# What a TLS 1.3 record adds to its plaintext: header (5), content type (1), AEAD tag (16).
_RECORD_OVERHEAD: Final = 22
# Bytes taken from a socket per read (asyncio's own default is 256 KiB too).
_READ_SIZE: Final = 256 * 1024
# Plaintext gathered from SSL_read before it is written to the plain side.
_OUT_SIZE: Final = 256 * 1024
# Outgoing TLS bytes that do not follow our own writes are small (alerts, KeyUpdate).
_SMALL_OUT: Final = 4 * 1024
# Let one 256 KiB read queue behind another before the reader is paused.
_HIGH_WATER: Final = 512 * 1024

Data: TypeAlias = bytes | bytearray | memoryview
"""Bytes handed to the data path; a memoryview is valid only during the call."""


class _Buffers(threading.local):
    """The buffers of one thread's event loop (see the module's docstring)."""

    def __init__(self) -> None:
        self.read = memoryview(bytearray(_READ_SIZE))
        self.out = memoryview(bytearray(_OUT_SIZE))


_buffers: Final = _Buffers()


class Truncated(Exception):
    """The peer closed TCP without TLS ``close_notify`` (or in the middle of a handshake)."""


class Side(asyncio.BufferedProtocol):
    """One TCP connection of the tunnel."""

    def __init__(self, on_made: Callable[[Side], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None  # the side whose reading stops when we cannot write
        self.eof = False
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._on_made = on_made
        self.on_data: Callable[[Data], None] | None = None
        self.on_eof: Callable[[], None] | None = None
        self.on_lost: Callable[[Exception | None], None] | None = None

    # ------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # TCP only: a stream transport
            raise TypeError(f"expected a stream transport, got {type(transport).__name__}")
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER, low=_HIGH_WATER // 4)
        if self._on_made is not None:
            self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _buffers.read

    def buffer_updated(self, nbytes: int) -> None:
        data = _buffers.read[:nbytes]
        if self.on_data is not None:
            self.on_data(data)  # which copies what it keeps (into OpenSSL, a transport)
        else:
            self._buffer += data
            self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        if self.on_eof is not None:
            self.on_eof()
        else:
            self._wake()
        return True  # keep the transport open: the other direction may go on

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self.on_lost is not None:
            self.on_lost(exc)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    # ------------------------------------------------------------ handshake phase
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        """What arrived so far, waiting for something; ``b""`` at EOF or close."""
        while not self._buffer and not self.eof and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def take_buffer(self) -> bytes:
        """Whatever arrived before data forwarding started (once)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def write(self, data: Data) -> bool:
        """Send ``data``; False if the transport kept a part of it to send later (it may
        keep a view of ``data`` itself, from Python 3.12 on, so ``data`` must not change)."""
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            return transport.get_write_buffer_size() == 0
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _pending_out(conn: SSL.Connection, expected: int = _SMALL_OUT) -> bytes:
    """What OpenSSL has written to its outgoing BIO. ``expected`` is about how much that is:
    a memory BIO gives all it has up to the size asked, so a short read means it is empty,
    and one read of the right size is one allocation instead of a big one per try."""
    chunks = []
    while True:
        try:
            chunk = conn.bio_read(expected)
        except SSL.WantReadError:
            break
        chunks.append(chunk)
        if len(chunk) < expected:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class TLSStream:
    """A TLS connection (``conn`` on memory BIOs) over a :class:`Side`."""

    __slots__ = ("conn", "side")

    def __init__(self, conn: SSL.Connection, side: Side) -> None:
        self.conn = conn
        self.side = side

    def flush(self) -> None:
        """Send whatever OpenSSL has written to its outgoing BIO."""
        self.side.write(_pending_out(self.conn))

    async def handshake(self) -> None:
        while True:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self.flush()
                data = await self.side.read()
                if not data:
                    raise Truncated from None
                self.conn.bio_write(data)
            else:
                self.flush()
                return


class Relay:
    """Carries one connection's data both ways; ``done`` resolves when it has ended.

    ``done`` holds None after a clean end (both directions closed), or the exception that
    ended it (:class:`Truncated`, ``SSL.Error``, ``ConnectionError``).
    """

    def __init__(self, stream: TLSStream, plain: Side) -> None:
        self.conn, self.tls, self.plain = stream.conn, stream.side, plain
        self.done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.last_activity = time.monotonic()
        self.bytes_to_tls = 0
        self.bytes_from_tls = 0
        self._to_tls_open = True
        self._from_tls_open = True
        self.tls.peer, self.plain.peer = plain, self.tls

    def start(self) -> None:
        """Forward what arrived during the handshake, then everything as it comes."""
        tls, plain = self.tls, self.plain
        tls.on_data, tls.on_eof, tls.on_lost = self._tls_data, self._tls_eof, self._lost
        plain.on_data, plain.on_eof, plain.on_lost = self._plain_data, self._plain_eof, self._lost
        early_tls, early_plain = tls.take_buffer(), plain.take_buffer()
        # Records that came with the last handshake message are already inside OpenSSL:
        # read them out even when nothing new arrived.
        self._tls_data(early_tls)
        if early_plain:
            self._plain_data(early_plain)
        for side, handler in ((tls, self._tls_eof), (plain, self._plain_eof)):
            if side.eof and not self.done.done():
                handler()
            if side.closed and not self.done.done():
                self._lost(None)

    def close(self) -> None:
        """End it now (idle timeout, shutdown): both connections are aborted."""
        self.tls.abort()
        self.plain.abort()
        self._finish(None)

    # ------------------------------------------------------------ plain -> TLS
    def _plain_data(self, data: Data) -> None:
        self.last_activity = time.monotonic()
        size = len(data)
        self.bytes_to_tls += size
        try:
            # One send() seals it all, or one record with partial writes on (pyOpenSSL's
            # default, which the tunnel's contexts turn off).
            view = memoryview(data)
            while view:
                view = view[self.conn.send(view) :]
        except SSL.Error as exc:
            self._fail(exc)
            return
        records = -(-size // _RECORD)
        self.tls.write(_pending_out(self.conn, size + records * _RECORD_OVERHEAD + _SMALL_OUT))

    def _plain_eof(self) -> None:
        if not self._to_tls_open:
            return
        self._to_tls_open = False
        with contextlib.suppress(SSL.Error):
            self.conn.shutdown()  # close_notify; TLS 1.3 lets the other way go on
        self.tls.write(_pending_out(self.conn))
        self._maybe_finished()

    # ------------------------------------------------------------ TLS -> plain
    def _tls_data(self, data: Data) -> None:
        self.last_activity = time.monotonic()
        if data:
            self.conn.bio_write(data)
        out, used, ended = _buffers.out, 0, False
        try:
            while True:
                if used > len(out) - _RECORD:  # full: pass it on, go on from the start
                    self._to_plain(out, used)
                    out, used = _buffers.out, 0
                used += self.conn.recv_into(out[used:], _RECORD)
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            ended = True
        except SSL.Error as exc:
            self._fail(exc)
            return
        if used:
            self._to_plain(out, used)
        self.tls.write(_pending_out(self.conn))  # e.g. a KeyUpdate answer
        if ended and self._from_tls_open:
            self._from_tls_open = False
            if self.plain.transport is not None and self.plain.transport.can_write_eof():
                self.plain.transport.write_eof()
            self._maybe_finished()

    def _to_plain(self, out: memoryview, used: int) -> None:
        self.bytes_from_tls += used
        if not self.plain.write(out[:used]):
            # The transport may hold on to a view of the buffer: gather in a new one.
            _buffers.out = memoryview(bytearray(_OUT_SIZE))

    def _tls_eof(self) -> None:
        if self._from_tls_open:  # TCP ended without close_notify: a truncation
            self._fail(Truncated())
        else:
            self._maybe_finished()

    # ------------------------------------------------------------ ending
    def _maybe_finished(self) -> None:
        if not self._to_tls_open and not self._from_tls_open:
            # close() sends what is still buffered, then FIN.
            for side in (self.tls, self.plain):
                if side.transport is not None:
                    side.transport.close()
            self._finish(None)

    def _lost(self, exc: Exception | None) -> None:
        if self._to_tls_open or self._from_tls_open:
            self._fail(exc or ConnectionResetError("connection closed before the end of data"))

    def _fail(self, exc: BaseException) -> None:
        self.tls.abort()
        self.plain.abort()
        self._finish(exc)

    def _finish(self, result: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(result)
