"""HTTP/1.1 connections of :mod:`qrc.transit._daphne` with limits (internal): a body-size
limit answered 413, a deadline for the request line and headers answered 408 (slowloris),
RFC 9457 problem documents for Twisted's own refusals, and closing that lingers so that
clients read the answer.

Import only after ``daphne.server``, which installs Twisted's asyncio reactor.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import reactor as _reactor
from twisted.web import http as _http

if TYPE_CHECKING:
    from qrc.transit.asgi import ServerOptions

__all__ = ["CLOSE_GRACE", "ChannelTracker", "HTTPChannelFactory", "LimitedChannel"]

_log = logging.getLogger("qrc.transit.server")
# Seconds a TLS close may wait for the peer's close_notify before the connection is cut.
CLOSE_GRACE: Final = 1.0
# Bytes of an over-limit body we read and drop (so the client can read our 413) before
# giving up on the connection.
_DISCARD_LIMIT: Final = 64 * 1024 * 1024
# Seconds we keep reading (and dropping) an over-limit body after answering 413, so that
# the client reads the answer rather than a reset, before closing the connection.
_LINGER: Final = 2.0
# Twisted's annotations are partial: these modules are used as untyped (see _daphne).
reactor: Any = _reactor
http: Any = _http


class ChannelTracker(Protocol):
    """The server a channel reports to (the runner: shutdown closes idle channels)."""

    def channel_opened(self, channel: LimitedChannel) -> bool:
        """Whether to keep the new channel (False: it has been refused and closed)."""

    def channel_closed(self, channel: LimitedChannel) -> None: ...


def _problem_bytes(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 answer with a problem document, closing the connection."""
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _LimitedRequest(WebRequest):  # type: ignore[misc]
    """Daphne's request, with a body-size limit answered by 413 problem details.

    A body announced too large (any Content-Length over the limit, 10**23 included) is
    answered as soon as the headers are in, and one that grows too large (chunked) as soon
    as it does: the application never sees it. What the client still sends is read and
    dropped for a moment (so that it reads our answer, not a reset), then the connection
    is closed.
    """

    _refused = False
    _received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Twisted would parse each POST's Content-Type with the email package (to fill in
        # form arguments that Daphne never reads): a twentieth of an encrypt's CPU time.
        self._parsePOSTFormSubmission = False

    def _limit(self) -> int:
        return int(self.channel.factory.max_body_bytes)

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._limit():
            # Twisted would otherwise spool the announced size to a temporary file.
            super().gotLength(0)
            self._refuse()
            return
        super().gotLength(length)

    def _refuse(self) -> None:
        if self._refused:
            return
        self._refused = True
        channel = self.channel
        channel.persistent = False
        channel.header_deadline_done()
        detail = f"the request body exceeds {self._limit()} bytes"
        channel.transport.write(_problem_bytes(413, "Content Too Large", detail))
        channel.close_soon(_LINGER)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limit():
            self._refuse()
        if self._refused:
            if self._received > self._limit() + _DISCARD_LIMIT:
                self.channel.transport.abortConnection()
            return
        super().handleContentChunk(data)

    def process(self) -> Any:
        if not self._refused:
            return super().process()
        # Answered already; the whole body has arrived, so nothing unread is left.
        self.channel.close_soon(0.0)
        return None


class LimitedChannel(http.HTTPChannel):  # type: ignore[misc]
    """An HTTP connection the runner knows about, so that shutdown can close idle ones.

    It has ``header_timeout`` seconds to deliver a request line and its headers, counted
    from the connection (TLS handshake included) and, on a kept-alive connection, from the
    first byte of each later request: a client that dribbles its headers (slowloris) is
    answered 408 and closed however often it sends a byte (the idle timeout is reset by
    every byte, this deadline is not).
    """

    _header_call: Any = None
    _close_call: Any = None
    _awaiting_headers = True
    _closed = False

    def connectionMade(self) -> None:
        super().connectionMade()
        if not self.factory.server.channel_opened(self):
            return
        self._start_header_deadline()

    def connectionLost(self, reason: Any) -> None:
        self._closed = True
        self.header_deadline_done()
        if self._close_call is not None and self._close_call.active():
            self._close_call.cancel()
        self.factory.server.channel_closed(self)
        super().connectionLost(reason)

    # -- the header deadline
    def _start_header_deadline(self) -> None:
        timeout = self.factory.header_timeout
        if timeout and self._header_call is None and not self._closed:
            self._header_call = reactor.callLater(timeout, self._header_deadline_passed)

    def header_deadline_done(self) -> None:
        """Stop the header deadline (headers complete, or the request is answered)."""
        self._awaiting_headers = False
        if self._header_call is not None:
            if self._header_call.active():
                self._header_call.cancel()
            self._header_call = None

    def _header_deadline_passed(self) -> None:
        self._header_call = None
        if self._closed:
            return
        peer = self.transport.getPeer() if self.transport is not None else None
        _log.info("closing %s: request headers not received in time", getattr(peer, "host", "?"))
        self.persistent = False
        detail = "the request line and headers did not arrive in time"
        self.transport.write(_problem_bytes(408, "Request Timeout", detail))
        self.close_soon(0.0)

    def close_soon(self, linger: float) -> None:
        """Close after ``linger`` seconds (reading and dropping meanwhile); a TLS close that
        waits for the peer's close_notify is cut off after a grace period."""
        if self._closed:
            return
        if self._close_call is not None:
            if (
                self._close_call.active()
                and self._close_call.getTime() > reactor.seconds() + linger
            ):
                self._close_call.reset(linger)  # sooner than planned
            return

        def close() -> None:
            if self._closed or self.transport is None:
                return
            self.transport.loseConnection()
            self._close_call = reactor.callLater(CLOSE_GRACE, abort)

        def abort() -> None:
            if not self._closed and self.transport is not None:
                self.transport.abortConnection()

        self._close_call = reactor.callLater(linger, close)

    def dataReceived(self, data: bytes) -> None:
        if self._awaiting_headers and self._header_call is None:
            self._start_header_deadline()  # the first byte of a new request
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self.header_deadline_done()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        pipelined = bool(self._dataBuffer)
        super().requestDone(request)
        if self.persistent and not self._closed:
            self._awaiting_headers = True
            if pipelined:
                self._start_header_deadline()

    def headerReceived(self, line: bytes) -> bool:
        name, colon, value = line.partition(b":")
        if colon and name.lower() == b"content-length":
            value = value.strip(b" \t")
            if len(value) > 18 and value.isdigit():
                # Past any limit, and past what int() parses if long enough: keep it a number
                # (refused with 413), not an exception.
                line = name + b": " + b"9" * 19
        return bool(super().headerReceived(line))

    def _send100Continue(self) -> None:
        request = self.requests[-1] if self.requests else None
        if request is not None and getattr(request, "_refused", False):
            return  # no "go on" for a body already refused with 413
        super()._send100Continue()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's answer has no body, no Content-Length and no Connection: close.
        self.header_deadline_done()
        self.persistent = False
        detail = "the request line or headers are malformed"
        self.transport.write(_problem_bytes(400, "Bad Request", detail))
        self.loseConnection()


class HTTPChannelFactory(HTTPFactory):  # type: ignore[misc]
    def __init__(self, server: ChannelTracker, options: ServerOptions) -> None:
        super().__init__(server)
        self.protocol = LimitedChannel
        self.timeOut = options.idle_timeout
        self.max_body_bytes = options.max_body_bytes
        self.header_timeout = options.header_timeout

    def buildProtocol(self, addr: Any) -> Any:
        protocol = http.HTTPFactory.buildProtocol(self, addr)
        protocol.requestFactory = _LimitedRequest
        return protocol

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]
