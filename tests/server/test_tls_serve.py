"""``qrc serve`` over TLS against clients nobody here wrote: the stored TLS mode applied
without a restart (``openssl s_client`` 3.0, curl and Python's ``ssl``, classical only, are
refused under pq-only and admitted under hybrid-preferred, each recorded), and certificates
renewed while a connection stays open."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL

from qrc.transit import tls as pqtls
from tests.server.serve_process import API, QrcServe

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")


def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def _s_client(port: int, ca: Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-brief",
        ],
        check=False,
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QrcServe]:
    served = QrcServe(tmp_path_factory.mktemp("tls-mode"), {"QRC_TLS_CHECK_SECONDS": "0.2"})
    yield served
    served.stop()


def _http_over(conn: SSL.Connection) -> bytes:
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b'"status"' not in answer:
        answer += conn.recv(4096)
    return answer


def _open(port: int, ca: Path, mode: pqtls.Mode) -> SSL.Connection:
    sock = socket.create_connection(("127.0.0.1", port))
    conn = pqtls.client_connection(pqtls.client_context(ca, mode=mode), sock, "127.0.0.1")
    conn.do_handshake()
    return conn


@pytest.mark.skipif(OPENSSL is None or CURL is None, reason="openssl or curl not installed")
def test_tls_mode_follows_the_stored_policy_without_restart(server: QrcServe) -> None:
    held = _open(server.port, server.ca, "pq-only")
    assert _http_over(held).startswith(b"HTTP/1.1 200")

    refused = _s_client(server.port, server.ca)
    assert refused.returncode != 0
    assert "handshake failure" in refused.stderr
    curl = subprocess.run(
        [CURL, "-sS", "--cacert", str(server.ca), f"{server.url}/health"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert curl.returncode == 35, curl.stderr  # CURLE_SSL_CONNECT_ERROR
    _until(lambda: bool(server.security_events("tls_handshake_refused")), "refusal recorded")

    with server.client() as admin:
        changed = admin.post(f"{API}/protocols/update", json={"tls_mode": "hybrid-preferred"})
        assert changed.status == 200, changed.body
    _until(lambda: _s_client(server.port, server.ca).returncode == 0, "s_client admitted")
    admitted = _s_client(server.port, server.ca)
    assert "Verification: OK" in admitted.stderr
    assert "Signature type: ECDSA" in admitted.stderr
    assert "Server Temp Key: X25519" in admitted.stderr
    curl = subprocess.run(
        [CURL, "-sS", "--cacert", str(server.ca), f"{server.url}/health"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert '"status":"ok"' in curl.stdout
    context = ssl.create_default_context(cafile=str(server.ca))
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        assert conn.version() == "TLSv1.3"
    _until(lambda: bool(server.security_events("classical_tls_handshake")), "classical recorded")
    event = server.security_events("classical_tls_handshake")[0]
    assert "X25519 (ecdsa_secp256r1_sha256, ECDSA-secp256r1)" in str(event["details"])
    metrics = server.metrics()
    assert (
        'qrc_tls_handshakes_by_certificate_total{group="X25519",'
        'signature="ecdsa_secp256r1_sha256",certificate="ECDSA-secp256r1"}'
    ) in metrics
    assert 'qrc_tls_handshakes_refused_total{alert="handshake_failure"}' in metrics
    # The connection made under the old mode was never dropped.
    assert _http_over(held).startswith(b"HTTP/1.1 200")
    held.close()


def _serial(port: int, ca: Path, mode: pqtls.Mode) -> tuple[int, str]:
    conn = _open(port, ca, mode)
    try:
        cert = conn.get_peer_certificate(as_cryptography=True)
        assert cert is not None
        return cert.serial_number, pqtls.certificate_algorithm(cert)
    finally:
        conn.close()


def test_certificates_renew_while_serving(tmp_path: Path) -> None:
    # Certificates for 8.6 s, renewed with a third left: a new pair every few seconds.
    server = QrcServe(
        tmp_path / "data", {"QRC_TLS_CERT_DAYS": "0.0001", "QRC_TLS_CHECK_SECONDS": "0.2"}
    )
    try:
        held = _open(server.port, server.ca, "pq-only")
        assert _http_over(held).startswith(b"HTTP/1.1 200")
        ml_dsa = _serial(server.port, server.ca, "pq-only")
        ecdsa = _serial(server.port, server.ca, "hybrid-preferred")
        assert (ml_dsa[1], ecdsa[1]) == ("ML-DSA-65", "ECDSA-secp256r1")
        _until(
            lambda: (
                _serial(server.port, server.ca, "pq-only")[0] != ml_dsa[0]
                and _serial(server.port, server.ca, "hybrid-preferred")[0] != ecdsa[0]
            ),
            "both certificates renewed",
        )
        # New connections verify the new certificates against the same CA bundle...
        renewed = x509.load_pem_x509_certificate(
            (server.data_dir / "tls" / "server.pem").read_bytes()
        )
        assert renewed.serial_number != ml_dsa[0]
        # ... and the connection opened before the renewal is still served.
        assert _http_over(held).startswith(b"HTTP/1.1 200")
        held.close()
        assert any("TLS certificates renewed" in line for line in server.lines)
    finally:
        server.stop()
    assert server.process.returncode == 0
