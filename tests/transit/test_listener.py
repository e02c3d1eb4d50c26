"""One listener, two certificate families: who gets which, what is recorded, and a context
replaced while connections stay open. Real clients: qrc's own (pyOpenSSL on OpenSSL 4),
``openssl s_client`` (the system's OpenSSL 3.0, classical groups only) and Python's ``ssl``."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL

from qrc.transit import tls as pqtls
from qrc.transit.ca import TLSFiles
from qrc.transit.listener import HandshakeCounters, HandshakeRecord, ListenerTLS
from qrc.transit.pki import ensure_listener_tls

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def dual_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return ensure_listener_tls(tmp_path_factory.mktemp("dual"), ["localhost", "127.0.0.1"])


class Listener:
    """A TLS echo of one line per connection on a thread, over a :class:`ListenerTLS`."""

    def __init__(self, files: TLSFiles, **kwargs: object) -> None:
        self.records: list[HandshakeRecord] = []
        self.refused: list[str] = []
        self.counters = HandshakeCounters()

        def record(r: HandshakeRecord) -> None:
            self.records.append(r)
            self.counters.count(r)

        def refuse(alert: str) -> None:
            self.refused.append(alert)
            self.counters.count_refused(alert)

        self.tls = ListenerTLS(files, on_record=record, on_failure=refuse, **kwargs)  # type: ignore[arg-type]
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.done = threading.Semaphore(0)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn = SSL.Connection(self.tls.context, raw)
        conn.set_accept_state()
        try:
            conn.do_handshake()
            while data := conn.recv(1024):
                conn.sendall(data)
        except SSL.Error:
            pass
        finally:
            raw.close()
            self.done.release()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def listener(dual_files: TLSFiles) -> Iterator[Listener]:
    server = Listener(dual_files, mode="pq-only")
    yield server
    server.close()


def _connect(port: int, ca: Path, mode: pqtls.Mode, sigalgs: str | None = None) -> SSL.Connection:
    ctx = pqtls.client_context(ca, mode=mode)
    if sigalgs is not None:
        assert Binding.lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs.encode()) == 1
    conn = pqtls.client_connection(ctx, socket.create_connection(("127.0.0.1", port)), "localhost")
    conn.do_handshake()
    return conn


def _s_client(port: int, ca: Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-brief",
        ],
        check=False,
        input="ping\n",
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_pq_client_gets_ml_dsa_and_a_browser_like_client_ecdsa(
    listener: Listener, dual_files: TLSFiles
) -> None:
    # qrc's pq-only client offers ML-DSA only.
    conn = _connect(listener.port, dual_files.ca, "pq-only")
    assert pqtls.negotiated_group(conn) == "X25519MLKEM768"
    assert pqtls.peer_certificate_algorithm(conn) == "ML-DSA-65"
    conn.close()
    # Chromium offers ML-DSA too, ahead of ECDSA here: the server's preference decides.
    conn = _connect(
        listener.port, dual_files.ca, "hybrid-preferred", "mldsa65:ecdsa_secp256r1_sha256"
    )
    assert pqtls.negotiated_group(conn) == "X25519MLKEM768"
    assert pqtls.peer_certificate_algorithm(conn) == "ECDSA-secp256r1"
    conn.close()
    assert listener.done.acquire(timeout=10) and listener.done.acquire(timeout=10)
    # (The server threads may finish their handshakes in either order.)
    assert sorted((r.group, r.signature, r.certificate) for r in listener.records) == [
        ("X25519MLKEM768", "ecdsa_secp256r1_sha256", "ECDSA-secp256r1"),
        ("X25519MLKEM768", "mldsa65", "ML-DSA-65"),
    ]
    text = listener.counters.render()
    assert (
        'qrc_tls_handshakes_by_certificate_total{group="X25519MLKEM768",'
        'signature="ecdsa_secp256r1_sha256",certificate="ECDSA-secp256r1"} 1'
    ) in text


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_openssl_3_0_refused_under_pq_only_then_admitted_after_a_reload(
    listener: Listener, dual_files: TLSFiles
) -> None:
    held = _connect(listener.port, dual_files.ca, "pq-only")  # open across the reload
    refused = _s_client(listener.port, dual_files.ca)
    assert refused.returncode != 0
    assert listener.refused == ["handshake_failure"]

    listener.tls.reload(mode="hybrid-preferred")
    assert listener.tls.mode == "hybrid-preferred"
    admitted = _s_client(listener.port, dual_files.ca)
    assert admitted.returncode == 0, admitted.stderr
    assert "Verification: OK" in admitted.stderr
    assert "Signature type: ECDSA" in admitted.stderr
    assert listener.done.acquire(timeout=10) and listener.done.acquire(timeout=10)
    classical = [r for r in listener.records if not r.post_quantum]
    assert [(r.group, r.certificate) for r in classical] == [("X25519", "ECDSA-secp256r1")]
    # The connection made before the reload still works.
    held.sendall(b"still here")
    assert held.recv(100) == b"still here"
    held.close()


def test_python_ssl_verifies_the_ecdsa_chain_with_the_bundle(
    dual_files: TLSFiles,
) -> None:
    server = Listener(dual_files, mode="hybrid-preferred")
    try:
        ctx = ssl.create_default_context(cafile=str(dual_files.ca))
        with (
            socket.create_connection(("127.0.0.1", server.port)) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
            assert conn.version() == "TLSv1.3"
        assert server.done.acquire(timeout=10)
        assert [(r.group, r.certificate) for r in server.records] == [("X25519", "ECDSA-secp256r1")]
    finally:
        server.close()


def test_certificate_policies_choose_what_is_loaded(dual_files: TLSFiles) -> None:
    ml_dsa = Listener(dual_files, mode="hybrid-preferred", certificates="ml-dsa")
    ecdsa = Listener(dual_files, mode="pq-only", certificates="ecdsa")
    try:
        conn = _connect(ml_dsa.port, dual_files.ca, "hybrid-preferred")
        assert pqtls.peer_certificate_algorithm(conn) == "ML-DSA-65"
        conn.close()
        conn = _connect(ecdsa.port, dual_files.ca, "hybrid-preferred")
        assert pqtls.peer_certificate_algorithm(conn) == "ECDSA-secp256r1"
        assert pqtls.negotiated_group(conn) == "X25519MLKEM768"
        conn.close()
        # A client that insists on ML-DSA cannot use an ECDSA-only listener.
        with pytest.raises(SSL.Error):
            _connect(ecdsa.port, dual_files.ca, "pq-only")
    finally:
        ml_dsa.close()
        ecdsa.close()


def test_bundle_holds_both_roots_and_renewal_keeps_it(tmp_path: Path) -> None:
    files = ensure_listener_tls(tmp_path, ["localhost"])
    bundle = files.ca.read_bytes()
    assert bundle.count(b"BEGIN CERTIFICATE") == 2
    assert files.ecdsa_ca is not None
    assert files.ecdsa_ca.read_bytes() in bundle
    again = ensure_listener_tls(tmp_path, ["localhost"])
    assert again.ca.read_bytes() == bundle
    assert again.ecdsa_cert is not None and files.ecdsa_cert is not None
    first = files.ecdsa_cert.read_bytes()
    assert again.ecdsa_cert.read_bytes() == first  # nothing due
    renamed = ensure_listener_tls(tmp_path, ["localhost", "qrc.example"])
    assert renamed.ecdsa_cert is not None
    assert renamed.ecdsa_cert.read_bytes() != first
    assert renamed.ca.read_bytes() == bundle
