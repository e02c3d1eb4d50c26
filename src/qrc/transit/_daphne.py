"""The Twisted and Daphne side of :func:`qrc.transit.server.serve` (internal).

Import only after ``daphne.server``, which installs Twisted's asyncio reactor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from daphne.access import AccessLogGenerator
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory
from OpenSSL import SSL
from twisted import logger as _logger
from twisted.internet import defer
from twisted.internet import endpoints as _endpoints
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import http as _http
from zope.interface import implementer  # type: ignore[import-untyped]

from qrc.transit import tls as pqtls
from qrc.transit.listener import ListenerTLS
from qrc.transit.threads import hold_worker_threads

if TYPE_CHECKING:
    from qrc.transit.asgi import ASGIApp, Message, ReadyHook, Scope, ServerOptions

__all__ = ["Runner"]

_log = logging.getLogger("qrc.transit.server")
_LIFESPAN_TIMEOUT: Final = 60.0
_DRAIN_POLL: Final = 0.05
_CLOSE_GRACE: Final = 1.0
# Bytes of an over-limit body we read and drop (so the client can read our 413) before
# giving up on the connection.
_DISCARD_LIMIT: Final = 64 * 1024 * 1024
# Seconds we keep reading (and dropping) an over-limit body after answering 413, so that
# the client reads the answer rather than a reset, before closing the connection.
_LINGER: Final = 2.0
# Twisted's annotations are partial (untyped calls, zope interfaces); these modules are
# used as untyped so that the rest of this file can stay strictly checked.
reactor: Any = _reactor
http: Any = _http
endpoints: Any = _endpoints
twisted_logger: Any = _logger


@implementer(IOpenSSLServerConnectionCreator)
class _ConnectionCreator:
    """Hands Twisted a connection on our own pyOpenSSL context (groups, hooks, ML-DSA)."""

    def __init__(self, context: SSL.Context | ListenerTLS) -> None:
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        context = self._context
        if isinstance(context, ListenerTLS):
            # The listener's current context: renewed certificates and a changed TLS mode
            # apply to new handshakes; open connections keep theirs.
            return SSL.Connection(context.context, None)
        return SSL.Connection(context, None)


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


class _Request(WebRequest):  # type: ignore[misc]
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


class _Channel(http.HTTPChannel):  # type: ignore[misc]
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
            self._close_call = reactor.callLater(_CLOSE_GRACE, abort)

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


class _HTTPFactory(HTTPFactory):  # type: ignore[misc]
    def __init__(self, server: Runner, options: ServerOptions) -> None:
        super().__init__(server)
        self.protocol = _Channel
        self.timeOut = options.idle_timeout
        self.max_body_bytes = options.max_body_bytes
        self.header_timeout = options.header_timeout

    def buildProtocol(self, addr: Any) -> Any:
        protocol = http.HTTPFactory.buildProtocol(self, addr)
        protocol.requestFactory = _Request
        return protocol

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]


class _Lifespan:
    """Runs the ASGI lifespan protocol, which Daphne does not, and shares its state."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._state: dict[str, Any] = {}
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._stopped: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            # ASGI: each request gets a shallow copy of the state lifespan filled in.
            scope.setdefault("state", dict(self._state))
        await self._app(scope, receive, send)

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        self._stopped = stopped = loop.create_future()
        self._task = loop.create_task(self._run(started, stopped))
        await self._queue.put({"type": "lifespan.startup"})
        await asyncio.wait_for(asyncio.shield(started), _LIFESPAN_TIMEOUT)

    async def shutdown(self) -> None:
        if self._task is None or self._task.done() or self._stopped is None:
            return
        await self._queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), _LIFESPAN_TIMEOUT)
        except (TimeoutError, RuntimeError) as exc:
            _log.error("application shutdown failed: %s", exc)

    async def _run(self, started: asyncio.Future[None], stopped: asyncio.Future[None]) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self._state

        async def send(message: Message) -> None:
            kind = message["type"]
            future = started if kind.startswith("lifespan.startup.") else stopped
            if future.done():
                return
            if kind.endswith(".failed"):
                future.set_exception(RuntimeError(message.get("message") or kind))
            else:
                future.set_result(None)

        try:
            await self._app(scope, self._queue.get, send)
        except Exception as exc:
            if not started.done():
                # ASGI: an application that raises at once does not support lifespan.
                _log.debug("application does not support lifespan: %r", exc)
            else:
                _log.error("application lifespan failed: %r", exc)
        finally:
            for future in (started, stopped):
                if not future.done():
                    future.set_result(None)


class _AccessLog(AccessLogGenerator):  # type: ignore[misc]
    """Daphne's access log with control characters escaped (a path may carry them)."""

    def write_entry(self, host: Any, date: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        super().write_entry(_printable(str(host)), date, _printable(str(request)), *args, **kwargs)


def _printable(text: str, limit: int = 2000) -> str:
    text = text[:limit]
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029"
        else c
        for c in text
    )


def _route_twisted_logs() -> None:
    # Twisted logs every connection at info level; warnings and errors go to logging.
    observer = twisted_logger.FilteringLogObserver(
        twisted_logger.STDLibLogObserver(name="twisted"),
        [twisted_logger.LogLevelFilterPredicate(defaultLogLevel=twisted_logger.LogLevel.warn)],
    )
    twisted_logger.globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


class Runner(Server):  # type: ignore[misc]
    """Daphne's server with our endpoint, lifespan, draining shutdown and limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        context: SSL.Context | ListenerTLS | None,
        options: ServerOptions,
        on_ready: ReadyHook | None,
        access_log: TextIO | None,
    ) -> None:
        self._lifespan = _Lifespan(app)
        super().__init__(
            application=self._lifespan,
            # Daphne insists on endpoint strings; ours are built in _start.
            endpoints=[f"{'ssl' if context else 'tcp'}:{port}:interface={host}"],
            signal_handlers=False,
            action_logger=_AccessLog(access_log) if access_log else None,
            http_timeout=options.http_timeout,
            server_name=options.server_name,
            verbosity=0,
        )
        self._host, self._port, self._context = host, port, context
        self._options = options
        self._on_ready = on_ready
        self._ports: list[Any] = []
        self._channels: set[_Channel] = set()
        self._per_source: dict[str, int] = {}
        self._source_of: dict[_Channel, str] = {}
        self._closing: dict[_Channel, float] = {}
        self._draining = False
        self._deadline = 0.0
        self._error: BaseException | None = None
        self._worker_threads: asyncio.Task[None] | None = None

    # -- connection tracking (called by _Channel)
    def channel_opened(self, channel: _Channel) -> bool:
        """Track a new connection; ``False`` if it was refused (and is being closed)."""
        self._channels.add(channel)
        peer = channel.transport.getPeer() if channel.transport is not None else None
        source = str(getattr(peer, "host", "?"))
        self._source_of[channel] = source
        self._per_source[source] = self._per_source.get(source, 0) + 1
        if self._draining:
            self._closing[channel] = time.monotonic()
            channel.loseConnection()
            return False
        per_source, overall = (
            self._options.max_connections_per_source,
            self._options.max_connections,
        )
        if (per_source is not None and self._per_source[source] > per_source) or (
            overall is not None and len(self._channels) > overall
        ):
            _log.warning("refusing a connection from %s: too many open", _printable(source))
            channel.transport.abortConnection()
            return False
        return True

    def channel_closed(self, channel: _Channel) -> None:
        self._channels.discard(channel)
        self._closing.pop(channel, None)
        source = self._source_of.pop(channel, None)
        if source is not None:
            left = self._per_source.get(source, 1) - 1
            if left > 0:
                self._per_source[source] = left
            else:
                self._per_source.pop(source, None)

    # -- running
    def run(self) -> None:
        self.connections: dict[Any, dict[str, Any]] = {}
        self.http_factory = _HTTPFactory(self, self._options)
        self.ws_factory = WebSocketFactory(self, server=self.server_name)
        self.ws_factory.setProtocolOptions(
            autoPingTimeout=self.ping_timeout,
            allowNullOrigin=True,
            openHandshakeTimeout=self.websocket_handshake_timeout,
            maxMessagePayloadSize=self.websocket_max_message_size,
            maxFramePayloadSize=self.websocket_max_frame_size,
        )
        _route_twisted_logs()
        loop = reactor._asyncioEventloop
        asyncio.set_event_loop(loop)
        reactor.callLater(1, self.application_checker)
        reactor.callLater(2, self.timeout_checker)
        reactor.addSystemEventTrigger("before", "shutdown", self.kill_all_applications)
        reactor.callWhenRunning(lambda: loop.create_task(self._start()))
        reactor.run(installSignalHandlers=False)
        if self._error is not None:
            raise self._error

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._worker_threads = hold_worker_threads()
        try:
            await self._lifespan.startup()
            if self._options.reuse_port:
                port = self._listen_shared()
            elif self._context is not None:
                endpoint: Any = endpoints.SSL4ServerEndpoint(
                    reactor, self._port, _ConnectionCreator(self._context), interface=self._host
                )
                port = await endpoint.listen(self.http_factory).asFuture(loop)
            else:
                endpoint = endpoints.TCP4ServerEndpoint(reactor, self._port, interface=self._host)
                port = await endpoint.listen(self.http_factory).asFuture(loop)
        except Exception as exc:
            self._error = exc if isinstance(exc, OSError) else RuntimeError(f"startup: {exc}")
            await self._lifespan.shutdown()
            reactor.stop()
            return
        self._ports.append(port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        address = port.getHost()
        _log.info("listening on %s:%s", address.host, address.port)
        if self._on_ready is not None:
            self._on_ready([(address.host, address.port)])

    def _listen_shared(self) -> Any:
        """Listen on a socket with ``SO_REUSEPORT`` (other workers bind the same port)."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._host, self._port))
            sock.listen(1024)
            sock.setblocking(False)
            factory: Any = self.http_factory
            if self._context is not None:
                creator = cast(IOpenSSLServerConnectionCreator, _ConnectionCreator(self._context))
                factory = TLSMemoryBIOFactory(creator, False, factory)
            # Twisted duplicates the descriptor: ours is closed below either way.
            return reactor.adoptStreamPort(sock.fileno(), family, factory)
        finally:
            sock.close()

    def _on_signal(self) -> None:
        if self._draining:
            _log.warning("second signal: stopping now")
            self._deadline = 0.0
            return
        _log.info("shutting down: draining connections")
        self._draining = True
        self._deadline = time.monotonic() + self._options.drain_timeout
        for port in self._ports:
            port.stopListening()
        self._drain_step()

    def _busy(self) -> list[Any]:
        """Requests not yet answered, or whose application is still running."""
        busy = []
        for protocol, details in list(self.connections.items()):
            instance = details.get("application_instance")
            if "disconnected" not in details or (instance is not None and not instance.done()):
                busy.append(protocol)
        return busy

    def _drain_step(self) -> None:
        busy = self._busy()
        busy_channels = set()
        for request in busy:
            channel = getattr(request, "channel", None)
            if channel is None:
                continue
            busy_channels.add(channel)
            channel.persistent = False  # close once this response is out
            if not getattr(request, "startedWriting", True):
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        for channel in list(self._channels):
            idle = channel not in busy_channels and not channel.requests
            if idle and channel not in self._closing:
                self._closing[channel] = time.monotonic()
                channel.loseConnection()
        for channel, since in list(self._closing.items()):
            # A TLS close waits for the peer's close_notify; an idle client may never send it.
            if time.monotonic() - since > _CLOSE_GRACE and channel.transport is not None:
                channel.transport.abortConnection()
        done = not busy and not self._channels
        if done or time.monotonic() >= self._deadline:
            if not done:
                _log.warning(
                    "drain timeout: %d requests and %d connections left",
                    len(busy),
                    len(self._channels),
                )
            loop = reactor._asyncioEventloop
            loop.create_task(self._finish())
        else:
            reactor.callLater(_DRAIN_POLL, self._drain_step)

    async def _finish(self) -> None:
        await self.kill_all_applications().asFuture(asyncio.get_running_loop())
        await self._lifespan.shutdown()
        if self._worker_threads is not None:
            self._worker_threads.cancel()  # anyio's idle worker threads end with it
        for channel in list(self._channels):
            channel.transport.abortConnection()
        reactor.stop()

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        # Tell the application how this connection was protected (qrc's own ASGI
        # extension; the standard "tls" extension wants numeric cipher suite IDs).
        channel = getattr(protocol, "channel", None)
        transport = getattr(channel, "transport", None)
        handle = transport.getHandle() if transport is not None else None
        if isinstance(handle, SSL.Connection):
            details = {
                "group": pqtls.negotiated_group(handle),
                "cipher": handle.get_cipher_name(),
                "version": handle.get_protocol_version_name(),
            }
            peer = handle.get_peer_certificate(as_cryptography=True)
            if peer is not None:
                # A client certificate that OpenSSL verified during the handshake (mutual TLS).
                details["client_serial"] = format(peer.serial_number, "x")
                details["client_subject"] = peer.subject.rfc4514_string()
            scope.setdefault("extensions", {})["qrc.tls"] = details
        return super().create_application(protocol, scope)

    def kill_all_applications(self) -> Any:
        # Daphne's version assumes every connection has an application instance; a request
        # whose headers never completed has none.
        pending = []
        for details in self.connections.values():
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                instance.cancel()
                pending.append(instance)
        deferred = defer.Deferred.fromFuture(asyncio.gather(*pending, return_exceptions=True))
        deferred.addErrback(lambda _failure: None)
        return deferred
