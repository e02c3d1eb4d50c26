"""``serve()`` in a real subprocess on a free loopback port, talked to with PQClient."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qrc.transit.ca import TLSFiles
from qrc.transit.client import PQClient, Response, TLSError, TransportError
from qrc.transit.server import serve

from .conftest import ServerProcess

Start = Callable[..., ServerProcess]


def test_pq_tls_with_ml_dsa_certificate(start_server: Start) -> None:
    server = start_server()
    with PQClient(server.https, ca_file=server.ca) as client:
        response = client.get("/hello")
        assert response.status == 200
        assert response.json() == {"hello": "world", "scheme": "https"}
        assert client.negotiated_group == "X25519MLKEM768"
        assert client.server_certificate_algorithm == "ML-DSA-65"
        stats = client.get("/stats").json()
        assert client.get("/tls").json() == {
            "group": "X25519MLKEM768",
            "cipher": "TLS_AES_256_GCM_SHA384",
            "version": "TLSv1.3",
        }
    assert stats["handshakes"] == {"X25519MLKEM768": 1}
    assert stats["lifespan"] is True  # lifespan ran, its state reaches requests


def test_keep_alive_reuses_one_connection(start_server: Start) -> None:
    server = start_server()
    with PQClient(server.https, ca_file=server.ca) as client:
        for i in range(10):
            assert client.post("/echo", {"i": i}).json()["echo"] == {"i": i}
            assert len(client.get("/kib").body) == 1024
        assert client.get("/chunked").body == b"part0;part1;part2;"
        assert client.connections_opened == 1
        assert client.get("/stats").json()["handshakes"] == {"X25519MLKEM768": 1}


def test_classical_client_is_refused_and_counted(start_server: Start) -> None:
    server = start_server()
    classical = PQClient(server.https, ca_file=server.ca, groups=("X25519",))
    with pytest.raises(TLSError):
        classical.get("/hello")
    with PQClient(server.https, ca_file=server.ca) as client:
        stats = client.get("/stats").json()
    assert stats["failures"] == {"handshake_failure": 1}
    assert stats["handshakes"] == {"X25519MLKEM768": 1}


def test_hybrid_preferred_accepts_classical_and_reports_it(start_server: Start) -> None:
    server = start_server("--mode", "hybrid-preferred")
    with PQClient(server.https, ca_file=server.ca, groups=("X25519",)) as classical:
        assert classical.get("/hello").status == 200
        assert classical.negotiated_group == "X25519"
    with PQClient(server.https, ca_file=server.ca, mode="hybrid-preferred") as client:
        assert client.get("/hello").status == 200
        assert client.negotiated_group == "X25519MLKEM768"
        assert client.get("/stats").json()["handshakes"] == {"X25519": 1, "X25519MLKEM768": 1}


def test_graceful_shutdown_finishes_in_flight_requests(start_server: Start) -> None:
    server = start_server()
    idle = PQClient(server.https, ca_file=server.ca)
    assert idle.get("/hello").status == 200  # an idle keep-alive connection must not block exit
    results: list[Response | Exception] = []

    def slow() -> None:
        try:
            with PQClient(server.https, ca_file=server.ca) as client:
                results.append(client.get("/slow", params={"seconds": 2}))
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.7)  # the slow request is in the application now
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(TransportError):  # no longer listening
        PQClient(server.https, ca_file=server.ca, timeout=5).get("/hello")
    thread.join(20)
    assert server.proc.wait(20) == 0
    response = results[0]
    assert isinstance(response, Response), response
    assert response.status == 200 and response.json() == {"slept": 2.0}
    assert response.headers.get("connection") == "close"
    output = server.output()
    assert "LIFESPAN shutdown" in output and "EXITED" in output
    assert "Traceback" not in output


def test_drain_timeout_cuts_off_a_stuck_request(start_server: Start) -> None:
    server = start_server("--drain-timeout", "0.5")
    results: list[Response | Exception] = []

    def stuck() -> None:
        try:
            results.append(PQClient(server.https, ca_file=server.ca).get("/slow?seconds=30"))
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=stuck)
    thread.start()
    time.sleep(0.7)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert time.monotonic() - started < 10
    thread.join(20)
    assert isinstance(results[0], TransportError)
    assert "LIFESPAN shutdown" in server.output()


def test_plain_mode(start_server: Start, tls_files: TLSFiles) -> None:
    server = start_server("--plain")
    with PQClient(server.http) as client:
        assert client.get("/hello").json() == {"hello": "world", "scheme": "http"}
        assert client.negotiated_group is None
        assert client.get("/tls").json() is None
        assert client.get("/stats").json()["handshakes"] == {}
    # No TLS on a plain port: the ClientHello is no HTTP request, and nothing answers it.
    with pytest.raises(TransportError):
        PQClient(server.https, ca_file=str(tls_files.ca), timeout=1).get("/hello")


def test_plain_http_is_loopback_only() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never served")

    with pytest.raises(ValueError, match="loopback"):
        serve(app, "0.0.0.0", 0, None)
    with pytest.raises(ValueError, match="loopback"):
        serve(app, "192.0.2.1", 0, None)


def test_oversized_body_is_refused_with_413(start_server: Start) -> None:
    server = start_server("--max-body", "10000")
    with PQClient(server.https, ca_file=server.ca) as client:
        assert client.post("/echo", body=b'"%s"' % (b"a" * 9000)).json()["size"] == 9002
        response = client.post("/echo", body=b'"%s"' % (b"a" * 20000))
        assert response.status == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 413
        assert client.post("/echo", {"after": True}).status == 200  # reconnects


def test_fastapi_application(start_server: Start) -> None:
    server = start_server("--fastapi")
    with PQClient(server.https, ca_file=server.ca) as client:
        assert client.get("/hello").json() == {"hello": "fastapi", "greeting": "from lifespan"}
        assert client.post("/echo", {"a": 1}).json() == {"echo": {"a": 1}}
        bad = client.post("/echo", body=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status == 422
        assert client.get("/openapi.json").json()["openapi"].startswith("3.")
        assert client.connections_opened == 1
    assert server.stop() == 0
    assert "LIFESPAN shutdown" in server.output()


def test_port_in_use_fails_loudly(start_server: Start, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AssertionError, match=r"(?i)address already in use|CannotListen"):
            start_server("--port", str(port))
