"""Mutual TLS to a real ``qrc serve``: client certificates from ``qrc ca`` authenticate as the
API token they were issued for (its role); expired and revoked certificates are refused in
the handshake and recorded; the CRL is published by the service."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL

from qrc.transit import tls as pqtls
from qrc.transit.client import PQClient
from tests.server.serve_process import API, QrcServe


def _ca(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from qrc.cli.ca import ca_app; ca_app()",
            *args,
            "--data-dir",
            str(data_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(data_dir)},
    )
    return done.stdout


def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QrcServe]:
    data_dir = tmp_path_factory.mktemp("mtls")
    _ca(data_dir, "init")
    # hybrid-preferred: curl and Python's ssl (OpenSSL 3.0, classical groups) may connect.
    served = QrcServe(
        data_dir, {"QRC_TLS_CHECK_SECONDS": "0.2", "QRC_TLS_MODE": "hybrid-preferred"}
    )
    yield served
    served.stop()


def _get(server: QrcServe, path: str, cert_dir: Path | None, mode: pqtls.Mode = "pq-only") -> int:
    """GET over TLS 1.3 (X25519MLKEM768), with a client certificate if given: the status.
    (A pq-only client signs with ML-DSA only: an ECDSA client certificate needs the other
    mode.)"""
    ctx = pqtls.client_context(server.ca, mode=mode)
    if cert_dir is not None:
        ctx.use_certificate_chain_file(str(cert_dir / "cert.pem"))
        ctx.use_privatekey_file(str(cert_dir / "key.pem"))
    sock = socket.create_connection(("127.0.0.1", server.port))
    conn = pqtls.client_connection(ctx, sock, "127.0.0.1")
    try:
        conn.do_handshake()
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n" not in answer:
            answer += conn.recv(4096)
        return int(answer.split(b" ", 2)[1])
    finally:
        sock.close()


def _token(server: QrcServe, name: str, role: str) -> str:
    with server.client() as admin:
        made = admin.post(f"{API}/tokens", json={"name": name, "role": role})
        assert made.status == 201, made.body
        token_id: str = made.json()["id"]
        return token_id


def _refused(server: QrcServe, cert_dir: Path, mode: pqtls.Mode = "pq-only") -> str:
    try:
        status = _get(server, f"{API}/keys", cert_dir, mode)
    except SSL.Error as exc:
        return str(exc)
    return f"answered {status}"


def test_client_certificate_authenticates_as_its_token(server: QrcServe, tmp_path: Path) -> None:
    viewer = _token(server, "reporting-agent", "viewer")
    _ca(
        server.data_dir,
        "issue",
        "reporting-agent",
        "--token-id",
        viewer,
        "--out",
        str(tmp_path / "a"),
    )
    assert _get(server, f"{API}/keys", None) == 401
    assert _get(server, f"{API}/keys", tmp_path / "a") == 200
    # The viewer role, not more: creating tokens is for admins.
    assert _get(server, f"{API}/tokens", tmp_path / "a") == 403
    # Renewed: a new key and certificate for the same identity.
    serial = json.loads(_ca(server.data_dir, "list", "--json"))[-1]["serial"]
    _ca(server.data_dir, "renew", serial, "--out", str(tmp_path / "a2"))
    assert (tmp_path / "a2" / "key.pem").read_bytes() != (tmp_path / "a" / "key.pem").read_bytes()
    assert _get(server, f"{API}/keys", tmp_path / "a2") == 200
    assert _ca(server.data_dir, "crl", "--family", "ecdsa").startswith("-----BEGIN X509 CRL-----")
    # A certificate of ours that stands for no token authenticates nobody.
    _ca(server.data_dir, "issue", "stray", "--out", str(tmp_path / "b"))
    assert _get(server, f"{API}/keys", tmp_path / "b") == 401


def test_revoked_and_expired_certificates_are_refused_and_recorded(
    server: QrcServe, tmp_path: Path
) -> None:
    viewer = _token(server, "short-lived", "viewer")
    issued = json.loads(
        _ca(
            server.data_dir,
            "issue",
            "revoked-agent",
            "--token-id",
            viewer,
            "--out",
            str(tmp_path / "r"),
            "--json",
        )
    )
    assert _get(server, f"{API}/keys", tmp_path / "r") == 200
    _ca(server.data_dir, "revoke", issued["serial"], "--reason", "key_compromise")
    # The service publishes the new CRL at once (no token needed)...
    crl_der = None

    def published() -> bool:
        nonlocal crl_der
        with PQClient(server.url, ca_file=str(server.ca)) as anonymous:
            answer = anonymous.get(f"{API}/ca/crl/ml-dsa")
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/pkix-crl"
        crl_der = answer.body
        crl = x509.load_der_x509_crl(answer.body)
        return crl.get_revoked_certificate_by_serial_number(int(issued["serial"], 16)) is not None

    _until(published, "the revocation in the published CRL")
    # ... and the listener loads it for new handshakes.
    _until(
        lambda: "answered" not in _refused(server, tmp_path / "r"), "revoked certificate refused"
    )
    assert crl_der is not None

    # A certificate that expires nine seconds from now.
    _ca(
        server.data_dir,
        "issue",
        "brief-agent",
        "--token-id",
        viewer,
        "--days",
        "0.0001",
        "--family",
        "ecdsa",
        "--out",
        str(tmp_path / "e"),
    )
    expires = x509.load_pem_x509_certificate((tmp_path / "e" / "cert.pem").read_bytes())
    assert _get(server, f"{API}/keys", tmp_path / "e", "hybrid-preferred") == 200
    _until(lambda: time.time() > expires.not_valid_after_utc.timestamp() + 1, "expiry", 30)
    assert "answered" not in _refused(server, tmp_path / "e", "hybrid-preferred")

    def recorded(alert: str) -> bool:
        return any(
            alert in str(event["details"])
            for event in server.security_events("tls_handshake_refused")
        )

    _until(lambda: recorded("certificate_revoked"), "revocation refusal recorded")
    _until(lambda: recorded("certificate_expired"), "expiry refusal recorded")
    metrics = server.metrics()
    assert 'qrc_tls_handshakes_refused_total{alert="certificate_revoked"}' in metrics
    assert 'qrc_tls_handshakes_refused_total{alert="certificate_expired"}' in metrics


def test_the_listener_certificates_come_from_the_same_ca(server: QrcServe) -> None:
    trust = server.data_dir / "ca" / "trust.pem"
    for mode, algorithm, issuer in (
        ("pq-only", "ML-DSA-65", "qrc intermediate CA (ML-DSA)"),
        ("hybrid-preferred", "ECDSA-secp256r1", "qrc intermediate CA (ECDSA)"),
    ):
        # Verified against the CA's roots alone: leaf, then intermediate from the server.
        ctx = pqtls.client_context(trust, mode=mode)  # type: ignore[arg-type]
        sock = socket.create_connection(("127.0.0.1", server.port))
        conn = pqtls.client_connection(ctx, sock, "127.0.0.1")
        try:
            conn.do_handshake()
            leaf = conn.get_peer_certificate(as_cryptography=True)
            assert leaf is not None
            assert pqtls.certificate_algorithm(leaf) == algorithm
            assert issuer in leaf.issuer.rfc4514_string()
            assert pqtls.negotiated_group(conn) == "X25519MLKEM768"
        finally:
            sock.close()
    listed = json.loads(_ca(server.data_dir, "list", "--json"))
    assert {(r["family"], r["kind"]) for r in listed} >= {("ml-dsa", "server"), ("ecdsa", "server")}
    # qrc's clients keep the bundle they had: it gained the CA's roots.
    assert trust.read_bytes() in server.ca.read_bytes()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_and_python_ssl_with_an_ecdsa_client_certificate(
    server: QrcServe, tmp_path: Path
) -> None:
    viewer = _token(server, "curl-agent", "viewer")
    _ca(server.data_dir, "issue", "curl-agent", "--token-id", viewer, "--family", "ecdsa",
        "--out", str(tmp_path / "c"))  # fmt: skip
    trust = server.data_dir / "ca" / "trust.pem"
    cert, key = tmp_path / "c" / "cert.pem", tmp_path / "c" / "key.pem"
    curl = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(trust),
         "--cert", str(cert), "--key", str(key), f"{server.url}{API}/keys"],
        check=False,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert curl.stdout == "200", curl.stderr
    context = ssl.create_default_context(cafile=str(trust))
    context.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(f"GET {API}/keys HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert conn.recv(100).startswith(b"HTTP/1.1 200")
    # Without the certificate, curl is a stranger.
    anonymous = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(trust),
         f"{server.url}{API}/keys"],
        check=False,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert anonymous.stdout == "401"
