"""The transport's limits, attacked over real sockets: slowloris clients that dribble their
headers (plain and TLS), too many connections from one address, and absurd or garbage
Content-Length values.

Every wait is bounded in count and time; no assertion is about how fast anything happens,
only that it happens long before anything but the limit under test could cause it (the
idle timeout is 75 s and is reset by every byte a dribbling client sends).
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from OpenSSL import SSL

from qrc.transit import tls as pqtls
from qrc.transit.client import PQClient

from .conftest import ServerProcess

Start = Callable[..., ServerProcess]
BOUND = 30.0  # seconds: far below the idle timeout, far above any deadline set here


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
    sock.setblocking(False)
    return sock


def _closed(sock: socket.socket, received: bytearray) -> bool:
    """Read what is there; ``True`` once the server closed (FIN or reset)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
            received += data
    except BlockingIOError:
        return False
    except OSError:
        return True


def _drip_until_closed(
    socks: list[socket.socket], drip: bytes, interval: float = 0.2
) -> list[bytearray]:
    """Send ``drip`` on every open socket each ``interval`` until the server has closed them
    all; fails after BOUND seconds. Returns what each received."""
    received = [bytearray() for _ in socks]
    open_ = set(range(len(socks)))
    deadline = time.monotonic() + BOUND
    for _ in range(int(BOUND / interval) + 1):
        for i in list(open_):
            if _closed(socks[i], received[i]):
                open_.discard(i)
                continue
            try:
                socks[i].send(drip)
            except OSError:
                open_.discard(i)
        if not open_ or time.monotonic() > deadline:
            break
        time.sleep(interval)
    assert not open_, f"{len(open_)} of {len(socks)} dribbling connections still open"
    return received


@contextmanager
def _sockets(port: int, n: int) -> Iterator[list[socket.socket]]:
    socks = [_connect(port) for _ in range(n)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything the server sends until it closes
    (or until BOUND seconds pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(request)
        out = b""
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            out += data
        return out


def _status_and_body(answer: bytes) -> tuple[int, bytes, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), body, headers


def test_slowloris_headers_are_cut_off_at_the_deadline(start_server: Start) -> None:
    server = start_server("--plain", "--header-timeout", "1")
    with _sockets(server.port, 20) as socks:
        for sock in socks:
            sock.send(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        received = _drip_until_closed(socks, b"X-Drip: 1\r\n")
    answered = [r for r in received if r]
    # The answer is a 408 (unless the reset of a connection closed with our drip unread
    # overtook it: the close is what counts).
    assert all(r.startswith(b"HTTP/1.1 408 ") for r in answered), answered
    with PQClient(server.http) as client:  # the server is fine
        assert client.get("/hello").status == 200


def test_silent_and_dribbling_tls_handshakes_are_cut_off(start_server: Start) -> None:
    server = start_server("--header-timeout", "1")
    with _sockets(server.port, 10) as socks:
        # The start of a TLS record carrying a ClientHello, then one byte at a time.
        for sock in socks[:5]:
            sock.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        _drip_until_closed(socks, b"\x00")
    with PQClient(server.https, ca_file=server.ca) as client:
        assert client.get("/hello").status == 200


def test_a_dribbled_second_request_on_a_kept_alive_connection_is_cut_off(
    start_server: Start,
) -> None:
    server = start_server("--plain", "--header-timeout", "1")
    with _sockets(server.port, 1) as socks:
        sock = socks[0]
        sock.setblocking(True)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 "), first
        # Idle between requests longer than the header deadline: the idle timeout (75 s)
        # governs that, so the connection is still good.
        time.sleep(2.5)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = sock.recv(65536)
        assert second.startswith(b"HTTP/1.1 200 "), second
        sock.setblocking(False)
        sock.send(b"GET /hello HTTP/1.1\r\n")
        received = _drip_until_closed(socks, b"X-Drip: 1\r\n")
    assert not received[0] or received[0].startswith(b"HTTP/1.1 408 ")


def test_connections_per_source_are_capped(start_server: Start) -> None:
    server = start_server("--plain", "--max-conn-per-source", "4", "--header-timeout", "60")
    with _sockets(server.port, 10) as socks:
        received = [bytearray() for _ in socks]
        closed: set[int] = set()
        deadline = time.monotonic() + BOUND
        while len(closed) < 6 and time.monotonic() < deadline:
            select.select(socks, [], [], 0.5)
            closed |= {
                i for i, s in enumerate(socks) if i not in closed and _closed(s, received[i])
            }
        assert len(closed) == 6, closed  # the connections over the cap, at once
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            sock.setblocking(True)
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    # Once they are gone, the address may connect again.
    with PQClient(server.http) as client:
        assert client.get("/hello").status == 200


HUGE = b"100000000000000000000000"  # 10**23


@pytest.mark.parametrize("length", [HUGE, b"9" * 5000, b"20000"])
def test_a_huge_content_length_is_answered_413_at_once(start_server: Start, length: bytes) -> None:
    server = start_server("--plain", "--max-body", "10000")
    # No body follows: the answer must not wait for one.
    answer = _exchange(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + length + b"\r\n\r\n",
    )
    status, body, headers = _status_and_body(answer)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["status"] == 413


def test_a_huge_content_length_with_expect_continue(start_server: Start) -> None:
    server = start_server("--plain", "--max-body", "10000")
    answer = _exchange(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        b"Content-Length: " + HUGE + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer  # and no "100 Continue" first


@pytest.mark.parametrize(
    "length", [b"abc", b"-1", b"1e3", b"0x10", b"1, 1", b"12 34", b"\xd9\xa1\xd9\xa2"]
)
def test_a_garbage_content_length_is_answered_400(start_server: Start, length: bytes) -> None:
    server = start_server("--plain")
    answer = _exchange(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + length + b"\r\n\r\n",
    )
    status, body, headers = _status_and_body(answer)
    assert status == 400, answer
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 400


def _tls_exchange(server: ServerProcess, request: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)
    sock.setblocking(False)
    conn = pqtls.client_connection(pqtls.client_context(server.ca), sock, "127.0.0.1")
    deadline = time.monotonic() + BOUND

    def io(fn: Callable[..., object], *args: object) -> object:
        while time.monotonic() < deadline:
            try:
                return fn(*args)
            except SSL.WantReadError:
                select.select([sock], [], [], 0.5)
            except SSL.WantWriteError:
                select.select([], [sock], [], 0.5)
        raise AssertionError("no answer in time")

    try:
        io(conn.do_handshake)
        io(conn.sendall, request)
        out = b""
        while True:
            try:
                data = io(conn.recv, 65536)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                break
            assert isinstance(data, bytes)
            if not data:
                break
            out += data
        return out
    finally:
        sock.close()


def test_over_tls_too(start_server: Start) -> None:
    server = start_server("--max-body", "10000")
    huge = _tls_exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + HUGE + b"\r\n\r\n"
    )
    assert _status_and_body(huge)[0] == 413, huge
    garbage = _tls_exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1e3\r\n\r\n"
    )
    assert _status_and_body(garbage)[0] == 400, garbage
