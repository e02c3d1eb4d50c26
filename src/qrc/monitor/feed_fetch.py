"""Fetching a threat feed document from a file or an HTTPS URL, bounded in size and time.

HTTPS goes through pyOpenSSL on OpenSSL 4 (:mod:`qrc.transit.tls`), offering
``X25519MLKEM768`` first and falling back to a classical group for a publisher's server
that lacks it (``hybrid-preferred``): the feed is public and its integrity comes from its
signature, not from the channel; the server's certificate is still checked against the CA
(the system store, or ``ca_file`` for a private server). Plain ``http://`` is refused all the
same: a man in the middle could withhold new feeds.

The feed's host is not trusted (the signature is what is), so the answer is read with
bounds: at most :data:`MAX_RESPONSE` bytes in all and :data:`~.feed_format.MAX_DOCUMENT`
of body, within ``timeout`` seconds from connecting to the last byte, whatever the server
sends or how slowly. One request, ``Connection: close``; the response is parsed by
:class:`http.client.HTTPResponse` (status, headers, ``Content-Length`` or chunked body).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import struct
import time
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from OpenSSL import SSL

from qrc.monitor.feed_format import MAX_DOCUMENT
from qrc.transit import tls

__all__ = ["MAX_RESPONSE", "FeedUnavailable", "fetch_document", "is_url"]

# The body's limit plus room for headers and chunk framing.
MAX_RESPONSE: Final = MAX_DOCUMENT + 128 * 1024
_USER_AGENT: Final = "qrc-threat-feed/1"


class FeedUnavailable(Exception):
    """The feed could not be fetched (unreachable, TLS failure, HTTP error, too large)."""


def is_url(source: str) -> bool:
    """Whether ``source`` names a URL rather than a file."""
    return "://" in source


def fetch_document(source: str, *, ca_file: Path | None = None, timeout: float = 30.0) -> bytes:
    """The bytes at ``source``: a file path, ``file://`` path or ``https://`` URL.

    Raises:
        FeedUnavailable: what went wrong, in words an operator can act on.
    """
    if not is_url(source) or source.startswith("file://"):
        return _read_file(Path(source.removeprefix("file://")))
    if not source.isascii() or any(c.isspace() or not c.isprintable() for c in source):
        raise FeedUnavailable(f"{source!r}: a feed URL is printable ASCII, without spaces")
    parts = urlsplit(source)
    if parts.scheme != "https" or not parts.hostname:
        raise FeedUnavailable(f"{source!r}: a feed URL must be https:// (or give a file path)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        context = tls.client_context(ca_file, mode="hybrid-preferred")
    except tls.TLSConfigError as exc:
        raise FeedUnavailable(f"QRC_FEED_CA_FILE: {exc}") from None
    host_header = parts.netloc.rsplit("@", 1)[-1]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {_USER_AGENT}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "strict")
    raw = _exchange(context, parts.hostname, parts.port or 443, request, timeout, source)
    return _body(raw, source)


def _exchange(
    context: SSL.Context, host: str, port: int, request: bytes, timeout: float, source: str
) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise FeedUnavailable(f"{source}: cannot connect: {exc}") from None
    # OpenSSL reads the descriptor itself: a blocking socket whose reads and writes give up
    # after a while (SO_RCVTIMEO/SO_SNDTIMEO); the deadline bounds the whole exchange.
    sock.setblocking(True)
    wait = struct.pack("ll", int(timeout), int((timeout % 1) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wait)
    conn = tls.client_connection(context, sock, host)
    received = bytearray()
    try:
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            raise FeedUnavailable(f"{source}: the TLS handshake timed out") from None
        except SSL.Error as exc:
            raise FeedUnavailable(f"{source}: TLS handshake failed: {exc}") from None
        conn.sendall(request)
        while True:
            if time.monotonic() > deadline:
                raise FeedUnavailable(f"{source}: no complete answer within {timeout:g} s")
            try:
                data = conn.recv(65536)
            except SSL.ZeroReturnError:
                break  # close_notify
            except SSL.WantReadError:
                raise FeedUnavailable(f"{source}: the server stopped answering") from None
            except SSL.SysCallError:
                break  # closed without close_notify: the HTTP framing says if it was cut
            except SSL.Error as exc:
                if "unexpected eof" in str(exc).lower():
                    break
                raise FeedUnavailable(f"{source}: TLS error: {exc}") from None
            if not data:
                break
            received += data
            if len(received) > MAX_RESPONSE:
                raise FeedUnavailable(f"{source}: larger than {MAX_DOCUMENT} bytes")
    except OSError as exc:
        raise FeedUnavailable(f"{source}: {exc}") from None
    finally:
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()
        sock.close()
    return bytes(received)


class _Received:
    """What :class:`http.client.HTTPResponse` reads from: the bytes already received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def _body(raw: bytes, source: str) -> bytes:
    response = http.client.HTTPResponse(_Received(raw))  # type: ignore[arg-type]
    try:
        response.begin()
        if response.status != 200:
            raise FeedUnavailable(f"{source}: HTTP {response.status} {response.reason[:100]}")
        # All of it (``raw`` is bounded already): a body shorter than its Content-Length or
        # its chunks say raises IncompleteRead, so a cut answer is never taken for a whole.
        body = response.read()
    except http.client.IncompleteRead:
        raise FeedUnavailable(f"{source}: the answer was cut short") from None
    except (http.client.HTTPException, ValueError) as exc:
        raise FeedUnavailable(f"{source}: not a valid HTTP answer ({type(exc).__name__})") from None
    if len(body) > MAX_DOCUMENT:
        raise FeedUnavailable(f"{source}: larger than {MAX_DOCUMENT} bytes")
    return body


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT + 1)
    except OSError as exc:
        raise FeedUnavailable(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT:
        raise FeedUnavailable(f"{path}: larger than {MAX_DOCUMENT} bytes")
    return data
