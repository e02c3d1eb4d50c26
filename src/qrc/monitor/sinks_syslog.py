"""The syslog sink: RFC 5424 messages with structured data, over UDP (RFC 5426), TCP with
octet-counting framing (RFC 6587) or TLS (RFC 5425, same framing).

One message per event (``docs/event-sinks.md``, "Syslog")::

    <PRI>1 TIMESTAMP HOSTNAME qrc PROCID MSGID [qrc@32473 id="..." kind="..." ...] BOM{json}

``MSGID`` is ``SECEVT``, ``CHECKPOINT``, ``INCIDENT`` or ``DROPPED``; the structured data
names the event (delivery id, kind, type, severity, key, algorithm; origin, seq and head of
a checkpoint) so a SIEM can index it without parsing the message, which is the event's JSON
(the webhook body). 32473 is the private enterprise number RFC 5612 reserves for
documentation: the SD-ID is ours, not IANA-registered.

Syslog has no acknowledgement: over TCP or TLS a message written just before the receiver
drops the connection can be lost unseen (the webhook is the at-least-once sink); over UDP
anything can be. The checkpoints are self-authenticating (signed notes); the rest is
authenticated only by TLS.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
from datetime import UTC
from typing import Literal
from urllib.parse import urlsplit

from OpenSSL import SSL

from qrc.monitor.sinks import (
    KIND_CHECKPOINT,
    KIND_DROPPED,
    KIND_INCIDENT,
    KIND_SECURITY,
    SinkError,
    SinkEvent,
)
from qrc.transit import tls

__all__ = ["SD_ID", "SyslogAddress", "SyslogSink", "format_message", "parse_address"]

SD_ID = "qrc@32473"
APP_NAME = "qrc"
_BOM = b"\xef\xbb\xbf"
_MSGID = {
    KIND_SECURITY: "SECEVT",
    KIND_CHECKPOINT: "CHECKPOINT",
    KIND_INCIDENT: "INCIDENT",
    KIND_DROPPED: "DROPPED",
}
# RFC 5424 severities: 1 alert, 2 critical, 3 error, 4 warning, 5 notice, 6 informational.
_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5}
_MAX_UDP = 65_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Transport = Literal["udp", "tcp", "tls"]


class SyslogAddress:
    """Where the syslog receiver is: ``udp://host:514``, ``tcp://host:601``, ``tls://host:6514``."""

    def __init__(self, transport: Transport, host: str, port: int) -> None:
        self.transport: Transport = transport
        self.host = host
        self.port = port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


_DEFAULT_PORTS: dict[str, int] = {"udp": 514, "tcp": 601, "tls": 6514}


def parse_address(text: str) -> SyslogAddress:
    """Parse ``udp://host[:port]``, ``tcp://...`` or ``tls://...``.

    Raises:
        ValueError: another scheme, no host, or a bad port (the message shows the form).
    """
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme not in _DEFAULT_PORTS or not parts.hostname or port == -1 or parts.path:
        raise ValueError(
            f"the syslog address must look like udp://host:514, tcp://host:601 or "
            f"tls://host:6514, not {text!r}"
        )
    transport: Transport = "udp" if scheme == "udp" else "tcp" if scheme == "tcp" else "tls"
    return SyslogAddress(transport, parts.hostname, port or _DEFAULT_PORTS[scheme])


def _sd_value(value: object) -> str:
    """A PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped (RFC 5424), and each control character
    (line breaks included) written as the text ``\\uXXXX`` (its backslash escaped too), so no
    value can start a forged record. The JSON message keeps the exact value."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return _CONTROL.sub(lambda m: f"\\\\u{ord(m.group()):04x}", text)


def _printable(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII, no spaces, ``-`` when empty."""
    cleaned = "".join(ch for ch in text if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or "-"


def _params(event: SinkEvent) -> list[tuple[str, object]]:
    params: list[tuple[str, object]] = [
        ("id", event.id),
        ("kind", event.kind),
        ("type", event.type),
        ("severity", event.severity),
        ("node", event.node),
    ]
    data = event.data
    for name, field in (("key", "key_id"), ("alg", "algorithm"), ("subject", "subject")):
        if isinstance(data.get(field), str):
            params.append((name, data[field]))
    if event.kind == KIND_CHECKPOINT:
        params += [("origin", data["origin"]), ("seq", data["seq"]), ("head", data["head_hash"])]
    if event.kind == KIND_DROPPED:
        params.append(("count", data["count"]))
    return params


def format_message(event: SinkEvent, *, facility: int = 10, hostname: str | None = None) -> bytes:
    """The RFC 5424 message of ``event`` (``facility`` 10: security/authorization)."""
    severity = 1 if event.kind == KIND_INCIDENT else _SEVERITY.get(event.severity, 6)
    if event.kind == KIND_CHECKPOINT:
        severity = 6
    timestamp = event.time.astimezone(UTC).isoformat(timespec="microseconds")
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",
            timestamp.replace("+00:00", "Z"),
            _printable(hostname or event.node, 255),
            APP_NAME,
            _printable(str(os.getpid()), 128),
            _MSGID.get(event.kind, "EVENT"),
        )
    )
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in _params(event)) + "]"
    return (header + " " + sd + " ").encode("utf-8") + _BOM + event.to_json()


class SyslogSink:
    """Sends each event to one syslog receiver (UDP, TCP or TLS)."""

    name = "syslog"

    def __init__(
        self,
        address: SyslogAddress | str,
        *,
        facility: int = 10,
        ca_file: str | None = None,
        tls_mode: tls.Mode = "hybrid-preferred",
        timeout: float = 10.0,
    ) -> None:
        self.address = parse_address(address) if isinstance(address, str) else address
        if not 0 <= facility <= 23:
            raise ValueError("the syslog facility is a number from 0 to 23")
        self.facility = facility
        self.timeout = timeout
        self._context = (
            tls.client_context(ca_file, mode=tls_mode) if self.address.transport == "tls" else None
        )
        self._sock: socket.socket | None = None
        self._conn: SSL.Connection | None = None

    def send(self, event: SinkEvent) -> None:
        """Send ``event``'s message; :class:`SinkError` if it could not be written."""
        message = format_message(event, facility=self.facility)
        try:
            if self.address.transport == "udp":
                self._send_udp(message)
            else:
                self._send_stream(f"{len(message)} ".encode("ascii") + message)
        except (OSError, SSL.Error) as exc:
            self.close()
            raise SinkError(f"syslog {self.address}: {exc or type(exc).__name__}") from None

    def _send_udp(self, message: bytes) -> None:
        if len(message) > _MAX_UDP:
            raise SinkError(f"a {len(message)}-byte message is too large for UDP", permanent=True)
        if self._sock is None:
            info = socket.getaddrinfo(self.address.host, self.address.port, type=socket.SOCK_DGRAM)[
                0
            ]
            self._sock = socket.socket(info[0], socket.SOCK_DGRAM)
            self._sock.connect(info[4])
        self._sock.send(message)

    def _peer_closed(self) -> bool:
        """Whether the receiver closed the connection (readable, and nothing to read)."""
        if self._sock is None:
            return True
        readable, _, _ = select.select([self._sock], [], [], 0)
        if not readable:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _send_stream(self, frame: bytes) -> None:
        if self._sock is not None and self._peer_closed():
            self.close()  # a receiver restart: write to a new connection, not into the void
        if self._sock is None:
            sock = socket.create_connection(
                (self.address.host, self.address.port), timeout=self.timeout
            )
            if self._context is not None:
                conn = tls.client_connection(self._context, sock, self.address.host)
                self._sock = sock
                self._conn = conn
                conn.do_handshake()
            else:
                self._sock = sock
        if self._conn is not None:
            self._conn.sendall(frame)
        else:
            self._sock.sendall(frame)

    def close(self) -> None:
        """Close the connection (the next event opens a new one)."""
        if self._conn is not None:
            with contextlib.suppress(SSL.Error, OSError):
                self._conn.shutdown()
            self._conn = None
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
