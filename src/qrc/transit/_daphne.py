"""The Twisted and Daphne side of :func:`qrc.transit.server.serve` (internal): the runner
(listening, connection limits, draining on shutdown), TLS on our own pyOpenSSL contexts and
the ASGI lifespan; the HTTP connections and their limits are in :mod:`._daphne_http`.

Import only after ``daphne.server``, which installs Twisted's asyncio reactor.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from daphne.access import AccessLogGenerator
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
from qrc.transit._daphne_http import CLOSE_GRACE, HTTPChannelFactory, LimitedChannel
from qrc.transit.listener import ListenerTLS
from qrc.transit.threads import hold_worker_threads

if TYPE_CHECKING:
    from qrc.transit.asgi import ASGIApp, Message, ReadyHook, Scope, ServerOptions

__all__ = ["Runner"]

_log = logging.getLogger("qrc.transit.server")
_LIFESPAN_TIMEOUT: Final = 60.0
_DRAIN_POLL: Final = 0.05
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
        self._channels: set[LimitedChannel] = set()
        self._per_source: dict[str, int] = {}
        self._source_of: dict[LimitedChannel, str] = {}
        self._closing: dict[LimitedChannel, float] = {}
        self._draining = False
        self._deadline = 0.0
        self._error: BaseException | None = None
        self._worker_threads: asyncio.Task[None] | None = None

    # -- connection tracking (called by LimitedChannel)
    def channel_opened(self, channel: LimitedChannel) -> bool:
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

    def channel_closed(self, channel: LimitedChannel) -> None:
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
        self.http_factory = HTTPChannelFactory(self, self._options)
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
            if time.monotonic() - since > CLOSE_GRACE and channel.transport is not None:
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
