"""What the server and its Daphne runner share: ASGI types and the server's options.

Its own module so that :mod:`qrc.transit.server` (which loads Daphne only when it serves)
and :mod:`qrc.transit._daphne` both depend on it and not on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ASGIApp", "Message", "ReadyHook", "Scope", "ServerOptions"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
ReadyHook = Callable[[list[tuple[str, int]]], None]


@dataclass(frozen=True)
class ServerOptions:
    """Tuning for :func:`serve` (the defaults suit the service)."""

    drain_timeout: float = 30.0
    """Seconds in-flight requests get to finish after SIGTERM/SIGINT."""
    idle_timeout: float = 75.0
    """Seconds a connection may stay silent (idle keep-alive, slow clients, handshakes)."""
    header_timeout: float = 15.0
    """Seconds a client has to send a request line and its headers, counted from the
    connection (TLS handshake included) or from the first byte of a later request on a
    kept-alive connection. A client that dribbles headers is closed (408) when it runs out."""
    max_connections_per_source: int | None = 256
    """Open connections one source address may hold; more are closed at once (None: no
    limit). Behind a TLS terminator on loopback every client has the terminator's address."""
    max_connections: int | None = 4096
    """Open connections in all; more are closed at once (None: no limit)."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Larger request bodies are refused with 413 before they reach the application."""
    http_timeout: float | None = None
    """Seconds an application may take to answer (None: no limit)."""
    server_name: str = "qrc"
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT``: several worker processes share one port, and the kernel
    spreads connections over them (``qrc serve --workers``)."""
