"""A post-quantum mutual-TLS tunnel for any TCP service (like stunnel or ghostunnel).

Two ends, one asyncio loop each::

    app --TCP--> [client end] ==TLS 1.3, X25519MLKEM768, mutual==> [server end] --TCP--> service

The **server end** accepts TLS, requires a client certificate from the CA and verifies it,
then connects to the forwarded address. The **client end** accepts plain TCP on a local
address, connects to the server end, presents its certificate and verifies the server's
(chain and host name). Only ``X25519MLKEM768`` is offered and accepted: a classical-only
peer fails the handshake.

TLS runs on pyOpenSSL memory BIOs driven by asyncio protocols (:mod:`qrc.transit.tunnel_io`),
so that one thread serves every connection and an ``SSL`` object is never used by two
threads at once (OpenSSL does not allow concurrent reads and writes on one). Per connection:

- **Half-close**: EOF from one side is passed on (``close_notify`` on the TLS side, a TCP
  ``FIN`` on the plain side) and the other direction stays open until it ends too.
  TCP EOF on the TLS side *without* ``close_notify`` is a truncation: the connection is
  aborted rather than passed on as a clean end of data.
- **Backpressure**: when one side's send buffer passes 512 KiB, the other side stops
  reading until it drains.
- **Idle timeout**: no byte either way for ``idle_timeout`` seconds closes the connection.
- **Connection limit**: beyond ``max_connections`` a new connection is closed at once and
  counted.

Every refused peer (no certificate, untrusted or expired certificate, wrong host name,
classical-only key exchange, handshake timeout) is logged, counted in
:attr:`TunnelStats.refused` by reason, and passed to ``on_refused`` (the key service's
security events through :func:`qrc.transit.tunnel_events.security_event_recorder`).
``SIGHUP`` re-reads certificate, key, CA and CRLs for new connections (:meth:`Tunnel.run`
with ``reload``), and so does a change to any of those files (``watch``: a certificate
renewed or a CRL published takes effect without a signal).

With CRLs (``crls``: files from the private CA, ``qrc ca crl``), each end checks the peer's
certificate against its issuer's CRL and **fails closed**: a revoked certificate, a CRL
missing for the issuer, expired or badly signed refuses the peer.

``SIGTERM``/``SIGINT`` stop accepting, give open connections ``drain_timeout`` seconds to
finish, then close what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography import x509
from OpenSSL import SSL, crypto

from qrc.transit import tls
from qrc.transit.tunnel_io import Relay, Side, TLSStream, Truncated

__all__ = [
    "GROUP",
    "RefusedHook",
    "Tunnel",
    "TunnelConfig",
    "TunnelStats",
    "client_context",
    "parse_address",
    "server_context",
]

GROUP: Final = "X25519MLKEM768"
_log = logging.getLogger(__name__)

RefusedHook = Callable[[str, str, str], None]
"""Called as ``hook(peer, reason, detail)`` for each refused peer."""

# X.509 verification errors (OpenSSL's X509_V_ERR_*) -> reason recorded.
_VERIFY_REASONS: Final = {
    9: "certificate_not_yet_valid",
    10: "certificate_expired",
    18: "untrusted_certificate",  # self-signed leaf
    19: "untrusted_certificate",  # self-signed in chain
    20: "untrusted_certificate",  # unable to get local issuer
    21: "untrusted_certificate",
    3: "crl_unavailable",  # no CRL for the peer's issuer
    8: "crl_invalid",  # CRL signature does not verify
    11: "crl_not_yet_valid",
    12: "crl_expired",
    23: "certificate_revoked",
    33: "crl_unavailable",  # unable to get the CRL's issuer
    26: "certificate_wrong_purpose",
    62: "wrong_host_name",
}


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _load_identity(
    ctx: SSL.Context, cert: str | os.PathLike[str], key: str | os.PathLike[str]
) -> None:
    try:
        ctx.use_certificate_chain_file(os.fspath(cert))
        ctx.use_privatekey_file(os.fspath(key))
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise tls.TLSConfigError(f"cannot use {cert} / {key}: {exc}") from None


_CRL_BLOCK: Final = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


def _add_crls(ctx: SSL.Context, crls: Sequence[str | os.PathLike[str]]) -> None:
    """Check peers against ``crls`` (PEM files of one or more CRLs, or DER), fail closed."""
    if not crls:
        return
    store = ctx.get_cert_store()
    if store is None:  # pragma: no cover - a context always has one
        raise tls.TLSConfigError("the TLS context has no certificate store")
    for path in crls:
        data = Path(path).read_bytes()
        try:
            blocks = _CRL_BLOCK.findall(data)
            found = [x509.load_pem_x509_crl(b) for b in blocks] or [x509.load_der_x509_crl(data)]
        except ValueError as exc:
            raise tls.TLSConfigError(f"{path} is not a CRL (PEM or DER): {exc}") from None
        for crl in found:
            store.add_crl(crl)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)


def server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str],
    crls: Sequence[str | os.PathLike[str]] = (),
) -> SSL.Context:
    """The server end's context: TLS 1.3, ``X25519MLKEM768`` only, a client certificate
    from ``ca`` required (and not revoked, with ``crls``)."""
    ctx = tls.server_context(cert, key, groups=(GROUP,))
    try:
        ctx.load_verify_locations(os.fspath(ca))
    except SSL.Error as exc:
        raise tls.TLSConfigError(f"cannot load CA certificates from {ca}: {exc}") from None
    _add_crls(ctx, crls)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _keep_verdict)
    # No resumption: every connection proves possession of its certificate's key again.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_options(SSL.OP_NO_TICKET)
    _whole_writes(ctx)
    return ctx


def client_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str],
    crls: Sequence[str | os.PathLike[str]] = (),
) -> SSL.Context:
    """The client end's context: ``X25519MLKEM768`` only, presents ``cert``, trusts ``ca``
    (and checks the server's certificate against ``crls``)."""
    ctx = tls.client_context(ca, groups=(GROUP,))
    _load_identity(ctx, cert, key)
    _add_crls(ctx, crls)
    _whole_writes(ctx)
    return ctx


# SSL_MODE_ENABLE_PARTIAL_WRITE (openssl/ssl.h), which pyOpenSSL turns on for every context.
_MODE_ENABLE_PARTIAL_WRITE: Final = 0x1


def _whole_writes(ctx: SSL.Context) -> None:
    """One ``SSL_write`` seals all it is given (not one record per call): the tunnel writes
    to a memory BIO, which never blocks, so a partial write only costs a Python call per
    16 KiB record."""
    ctx.clear_mode(_MODE_ENABLE_PARTIAL_WRITE)


def _keep_verdict(conn: SSL.Connection, _cert: Any, errno: int, _depth: int, ok: int) -> bool:
    if not ok and conn.get_app_data() is None:
        conn.set_app_data(errno)  # the first failure says why
    return bool(ok)


@dataclass
class TunnelStats:
    """Counters of one tunnel end (read them from the loop's thread or after it stopped)."""

    accepted: int = 0
    active: int = 0
    completed: int = 0
    over_limit: int = 0
    idle_closed: int = 0
    truncated: int = 0
    errors: int = 0
    reloads: int = 0
    bytes_to_tls: int = 0
    bytes_from_tls: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "refused"}
        out["refused"] = dict(self.refused)
        return out


@dataclass(frozen=True)
class TunnelConfig:
    """One tunnel end. ``role="server"``: TLS in on ``listen``, plain out to ``target``;
    ``role="client"``: plain in on ``listen``, TLS out to ``target`` (whose certificate must
    name ``server_name``, by default the target's host)."""

    role: Literal["server", "client"]
    listen: tuple[str, int]
    target: tuple[str, int]
    context: SSL.Context
    server_name: str | None = None
    max_connections: int = 1000
    idle_timeout: float = 300.0
    handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    drain_timeout: float = 10.0


class Tunnel:
    """One tunnel end on the running asyncio loop: :meth:`start`, then :meth:`stop`
    (or :meth:`run` to do both around a signal)."""

    def __init__(self, config: TunnelConfig, *, on_refused: RefusedHook | None = None) -> None:
        self.config = config
        self.stats = TunnelStats()
        self._on_refused = on_refused
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._address: tuple[str, int] | None = None
        self._context = config.context

    @property
    def address(self) -> tuple[str, int]:
        """The bound listening address (after :meth:`start`)."""
        if self._address is None:
            raise RuntimeError("the tunnel has not started")
        return self._address

    async def start(self) -> None:
        host, port = self.config.listen
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Side(self._accept), host, port, backlog=1024
        )
        bound = self._server.sockets[0].getsockname()
        self._address = (str(bound[0]), int(bound[1]))

    async def stop(self) -> None:
        """Stop accepting; wait up to ``drain_timeout`` for open connections, close the rest."""
        if self._server is not None:
            self._server.close()  # stops accepting; wait_closed() comes after the drain
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self.config.drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            # From Python 3.12 on this also waits for the server's connections to close.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    def use_context(self, context: SSL.Context) -> None:
        """Use ``context`` for connections from now on (renewed certificate, new CA
        bundle); open connections keep theirs."""
        self._context = context

    async def run(
        self,
        on_ready: Callable[[tuple[str, int]], None] | None = None,
        *,
        reload: Callable[[], SSL.Context] | None = None,
        watch: Sequence[str | os.PathLike[str]] = (),
        watch_interval: float = 30.0,
    ) -> None:
        """Serve until SIGTERM or SIGINT, then stop cleanly. With ``reload``, SIGHUP builds
        a new context with it (re-reading certificate, key and CA files) for new
        connections, and so does a change of any file in ``watch`` (looked at every
        ``watch_interval`` seconds); if that fails, the old context stays and the error is
        logged."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        watcher: asyncio.Task[None] | None = None
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, self._reload, reload)
            if watch:
                watcher = asyncio.create_task(self._watch(reload, watch, watch_interval))
        await self.start()
        if on_ready is not None:
            on_ready(self.address)
        await stopping.wait()
        if watcher is not None:
            watcher.cancel()
        _log.info("tunnel stopping: %d connection(s) open", self.stats.active)
        await self.stop()

    async def _watch(
        self,
        build: Callable[[], SSL.Context],
        paths: Sequence[str | os.PathLike[str]],
        interval: float,
    ) -> None:
        def stamps() -> list[tuple[int, int] | None]:
            out: list[tuple[int, int] | None] = []
            for path in paths:
                try:
                    info = os.stat(path)
                except OSError:
                    out.append(None)
                else:
                    out.append((info.st_mtime_ns, info.st_ino))
            return out

        seen = stamps()
        while True:
            await asyncio.sleep(interval)
            now = stamps()
            if now != seen:
                seen = now
                self._reload(build)

    def _reload(self, build: Callable[[], SSL.Context]) -> None:
        try:
            self.use_context(build())
        except (tls.TLSConfigError, OSError, SSL.Error) as exc:
            _log.error("tunnel: reload failed, keeping the current certificate: %s", exc)
            return
        self.stats.reloads += 1
        _log.warning("tunnel: certificate, key, CA and CRLs reloaded for new connections")

    # ------------------------------------------------------------------ connections
    def _accept(self, side: Side) -> None:
        if self.stats.active >= self.config.max_connections:
            self.stats.over_limit += 1
            _log.warning("tunnel at its limit of %d connections", self.config.max_connections)
            side.abort()
            return
        self.stats.accepted += 1
        self.stats.active += 1
        task = asyncio.ensure_future(self._connection(side))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, side: Side) -> None:
        peer = _peer_name(side)
        other: Side | None = None
        try:
            if self.config.role == "server":
                stream = await self._handshake(side, peer)
                if stream is None:
                    return
                other = await self._connect()
                plain = other
            else:
                other = await self._connect()
                stream = await self._handshake(other, _peer_name(other))
                if stream is None:
                    return
                plain = side
            failure = await self._relay(stream, plain)
            if failure is None:
                self.stats.completed += 1
            elif isinstance(failure, Truncated):
                self.stats.truncated += 1
                _log.warning("tunnel: %s ended TLS without close_notify; aborted", peer)
            else:
                self.stats.errors += 1
                _log.info("tunnel: connection from %s ended: %r", peer, failure)
        except (OSError, TimeoutError) as exc:
            self.stats.errors += 1
            _log.info("tunnel: connection from %s ended: %r", peer, exc)
        finally:
            self.stats.active -= 1
            # A refused handshake ends here: close() still sends the alert, then FIN.
            for s in (side, other):
                if s is not None and s.transport is not None and not s.transport.is_closing():
                    s.transport.close()

    async def _connect(self) -> Side:
        loop = asyncio.get_running_loop()
        _transport, side = await asyncio.wait_for(
            loop.create_connection(Side, *self.config.target), self.config.connect_timeout
        )
        return side

    async def _handshake(self, side: Side, peer: str) -> TLSStream | None:
        if self.config.role == "server":
            conn = SSL.Connection(self._context, None)
            conn.set_accept_state()
        else:
            name = self.config.server_name or self.config.target[0]
            conn = tls.client_connection(self._context, None, name)
        stream = TLSStream(conn, side)
        try:
            await asyncio.wait_for(stream.handshake(), self.config.handshake_timeout)
        except TimeoutError:
            self._refuse(peer, "handshake_timeout", "")
            return None
        except (SSL.Error, OSError, Truncated) as exc:
            with contextlib.suppress(Exception):
                stream.flush()  # the alert, if any
            self._refuse(peer, _reason(stream.conn, exc), _detail(exc))
            return None
        group = tls.negotiated_group(stream.conn)
        if group != GROUP:  # belt and braces: the context allows nothing else
            self._refuse(peer, "classical_key_exchange", str(group))
            return None
        cert = stream.conn.get_peer_certificate(as_cryptography=True)
        subject = cert.subject.rfc4514_string() if cert is not None else "?"
        _log.info("tunnel: %s authenticated as %s over %s", peer, subject, group)
        return stream

    def _refuse(self, peer: str, reason: str, detail: str) -> None:
        self.stats.refused[reason] += 1
        _log.warning("tunnel (%s end): refused %s: %s %s", self.config.role, peer, reason, detail)
        if self._on_refused is not None:
            # The hook may block (a database write): off the loop's thread.
            hook = self._on_refused
            future = asyncio.get_running_loop().run_in_executor(None, hook, peer, reason, detail)
            future.add_done_callback(_log_hook_failure)

    async def _relay(self, stream: TLSStream, plain: Side) -> BaseException | None:
        """Carry data until the connection ends; closes it after ``idle_timeout`` of silence."""
        relay = Relay(stream, plain)
        relay.start()
        idle = self.config.idle_timeout
        try:
            while True:
                wait = max(0.05, relay.last_activity + idle - time.monotonic())
                done, _ = await asyncio.wait({relay.done}, timeout=wait)
                if done:
                    return relay.done.result()
                if time.monotonic() - relay.last_activity >= idle:
                    self.stats.idle_closed += 1
                    _log.info("tunnel: connection idle for %.0f s, closed", idle)
                    relay.close()
                    return None
        finally:
            if not relay.done.done():  # cancelled (shutdown): close both sides
                relay.close()
            self.stats.bytes_to_tls += relay.bytes_to_tls
            self.stats.bytes_from_tls += relay.bytes_from_tls


def _log_hook_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.error("tunnel: recording a refused peer failed: %r", future.exception())


def _peer_name(side: Side) -> str:
    peer = side.transport.get_extra_info("peername") if side.transport is not None else None
    if not peer:
        return "?"
    return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"


def _reason(conn: SSL.Connection, exc: BaseException) -> str:
    errno = conn.get_app_data()
    if isinstance(errno, int) and errno:
        return _VERIFY_REASONS.get(errno, f"certificate_error_{errno}")
    text = _detail(exc).lower()
    if "peer did not return a certificate" in text or "certificate required" in text:
        return "no_certificate"
    if "no suitable key share" in text or "no shared group" in text or "handshake failure" in text:
        return "no_common_group"
    if "unknown ca" in text or "certificate verify failed" in text:
        return "untrusted_certificate"
    if "certificate expired" in text:
        return "certificate_expired"
    if isinstance(exc, Truncated | OSError):
        return "connection_closed_in_handshake"
    return "handshake_failed"


def _detail(exc: BaseException) -> str:
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        return "; ".join(str(part[-1]) for part in exc.args[0] if part)
    return repr(exc)
