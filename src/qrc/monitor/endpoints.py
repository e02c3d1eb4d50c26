"""Probe TLS endpoints that an operator names: what they negotiate and what they present.

One TLS 1.3 handshake per endpoint, offering the post-quantum groups first and the classical
ones after (``hybrid-preferred``), so the answer shows what the server *chooses*. The chain is
read, not trusted: an inventory must also list endpoints with certificates nobody trusts. A
failed handshake (a TLS 1.2-only server, say) is recorded as a finding, not raised.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL

from qrc.monitor.scan import FoundAsset, certificate_asset
from qrc.transit.tls import client_context, is_pq_group, negotiated_group

__all__ = ["EndpointProbe", "parse_endpoint", "probe_endpoint"]

_TIMEOUT = 5.0


@dataclass(frozen=True)
class EndpointProbe:
    """What one handshake with ``host:port`` showed."""

    endpoint: str
    group: str | None = None
    cipher: str | None = None
    protocol: str | None = None
    certificates: list[FoundAsset] = field(default_factory=list)
    error: str | None = None

    @property
    def post_quantum(self) -> bool:
        return is_pq_group(self.group)

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "group": self.group,
            "cipher": self.cipher,
            "protocol": self.protocol,
            "post_quantum": self.post_quantum,
            "certificates": [c.as_dict() for c in self.certificates],
            "error": self.error,
        }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _handshake(conn: SSL.Connection, sock: socket.socket, deadline: float) -> None:
    """Handshake on a non-blocking socket, waiting for it at most until ``deadline``."""
    while True:
        try:
            conn.do_handshake()
            return
        except SSL.WantReadError:
            ready = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]
        except SSL.WantWriteError:
            ready = select.select([], [sock], [], max(0.0, deadline - time.monotonic()))[1]
        if not ready:
            raise TimeoutError("no answer in time")


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (``ValueError`` otherwise)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def probe_endpoint(text: str, *, timeout: float = _TIMEOUT) -> EndpointProbe:
    """Connect to ``text`` (``host:port``), handshake once, and describe what was offered."""
    host, port = parse_endpoint(text)
    ctx = client_context(None, mode="hybrid-preferred")
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setblocking(False)
    except OSError as exc:
        return EndpointProbe(text, error=f"connect: {exc.strerror or exc}")
    with sock:
        conn = SSL.Connection(ctx, sock)
        if not _is_ip(host):  # SNI carries names only
            conn.set_tlsext_host_name(host.encode("idna"))
        conn.set_connect_state()
        try:
            _handshake(conn, sock, time.monotonic() + timeout)
        except (SSL.Error, OSError) as exc:
            return EndpointProbe(text, error=f"handshake: {exc or type(exc).__name__}")
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        probe = EndpointProbe(
            text,
            group=negotiated_group(conn),
            cipher=conn.get_cipher_name(),
            protocol=conn.get_protocol_version_name(),
            certificates=[certificate_asset(cert, f"tls://{text}") for cert in chain],
        )
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()
        return probe
