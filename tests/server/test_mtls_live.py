"""``qrc ca init`` while ``qrc serve`` runs: at the TLS maintainer's next pass the listener
presents certificates from the new CA and asks for client certificates, and a certificate
issued for a token authenticates as it. No restart, and the connection made before goes on."""

from __future__ import annotations

import socket
from pathlib import Path

from cryptography import x509

from qrc.transit import tls as pqtls
from tests.server.serve_process import API, QrcServe
from tests.server.test_mtls import _ca, _get, _token, _until


def _server_issuer(server: QrcServe) -> str:
    ctx = pqtls.client_context(server.ca)
    sock = socket.create_connection(("127.0.0.1", server.port))
    conn = pqtls.client_connection(ctx, sock, "127.0.0.1")
    try:
        conn.do_handshake()
        certificate = conn.get_peer_certificate(as_cryptography=True)
        assert isinstance(certificate, x509.Certificate)
        return certificate.issuer.rfc4514_string()
    finally:
        sock.close()


def test_a_ca_made_while_serving_turns_mutual_tls_on(tmp_path: Path) -> None:
    server = QrcServe(tmp_path / "data", {"QRC_TLS_CHECK_SECONDS": "0.2"})
    try:
        with server.client() as before:  # a connection from before the change
            assert before.get(f"{API}/keys").status == 200
            assert "intermediate" not in _server_issuer(server)
            viewer = _token(server, "late-agent", "viewer")
            _ca(server.data_dir, "init")
            _ca(server.data_dir, "issue", "late-agent", "--token-id", viewer,
                "--out", str(tmp_path / "cert"))  # fmt: skip
            _until(lambda: _get(server, f"{API}/keys", tmp_path / "cert") == 200, "mutual TLS")
            assert "qrc intermediate CA" in _server_issuer(server)
            assert _get(server, f"{API}/keys", None) == 401  # no certificate, no token
            assert _get(server, f"{API}/tokens", tmp_path / "cert") == 403  # a viewer's rights
            assert before.get(f"{API}/keys").status == 200
    finally:
        server.stop()
