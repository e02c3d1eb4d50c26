"""PQClient: HTTP/1.1 framing, keep-alive and reconnection against scripted servers (plain
and PQ TLS) on loopback, and PQ TLS against the real server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL

from qrc.transit import tls
from qrc.transit.ca import TLSFiles
from qrc.transit.client import PQClient, TLSError, TransportError

from .conftest import ServerProcess

# handler(connection number, request number on it, raw request) -> (raw response, close?)
Handler = Callable[[int, int, bytes], tuple[bytes, bool]]


def ok(body: bytes = b"{}", extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


class ScriptedServer:
    """Answers each request with what the handler says; optionally over PQ TLS."""

    def __init__(self, handler: Handler, context: SSL.Context | None = None) -> None:
        self.handler = handler
        self.context = context
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        number = 0
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            threading.Thread(target=self._connection, args=(raw, number), daemon=True).start()

    def _connection(self, raw: socket.socket, number: int) -> None:
        conn: socket.socket | SSL.Connection = raw
        try:
            if self.context is not None:
                conn = SSL.Connection(self.context, raw)
                conn.set_accept_state()
                conn.do_handshake()
            buffer = b""
            for index in range(1000):
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                self.requests.append(request)
                response, close = self.handler(number, index, request)
                if response:
                    conn.sendall(response)
                if close:
                    if isinstance(conn, SSL.Connection):
                        conn.shutdown()
                    return
        except (OSError, SSL.Error):
            return
        finally:
            raw.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture()
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(handler: Handler, context: SSL.Context | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(handler, context))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


Scripted = Callable[..., ScriptedServer]


def test_request_line_headers_and_json(scripted: Scripted) -> None:
    server = scripted(lambda *_: (ok(b'{"x": 1}', "Content-Type: application/json\r\n"), False))
    client = PQClient(f"http://127.0.0.1:{server.port}/api/v1/", token="s3cret")
    response = client.post("/things", {"a": "b"}, params={"page": 2, "q": "two words", "no": None})
    assert response.status == 200 and response.ok and response.json() == {"x": 1}
    request = server.requests[0]
    assert request.startswith(b"POST /api/v1/things?page=2&q=two+words HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert b"Authorization: Bearer s3cret\r\n" in request
    assert b"Content-Type: application/json\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a":"b"}')
    assert client.base_url == f"http://127.0.0.1:{server.port}/api/v1"


def test_chunked_body_with_extensions_and_trailers(scripted: Scripted) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    server = scripted(lambda *_: (chunked, False))
    client = PQClient(f"http://127.0.0.1:{server.port}")
    assert client.get("/").body == b"hello world"
    assert client.get("/").body == b"hello world"
    assert client.connections_opened == 1


def test_close_delimited_body_and_connection_close(scripted: Scripted) -> None:
    def handler(_n: int, index: int, _r: bytes) -> tuple[bytes, bool]:
        if index == 0:
            return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", True
        raise AssertionError("a closed connection is not reused")

    server = scripted(handler)
    client = PQClient(f"http://127.0.0.1:{server.port}")
    assert client.get("/").body == b"until the end"
    assert client.get("/").body == b"until the end"
    assert client.connections_opened == 2


def test_informational_and_bodiless_responses(scripted: Scripted) -> None:
    def handler(_n: int, index: int, request: bytes) -> tuple[bytes, bool]:
        if request.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", False
        if index == 1:
            return b"HTTP/1.1 204 No Content\r\n\r\n", False
        return b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"real"), False

    server = scripted(handler)
    client = PQClient(f"http://127.0.0.1:{server.port}")
    assert client.get("/").body == b"real"
    assert client.get("/").status == 204
    head = client.request("HEAD", "/")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "42"
    assert client.get("/").body == b"real"
    assert client.connections_opened == 1


def test_reconnects_when_the_server_closed_an_idle_connection(scripted: Scripted) -> None:
    # The server closes after each answer without saying so: the client must notice before
    # sending (even a POST, which it never resends) and open a new connection.
    server = scripted(lambda *_: (ok(b"fine"), True))
    client = PQClient(f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        assert client.post("/", {"n": 1}).body == b"fine"
        time.sleep(0.1)  # idle: the server's close arrives (racing it is the next test)
    assert client.connections_opened == 3


def test_only_idempotent_requests_are_resent(scripted: Scripted) -> None:
    # Second request on a connection: read, then the connection drops without an answer.
    server = scripted(lambda _n, index, _r: (ok(b"ok") if index == 0 else b"", index > 0))
    client = PQClient(f"http://127.0.0.1:{server.port}")
    assert client.get("/").body == b"ok"
    assert client.get("/").body == b"ok"  # resent on a new connection
    assert client.connections_opened == 2
    with pytest.raises(TransportError, match="closed"):
        client.post("/", {"once": True})  # may have been acted on: not resent
    assert len([r for r in server.requests if r.startswith(b"POST")]) == 1


def test_errors(scripted: Scripted, tmp_path: Path) -> None:
    silent = scripted(lambda *_: (b"", False))
    with pytest.raises(TransportError, match="timed out"):
        PQClient(f"http://127.0.0.1:{silent.port}", timeout=0.3).get("/")
    garbage = scripted(lambda *_: (b"SPDY/9 what\r\n\r\n", False))
    with pytest.raises(TransportError, match="status line"):
        PQClient(f"http://127.0.0.1:{garbage.port}").get("/")
    bad_length = scripted(lambda *_: (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", False))
    with pytest.raises(TransportError, match="Content-Length"):
        PQClient(f"http://127.0.0.1:{bad_length.port}").get("/")
    truncated = scripted(lambda *_: (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True))
    with pytest.raises(TransportError):
        PQClient(f"http://127.0.0.1:{truncated.port}").post("/")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(TransportError, match="cannot connect"):
        PQClient(f"http://127.0.0.1:{port}").get("/")
    client = PQClient("http://127.0.0.1:1")
    with pytest.raises(ValueError):
        client.get("/", headers={"X-Evil": "a\r\nInjected: yes"})
    with pytest.raises(ValueError):
        client.request("POST", "/", {"a": 1}, body=b"both")
    for url in ("ftp://host/", "https://", "localhost:8443"):
        with pytest.raises(ValueError):
            PQClient(url)


def test_pq_tls_to_a_scripted_server_and_reconnect(scripted: Scripted, tls_files: TLSFiles) -> None:
    context = tls.server_context(tls_files.cert, tls_files.key)
    # close_notify after every second answer: the client reads it, and reconnects.
    server = scripted(lambda _n, index, _r: (ok(b"pq"), index == 1), context)
    with PQClient(f"https://localhost:{server.port}", ca_file=str(tls_files.ca)) as client:
        for _ in range(6):
            assert client.get("/").body == b"pq"
        assert client.negotiated_group == "X25519MLKEM768"
        assert client.server_certificate_algorithm == "ML-DSA-65"
        assert client.connections_opened == 3
    assert b"Host: localhost:%d\r\n" % server.port in server.requests[0]


def test_tls_failures_are_tls_errors(
    scripted: Scripted, tls_files: TLSFiles, other_tls_files: TLSFiles
) -> None:
    context = tls.server_context(tls_files.cert, tls_files.key)
    server = scripted(lambda *_: (ok(), False), context)
    with pytest.raises(TLSError, match="handshake"):
        PQClient(f"https://127.0.0.1:{server.port}", ca_file=str(other_tls_files.ca)).get("/")
    with pytest.raises(TLSError):
        PQClient(
            f"https://127.0.0.1:{server.port}", ca_file=str(tls_files.ca), groups=("X25519",)
        ).get("/")
    assert server.requests == []


def test_large_bodies_both_ways(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    with PQClient(server.https, ca_file=server.ca) as client:
        payload = {"data": "z" * 500_000}
        response = client.post("/echo", payload)
        assert response.status == 200
        assert response.json()["echo"] == payload
        assert client.connections_opened == 1


def test_one_client_from_several_threads(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    client = PQClient(server.https, ca_file=server.ca)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                assert client.post("/echo", {"i": i, "j": j}).json()["echo"] == {"i": i, "j": j}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert client.connections_opened == 1  # calls were serialised on the one connection
    client.close()
