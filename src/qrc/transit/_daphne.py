"""The Twisted and Daphne side of :func:`qrc.transit.server.serve` (internal).

Import only after ``daphne.server``, which installs Twisted's asyncio reactor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

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
from twisted.web import http as _http
from zope.interface import implementer  # type: ignore[import-untyped]

from qrc.transit import tls as pqtls

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
# Twisted's annotations are partial (untyped calls, zope interfaces); these modules are
# used as untyped so that the rest of this file can stay strictly checked.
reactor: Any = _reactor
http: Any = _http
endpoints: Any = _endpoints
twisted_logger: Any = _logger


@implementer(IOpenSSLServerConnectionCreator)
class _ConnectionCreator:
    """Hands Twisted a connection on our own pyOpenSSL context (groups, hooks, ML-DSA)."""

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


class _Request(WebRequest):  # type: ignore[misc]
    """Daphne's request, with a body-size limit answered by 413 problem details."""

    _refused = False
    _received = 0

    def _limit(self) -> int:
        return int(self.channel.factory.max_body_bytes)

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._limit():
            self._refused = True
            # Twisted would otherwise spool the announced size to a temporary file.
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limit():
            self._refused = True
        if self._refused:
            if self._received > self._limit() + _DISCARD_LIMIT:
                self.channel.transport.abortConnection()
            return
        super().handleContentChunk(data)

    def process(self) -> Any:
        if not self._refused:
            return super().process()
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"the request body exceeds {self._limit()} bytes",
            }
        ).encode()
        self.channel.persistent = False
        self.setResponseCode(413)
        self.responseHeaders.setRawHeaders(b"content-type", [b"application/problem+json"])
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.setHeader(b"content-length", str(len(body)).encode())
        http.Request.write(self, body)
        self.finish()
        return None


class _Channel(http.HTTPChannel):  # type: ignore[misc]
    """An HTTP connection the runner knows about, so that shutdown can close idle ones."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.server.channel_opened(self)

    def connectionLost(self, reason: Any) -> None:
        self.factory.server.channel_closed(self)
        super().connectionLost(reason)


class _HTTPFactory(HTTPFactory):  # type: ignore[misc]
    def __init__(self, server: Runner, options: ServerOptions) -> None:
        super().__init__(server)
        self.protocol = _Channel
        self.timeOut = options.idle_timeout
        self.max_body_bytes = options.max_body_bytes

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
        context: SSL.Context | None,
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
            action_logger=AccessLogGenerator(access_log) if access_log else None,
            http_timeout=options.http_timeout,
            server_name=options.server_name,
            verbosity=0,
        )
        self._host, self._port, self._context = host, port, context
        self._options = options
        self._on_ready = on_ready
        self._ports: list[Any] = []
        self._channels: set[_Channel] = set()
        self._closing: dict[_Channel, float] = {}
        self._draining = False
        self._deadline = 0.0
        self._error: BaseException | None = None

    # -- connection tracking (called by _Channel)
    def channel_opened(self, channel: _Channel) -> None:
        self._channels.add(channel)
        if self._draining:
            self._closing[channel] = time.monotonic()
            channel.loseConnection()

    def channel_closed(self, channel: _Channel) -> None:
        self._channels.discard(channel)
        self._closing.pop(channel, None)

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
        try:
            await self._lifespan.startup()
            if self._context is not None:
                endpoint: Any = endpoints.SSL4ServerEndpoint(
                    reactor, self._port, _ConnectionCreator(self._context), interface=self._host
                )
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
            scope.setdefault("extensions", {})["qrc.tls"] = {
                "group": pqtls.negotiated_group(handle),
                "cipher": handle.get_cipher_name(),
                "version": handle.get_protocol_version_name(),
            }
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
