"""The PQ mutual-TLS tunnel with real traffic: PostgreSQL (psycopg, psql) and Redis (redis-py,
redis-cli) through both ends, 100 concurrent connections, half-closes, refused peers
(no, expired or foreign certificate; classical-only ``openssl s_client``), limits and
timeouts. Both ends run in-process on an event loop thread here; test_tunnel_cli.py runs
them as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from qrc.transit import tls
from qrc.transit.ca import CertificateAuthority
from qrc.transit.tunnel import GROUP, Tunnel, TunnelConfig, client_context, server_context
from qrc.transit.tunnel_certs import issue_peer_certificate, write_peer_files

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    expired: tuple[Path, Path]
    foreign: tuple[Path, Path]  # from another CA
    foreign_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("tunnel-pki")
    ca = CertificateAuthority.create(d / "ca")
    other = CertificateAuthority.create(d / "other-ca")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    return Pki(
        ca=ca.ca_file,
        server=write_peer_files(
            issue_peer_certificate(d / "ca", "db-gateway", ["127.0.0.1", "localhost"]), d, "srv"
        ),
        client=write_peer_files(issue_peer_certificate(d / "ca", "app-1"), d, "cli"),
        expired=write_peer_files(
            issue_peer_certificate(
                d / "ca", "app-old", validity=datetime.timedelta(days=1), not_before=past
            ),
            d,
            "expired",
        ),
        foreign=write_peer_files(issue_peer_certificate(d / "other-ca", "intruder"), d, "foreign"),
        foreign_ca=other.ca_file,
    )


class LoopThread:
    """An asyncio loop on a thread of its own, for tunnel ends beside blocking clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@dataclass
class Ends:
    server: Tunnel
    client: Tunnel

    @property
    def port(self) -> int:
        return self.client.address[1]


def start_ends(
    loop: LoopThread,
    pki: Pki,
    target: tuple[str, int],
    *,
    client_identity: tuple[Path, Path] | None = None,
    client_ctx: Any = None,
    refused: list[tuple[str, str, str]] | None = None,
    **limits: Any,
) -> Ends:
    server = Tunnel(
        TunnelConfig(
            "server", ("127.0.0.1", 0), target, server_context(*pki.server, pki.ca), **limits
        ),
        on_refused=(lambda *a: refused.append(a)) if refused is not None else None,
    )
    loop.run(server.start())
    ctx = client_ctx or client_context(*(client_identity or pki.client), pki.ca)
    client = Tunnel(TunnelConfig("client", ("127.0.0.1", 0), server.address, ctx))
    loop.run(client.start())
    return Ends(server, client)


def stop_ends(loop: LoopThread, ends: Ends) -> None:
    loop.run(ends.client.stop())
    loop.run(ends.server.stop())


def wait_for(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll until ``condition`` holds (events happen on the loop's thread)."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- real services
def test_postgresql_through_the_tunnel_psycopg_copy_and_psql(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, PG)
    try:
        url = f"postgresql://postgres@127.0.0.1:{ends.port}/test"
        rows = 20_000
        with psycopg.connect(url, sslmode="disable", autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE t (id int, payload text)")
            with conn.cursor().copy("COPY t FROM STDIN") as copy:
                for i in range(rows):
                    copy.write_row((i, f"row-{i}-" + "x" * 100))
            count, total = conn.execute("SELECT count(*), sum(id) FROM t").fetchone() or (0, 0)
            assert (count, total) == (rows, rows * (rows - 1) // 2)
            out = bytearray()
            with conn.cursor().copy("COPY t TO STDOUT") as copy:
                for block in copy:
                    out += block
            assert out.count(b"\n") == rows
            assert b"row-19999-" in out
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(ends.port), "-U", "postgres", "-d", "test",
             "-tAc", "SELECT 6 * 7"],
            check=False, capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGSSLMODE": "disable"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "42"
        assert ends.server.stats.accepted == 2
        assert not ends.server.stats.refused
    finally:
        stop_ends(loop, ends)
    assert ends.server.stats.bytes_from_tls > rows * 100  # the COPY went through the tunnel


def test_redis_through_the_tunnel_big_values_and_redis_cli(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS)
    key = f"qrc-tunnel-test-{os.getpid()}"
    try:
        r = redis.Redis(host="127.0.0.1", port=ends.port)
        value = os.urandom(8 << 20)
        r.set(key, value, ex=60)
        got = r.get(key)
        assert isinstance(got, bytes)
        assert hashlib.sha256(got).digest() == hashlib.sha256(value).digest()
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(ends.port), "STRLEN", key],
            check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(8 << 20)
        r.delete(key)
        r.close()
    finally:
        stop_ends(loop, ends)


def test_100_concurrent_connections(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS)
    prefix = f"qrc-tunnel-conc-{os.getpid()}"
    barrier = threading.Barrier(100)

    def one(i: int) -> bytes | None:
        with redis.Redis(host="127.0.0.1", port=ends.port, socket_timeout=60) as r:
            r.ping()
            barrier.wait(60)  # all 100 connections are open at once
            r.set(f"{prefix}-{i}", str(i) * 1000, ex=60)
            value: bytes | None = r.get(f"{prefix}-{i}")
            r.delete(f"{prefix}-{i}")
            return value

    try:
        with ThreadPoolExecutor(100) as pool:
            results = list(pool.map(one, range(100)))
        assert results == [str(i).encode() * 1000 for i in range(100)]
        assert ends.server.stats.accepted == 100
    finally:
        stop_ends(loop, ends)
    assert ends.server.stats.completed == 100


# --------------------------------------------------------------------------- half-close
class HalfCloseService:
    """A real TCP service: reads to EOF, then answers the SHA-256 of what it read (so the
    answer can only come after the client's FIN passed through), then says "bye" and
    closes. With ``speak_first`` it sends a greeting and half-closes before reading."""

    def __init__(self, *, speak_first: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.speak_first = speak_first
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            if self.speak_first:
                conn.sendall(b"greeting" * 10_000)
                conn.shutdown(socket.SHUT_WR)
            digest = hashlib.sha256()
            while data := conn.recv(65536):
                digest.update(data)
            if not self.speak_first:
                conn.sendall(digest.hexdigest().encode() + b" bye")

    def close(self) -> None:
        self.sock.close()


def _read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(65536):
        out += data
    return bytes(out)


def test_half_close_client_side_eof_keeps_the_answer_coming(loop: LoopThread, pki: Pki) -> None:
    service = HalfCloseService()
    ends = start_ends(loop, pki, service.address)
    try:
        payload = os.urandom(3 << 20)
        with socket.create_connection(("127.0.0.1", ends.port), timeout=30) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # EOF our way; the answer must still arrive
            answer = _read_all(s)
        assert answer == hashlib.sha256(payload).hexdigest().encode() + b" bye"
    finally:
        stop_ends(loop, ends)
        service.close()


def test_half_close_service_side_eof_keeps_the_client_sending(loop: LoopThread, pki: Pki) -> None:
    service = HalfCloseService(speak_first=True)
    ends = start_ends(loop, pki, service.address)
    try:
        with socket.create_connection(("127.0.0.1", ends.port), timeout=30) as s:
            greeting = bytearray()
            while len(greeting) < 80_000:
                data = s.recv(65536)
                assert data, "EOF before the whole greeting"
                greeting += data
            assert s.recv(1) == b""  # the service's FIN came through the tunnel
            s.sendall(b"still talking " * 1000)  # our direction is still open
            s.shutdown(socket.SHUT_WR)
            assert _read_all(s) == b""
        assert bytes(greeting) == b"greeting" * 10_000
        wait_for(lambda: ends.server.stats.completed == 1, "connection completed")
        assert ends.server.stats.bytes_to_tls == 80_000
        assert ends.server.stats.bytes_from_tls == len(b"still talking " * 1000)
    finally:
        stop_ends(loop, ends)
        service.close()


# --------------------------------------------------------------------------- refusals
def _attempt(port: int) -> bytes:
    """Connect through a client end and ask Redis something; what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"PING\r\n")
        try:
            return _read_all(s)
        except ConnectionResetError:
            return b""


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        ("none", "no_certificate"),
        ("expired", "certificate_expired"),
        ("foreign", "untrusted_certificate"),
    ],
)
def test_a_peer_without_a_valid_certificate_is_refused_and_recorded(
    loop: LoopThread, pki: Pki, identity: str, reason: str
) -> None:
    if identity == "none":
        ctx = tls.client_context(pki.ca, groups=(GROUP,))  # trusts the server, shows nothing
    else:
        cert, key = pki.expired if identity == "expired" else pki.foreign
        ctx = client_context(cert, key, pki.ca)
    refused: list[tuple[str, str, str]] = []
    ends = start_ends(loop, pki, REDIS, client_ctx=ctx, refused=refused)
    try:
        assert _attempt(ends.port) == b""  # Redis never answered
        wait_for(lambda: bool(refused), "the refusal hook ran")
        assert ends.server.stats.refused == {reason: 1}
        assert refused[0][1] == reason
        assert ends.server.stats.completed == 0
    finally:
        stop_ends(loop, ends)


def test_the_client_end_refuses_a_server_from_another_ca(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS, client_ctx=client_context(*pki.client, pki.foreign_ca))
    try:
        assert _attempt(ends.port) == b""
        wait_for(lambda: bool(ends.client.stats.refused), "client end refusal")
        assert ends.client.stats.refused == {"untrusted_certificate": 1}
    finally:
        stop_ends(loop, ends)


def test_classical_only_openssl_s_client_is_refused(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS)
    try:
        done = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{ends.server.address[1]}",
             "-tls1_3", "-CAfile", str(pki.ca)],
            input="PING\r\n", check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode != 0
        assert "+PONG" not in done.stdout
        assert "handshake failure" in done.stderr or "alert" in done.stderr, done.stderr
        wait_for(lambda: bool(ends.server.stats.refused), "refusal recorded")
        assert ends.server.stats.refused == {"no_common_group": 1}
    finally:
        stop_ends(loop, ends)


# --------------------------------------------------------------------------- limits
def test_connection_limit_closes_the_extra_connection(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS, max_connections=2)
    clients = [redis.Redis(host="127.0.0.1", port=ends.port) for _ in range(2)]
    try:
        for r in clients:
            assert r.ping()  # two connections open through the tunnel
        assert _attempt(ends.port) == b""  # the third: closed at the server end
        assert ends.server.stats.over_limit == 1
        assert clients[0].ping()  # the open ones still work
    finally:
        for r in clients:
            r.close()
        stop_ends(loop, ends)


def test_idle_connection_is_closed(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS, idle_timeout=0.3)
    try:
        with socket.create_connection(("127.0.0.1", ends.port), timeout=30) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(100) == b"+PONG\r\n"
            assert _read_all(s) == b""  # nothing more sent: the tunnel closes it
        wait_for(lambda: ends.server.stats.idle_closed == 1, "idle close counted")
    finally:
        stop_ends(loop, ends)


def test_stop_lets_open_connections_finish_then_closes_them(loop: LoopThread, pki: Pki) -> None:
    ends = start_ends(loop, pki, REDIS, drain_timeout=0.2)
    with socket.create_connection(("127.0.0.1", ends.port), timeout=30) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(100) == b"+PONG\r\n"
        loop.run(ends.server.stop())  # one connection open: drained, then closed
        assert ends.server.stats.active == 0
        assert _read_all(s) == b""
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection(ends.server.address, timeout=5).close()
    loop.run(ends.client.stop())


def test_refusals_become_security_events_of_the_key_service(
    loop: LoopThread, pki: Pki, tmp_path: Path
) -> None:
    from qrc.transit.tunnel_events import security_event_recorder
    from tests.data.conftest import make_service

    service = make_service(tmp_path / "svc")
    try:
        server = Tunnel(
            TunnelConfig("server", ("127.0.0.1", 0), REDIS, server_context(*pki.server, pki.ca)),
            on_refused=security_event_recorder(service, "tunnel:redis"),
        )
        loop.run(server.start())
        ctx = client_context(*pki.expired, pki.ca)
        client = Tunnel(TunnelConfig("client", ("127.0.0.1", 0), server.address, ctx))
        loop.run(client.start())
        assert _attempt(client.address[1]) == b""
        wait_for(
            lambda: bool(service.audit.security_events(event_type="tls_handshake_refused")),
            "security event recorded",
        )
        (event,) = service.audit.security_events(event_type="tls_handshake_refused")
        assert event.source == "tunnel:redis"
        assert event.details["reason"] == "certificate_expired"
        loop.run(client.stop())
        loop.run(server.stop())
    finally:
        service.close()


def test_a_server_only_certificate_is_refused_as_a_client_certificate(
    loop: LoopThread, pki: Pki, tmp_path: Path
) -> None:
    issued = CertificateAuthority.load(pki.ca.parent).issue_server_certificate(["127.0.0.1"])
    cert, key = write_peer_files(issued, tmp_path, "server-only")  # serverAuth only
    refused: list[tuple[str, str, str]] = []
    ends = start_ends(loop, pki, REDIS, client_identity=(cert, key), refused=refused)
    try:
        assert _attempt(ends.port) == b""
        wait_for(lambda: bool(refused), "the refusal hook ran")
        assert ends.server.stats.refused == {"certificate_wrong_purpose": 1}
    finally:
        stop_ends(loop, ends)


def test_backpressure_a_service_that_stops_reading_stops_the_sender(
    loop: LoopThread, pki: Pki
) -> None:
    """The service reads nothing until told: the sender must block after what the socket
    buffers and the tunnel's bounded write buffers hold, not after everything; once the
    service reads, every byte arrives (paused reading resumes)."""
    total = 128 << 20
    go = threading.Event()
    digest: list[str] = []
    server = socket.create_server(("127.0.0.1", 0))

    def slow_service() -> None:
        conn, _ = server.accept()
        with conn:
            go.wait(60)
            h, n = hashlib.sha256(), 0
            while data := conn.recv(1 << 20):
                h.update(data)
                n += len(data)
            digest.append(f"{n}:{h.hexdigest()}")

    threading.Thread(target=slow_service, daemon=True).start()
    ends = start_ends(loop, pki, server.getsockname()[:2])
    payload = os.urandom(1 << 20)
    try:
        with socket.create_connection(("127.0.0.1", ends.port), timeout=30) as s:
            s.settimeout(2.0)  # a send that cannot go on for 2 s: the chain is full
            sent = 0
            with contextlib.suppress(TimeoutError):
                while sent < total:
                    at = sent % len(payload)
                    sent += s.send(payload[at:])  # exact count, even when cut short
            assert sent < total  # blocked long before everything was accepted
            go.set()
            s.settimeout(60)
            expected = hashlib.sha256()
            for _ in range(sent // len(payload)):
                expected.update(payload)
            expected.update(payload[: sent % len(payload)])
            s.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b""
        wait_for(lambda: bool(digest), "the service read everything")
        assert digest == [f"{sent}:{expected.hexdigest()}"]
    finally:
        stop_ends(loop, ends)
        server.close()
