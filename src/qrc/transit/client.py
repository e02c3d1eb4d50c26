"""A small keep-alive HTTP/1.1 client that speaks post-quantum TLS.

:class:`PQClient` talks to the qrc service (or any HTTPS server on OpenSSL 3.5+) over TLS 1.3
with ``X25519MLKEM768`` and checks the server certificate against a CA file, all through
pyOpenSSL (:mod:`qrc.transit.tls`); it never touches the ``ssl`` module. It keeps one
persistent connection, reconnects when the server has closed it, and also speaks plain
``http://`` (for a service behind a TLS terminator).

Thread safety: a client owns one connection; concurrent calls on one client are serialised
by a lock. Give each thread its own client for parallel requests.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import select
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import urlencode, urlsplit

from OpenSSL import SSL

from qrc.transit import tls

__all__ = ["PQClient", "Response", "TLSError", "TransportError"]

_MAX_HEADER_BYTES: Final = 64 * 1024
_CHUNK: Final = 64 * 1024
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_USER_AGENT: Final = "qrc-pqclient/1"
T = TypeVar("T")


class TransportError(Exception):
    """The request could not be carried out: connection refused, reset, timed out, or a
    malformed HTTP answer."""


class TLSError(TransportError):
    """The TLS handshake failed: untrusted certificate, wrong host name, or no common group
    (a ``pq-only`` client against a classical-only server)."""


@dataclass(frozen=True)
class Response:
    """An HTTP response. ``headers`` keys are lower case; repeated headers are joined."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not JSON)."""
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Closed(Exception):
    """The peer closed the connection."""


class PQClient:
    """HTTP/1.1 client with a persistent PQ TLS (or plain) connection.

    ``base_url`` is ``https://host[:port][/prefix]`` or ``http://...``; request paths are
    appended to the prefix. ``ca_file`` is the CA certificate to trust (``DIR/tls/ca.pem``);
    None means the system store. ``token`` is sent as ``Authorization: Bearer``. ``timeout``
    bounds connecting and each wait for the server. ``mode`` / ``groups``: see
    :func:`qrc.transit.tls.client_context`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        mode: tls.Mode = "pq-only",
        groups: tuple[str, ...] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        host_header = f"[{self._host}]" if ":" in self._host else self._host
        default_port = 443 if self._tls else 80
        self._host_header = (
            host_header if self._port == default_port else f"{host_header}:{self._port}"
        )
        self._timeout = timeout
        self._token = token
        self._extra_headers = dict(headers or {})
        self._context = tls.client_context(ca_file, mode=mode, groups=groups) if self._tls else None
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._conn: SSL.Connection | None = None
        self._buffer = bytearray()
        self._group: str | None = None
        self._cert_algorithm: str | None = None
        self.connections_opened = 0
        """How many connections this client has opened (keep-alive makes it stay at 1)."""

    # ------------------------------------------------------------------ public API
    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host_header}{self._prefix}"

    @property
    def negotiated_group(self) -> str | None:
        """Key-exchange group of the last TLS connection (None over plain HTTP)."""
        return self._group

    @property
    def server_certificate_algorithm(self) -> str | None:
        """Algorithm of the server certificate's key, e.g. ``ML-DSA-65``."""
        return self._cert_algorithm

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request and read the whole response. Raises TransportError/TLSError."""
        method = method.upper()
        if json is not None:
            if body is not None:
                raise ValueError("give json or body, not both")
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
        target = self._prefix + ("/" + path.lstrip("/") if path else "")
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            target += "?" + urlencode(query, doseq=True)
        data = self._encode(method, target or "/", body, json is not None, headers)
        with self._lock:
            return self._exchange(method, data)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first request)."""
        with self._lock:
            if self._sock is None:
                self._open()

    def close(self) -> None:
        """Close the connection (sending TLS close_notify); the client can still be used."""
        with self._lock:
            self._drop(graceful=True)

    def __enter__(self) -> PQClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP
    def _encode(
        self,
        method: str,
        target: str,
        body: bytes | None,
        is_json: bool,
        headers: Mapping[str, str] | None,
    ) -> bytes:
        lines = {
            "Host": self._host_header,
            "User-Agent": _USER_AGENT,
            "Accept": "application/json, application/problem+json, */*",
            "Connection": "keep-alive",
        }
        if self._token:
            lines["Authorization"] = f"Bearer {self._token}"
        if is_json:
            lines["Content-Type"] = "application/json"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines["Content-Length"] = str(len(body or b""))
        lines.update(self._extra_headers)
        lines.update(headers or {})
        for k, v in lines.items():
            if any(c in k + v for c in "\r\n\0"):
                raise ValueError(f"invalid character in header {k!r}")
        head = f"{method} {target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n"
        return head.encode("latin-1") + (body or b"")

    def _exchange(self, method: str, data: bytes) -> Response:
        reused = self._sock is not None and self._alive()
        if not reused:
            self._drop(graceful=False)
            self._open()
        try:
            return self._send_and_read(method, data)
        except _Closed as exc:
            self._drop(graceful=False)
            # A reused connection the server closed as we sent: safe to resend only when
            # repeating the request cannot change the outcome.
            if reused and exc.args == ("before response",) and method in _IDEMPOTENT:
                self._open()
                try:
                    return self._send_and_read(method, data)
                except _Closed:
                    self._drop(graceful=False)
            raise TransportError("the server closed the connection") from None
        except BaseException:
            self._drop(graceful=False)
            raise

    def _send_and_read(self, method: str, data: bytes) -> Response:
        self._buffer.clear()
        try:
            self._send(data)
        except _Closed:
            raise _Closed("before response") from None
        while True:
            if not self._buffer:
                self._buffer += self._recv_or_closed("before response")
            status, reason, headers = self._read_head()
            if 100 <= status < 200 and status != 101:
                continue  # informational: the real answer follows
            break
        keep = _keep_alive(headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise TransportError("malformed Content-Length") from None
            if length < 0:
                raise TransportError("malformed Content-Length")
            body = self._read_exact(length)
        else:
            body = self._read_to_end()
            keep = False
        if not keep:
            self._drop(graceful=True)
        return Response(status, reason, headers, body)

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > _MAX_HEADER_BYTES:
                raise TransportError("response headers too large")
            self._buffer += self._recv_or_closed("in headers")
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TransportError(f"malformed status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise TransportError("malformed response header")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if parts[0] == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers.setdefault("connection", "close")
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv_or_closed("in body")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _read_line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > _MAX_HEADER_BYTES:
                raise TransportError("malformed chunked body")
            self._buffer += self._recv_or_closed("in body")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise TransportError("malformed chunk size") from None
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return bytes(out)
            out += self._read_exact(size)
            if self._read_line():
                raise TransportError("malformed chunked body")

    def _read_to_end(self) -> bytes:
        while True:
            chunk = self._recv()
            if not chunk:
                break
            self._buffer += chunk
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    # ------------------------------------------------------------------ connection
    def _open(self) -> None:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self._host}:{self._port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.connections_opened += 1
        if self._context is None:
            return
        sock.setblocking(False)
        self._conn = tls.client_connection(self._context, sock, self._host)
        try:
            self._tls_io(self._conn.do_handshake)
        except (SSL.Error, _Closed) as exc:
            self._drop(graceful=False)
            raise TLSError(f"TLS handshake with {self._host}:{self._port} failed: {exc}") from None
        self._group = tls.negotiated_group(self._conn)
        self._cert_algorithm = tls.peer_certificate_algorithm(self._conn)

    def _drop(self, *, graceful: bool) -> None:
        conn, sock = self._conn, self._sock
        self._conn = self._sock = None
        self._buffer.clear()
        if conn is not None and graceful:
            with contextlib.suppress(SSL.Error, OSError):
                conn.shutdown()  # close_notify; we do not wait for the peer's.
        if sock is not None:
            sock.close()

    def _alive(self) -> bool:
        """Whether the idle connection is still open (the server may have closed it)."""
        sock = self._socket()
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        if self._conn is None:
            try:
                return sock.recv(1, socket.MSG_PEEK) != b""
            except OSError:
                return False
        # TLS 1.3 servers send session tickets after the handshake: readable is not closed.
        try:
            self._conn.recv(_CHUNK)
        except SSL.WantReadError:
            return True
        except (SSL.Error, OSError):
            return False
        # Closed, or unsolicited data between responses: either way not reusable.
        return False

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise TransportError("not connected")
        return self._sock

    def _wait(self, *, write: bool) -> None:
        sock = self._socket()
        r, w = ([], [sock]) if write else ([sock], [])
        ready = select.select(r, w, [], self._timeout)
        if not ready[0] and not ready[1]:
            raise TransportError(f"timed out after {self._timeout} s")

    def _tls_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a pyOpenSSL call on the non-blocking socket, waiting as it asks."""
        while True:
            try:
                return fn(*args)
            except SSL.WantReadError:
                self._wait(write=False)
            except SSL.WantWriteError:
                self._wait(write=True)
            except SSL.ZeroReturnError:
                raise _Closed() from None
            except SSL.SysCallError as exc:
                raise _Closed(str(exc)) from None

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                if self._conn is not None:
                    sent = self._tls_io(self._conn.send, view[:_CHUNK])
                else:
                    sent = self._socket().send(view[:_CHUNK])
                view = view[sent:]
        except TimeoutError:
            raise TransportError(f"timed out after {self._timeout} s") from None
        except SSL.Error as exc:
            raise TransportError(f"TLS error: {exc}") from None
        except OSError:
            raise _Closed() from None

    def _recv(self) -> bytes:
        """Some bytes, or b"" when the server closed the connection."""
        try:
            if self._conn is not None:
                return self._tls_io(self._conn.recv, _CHUNK)
            return self._socket().recv(_CHUNK)
        except _Closed:
            return b""
        except TimeoutError:
            raise TransportError(f"timed out after {self._timeout} s") from None
        except SSL.Error as exc:
            raise TransportError(f"TLS error: {exc}") from None
        except OSError:
            return b""

    def _recv_or_closed(self, where: str) -> bytes:
        data = self._recv()
        if not data:
            raise _Closed(where)
        return data


def _keep_alive(headers: Mapping[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return "close" not in tokens
