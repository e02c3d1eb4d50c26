"""Serve an ASGI application over post-quantum TLS (or plain HTTP on loopback).

Daphne's HTTP protocol on Twisted does the HTTP/1.1 and ASGI work; we give it our own
listening endpoint so that TLS uses the pyOpenSSL context of :mod:`qrc.transit.tls`
(TLS 1.3, ``X25519MLKEM768``, ML-DSA certificate) instead of Twisted's defaults. Daphne
needs Twisted's asyncio reactor (ASGI applications are asyncio code); importing
``daphne.server`` installs it, so this module imports Daphne only inside :func:`serve`.

Added around Daphne:

- ASGI lifespan (startup/shutdown, with lifespan ``state`` passed to requests), which
  Daphne does not run: FastAPI ``lifespan`` handlers work.
- Graceful shutdown on SIGTERM/SIGINT: stop listening, let in-flight requests finish
  (answering them with ``Connection: close``), close idle keep-alive connections, then run
  lifespan shutdown and stop. After ``drain_timeout`` seconds, or on a second signal,
  whatever is left is cancelled.
- A hook per TLS handshake (negotiated group, cipher) and per refused handshake (alert),
  for metrics and security events.
- An idle timeout per connection and a request-body limit answered with 413.
- ``scope["extensions"]["qrc.tls"]`` on requests over TLS: ``{"group", "cipher",
  "version"}`` of the connection (absent over plain HTTP).

:func:`serve` runs Twisted's reactor, which can run once per process.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, TextIO

from qrc.transit import tls as pqtls
from qrc.transit.asgi import ASGIApp, ReadyHook, ServerOptions
from qrc.transit.ca import TLSFiles
from qrc.transit.listener import ListenerTLS

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = ["ASGIApp", "ServerOptions", "serve"]

_log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8443,
    tls: TLSFiles | None = None,
    *,
    mode: pqtls.Mode = "pq-only",
    on_handshake: pqtls.HandshakeHook | None = None,
    on_handshake_failure: pqtls.HandshakeFailureHook | None = None,
    on_ready: ReadyHook | None = None,
    options: ServerOptions | None = None,
    access_log: TextIO | None = None,
    allow_plain_on_network: bool = False,
    listener: ListenerTLS | None = None,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then shut down gracefully and return.

    ``tls=None`` serves plain HTTP, only on a loopback address unless
    ``allow_plain_on_network`` (for a TLS terminator in front). ``port=0`` picks a free
    port; ``on_ready`` receives the bound ``(host, port)`` pairs once the application has
    started and the port accepts connections. Must run in the main thread (signals), once
    per process (Twisted's reactor cannot be restarted). Raises OSError if the port cannot
    be bound and RuntimeError if the application's lifespan startup fails.

    ``listener`` (instead of ``tls``): a :class:`~qrc.transit.listener.ListenerTLS` whose
    current context each new connection uses (both certificate families, handshake records,
    certificates and TLS mode replaced while serving).
    """
    if tls is None and listener is None and not _is_loopback(host) and not allow_plain_on_network:
        raise ValueError(f"plain HTTP is served on loopback only, not on {host!r}")
    context: SSL.Context | ListenerTLS | None = listener
    if listener is None and tls is not None:
        context = pqtls.server_context(
            tls.cert,
            tls.key,
            mode=mode,
            on_handshake=on_handshake,
            on_handshake_failure=on_handshake_failure,
        )
    # Daphne first: importing it installs Twisted's asyncio reactor, which must happen
    # before anything imports twisted.internet.reactor.
    import daphne.server  # noqa: F401, PLC0415

    from qrc.transit import _daphne  # noqa: PLC0415

    runner = _daphne.Runner(
        app,
        host=host,
        port=port,
        context=context,
        options=options or ServerOptions(),
        on_ready=on_ready,
        access_log=access_log,
    )
    runner.run()
