"""PQ TLS contexts: real TLS 1.3 handshakes between our client and server contexts, both
in memory and over a loopback socket pair."""

from __future__ import annotations

import datetime
import socket
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from qrc.transit import tls
from qrc.transit.bench import handshake_in_memory
from qrc.transit.ca import TLSFiles


def _handshake(
    server_ctx: SSL.Context, client_ctx: SSL.Context, hostname: str = "localhost"
) -> tuple[SSL.Connection, SSL.Connection]:
    client = tls.client_connection(client_ctx, None, hostname)
    server = SSL.Connection(server_ctx, None)
    handshake_in_memory(client, server)
    return client, server


def test_pq_only_negotiates_x25519mlkem768_with_ml_dsa(tls_files: TLSFiles) -> None:
    seen: list[tuple[str, str]] = []
    server_ctx = tls.server_context(
        tls_files.cert, tls_files.key, on_handshake=lambda g, c: seen.append((g, c))
    )
    client, server = _handshake(server_ctx, tls.client_context(tls_files.ca))
    assert tls.negotiated_group(client) == tls.negotiated_group(server) == "X25519MLKEM768"
    assert tls.is_pq_group(tls.negotiated_group(client))
    assert client.get_protocol_version_name() == "TLSv1.3"
    assert tls.peer_certificate_algorithm(client) == "ML-DSA-65"
    assert tls.peer_certificate_algorithm(server) is None  # no client certificate
    assert seen == [("X25519MLKEM768", client.get_cipher_name())]


def test_over_a_socket_pair(tls_files: TLSFiles) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key)
    a, b = socket.socketpair()
    with a, b:
        server = SSL.Connection(server_ctx, a)
        server.set_accept_state()
        errors: list[Exception] = []

        def serve_one() -> None:
            try:
                server.do_handshake()
                server.sendall(server.recv(100).upper())
            except Exception as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=serve_one)
        thread.start()
        client = tls.client_connection(tls.client_context(tls_files.ca), b, "localhost")
        client.do_handshake()
        client.sendall(b"ping")
        assert client.recv(100) == b"PING"
        thread.join(10)
        assert not errors
        assert tls.negotiated_group(client) == "X25519MLKEM768"


def test_classical_client_fails_against_pq_only(tls_files: TLSFiles) -> None:
    alerts: list[str] = []
    done: list[str] = []
    server_ctx = tls.server_context(
        tls_files.cert,
        tls_files.key,
        on_handshake=lambda g, _c: done.append(g),
        on_handshake_failure=alerts.append,
    )
    classical = tls.client_context(tls_files.ca, groups=("X25519",))
    with pytest.raises(SSL.Error):
        _handshake(server_ctx, classical)
    assert alerts == ["handshake_failure"]
    assert done == []


def test_classical_client_succeeds_against_hybrid_preferred_and_is_flagged(
    tls_files: TLSFiles,
) -> None:
    seen: list[str] = []
    server_ctx = tls.server_context(
        tls_files.cert,
        tls_files.key,
        mode="hybrid-preferred",
        on_handshake=lambda g, _c: seen.append(g),
    )
    client, _ = _handshake(server_ctx, tls.client_context(tls_files.ca, groups=("X25519",)))
    assert tls.negotiated_group(client) == "X25519"
    assert seen == ["X25519"]
    assert not tls.is_pq_group(seen[0])  # what the service records and flags
    # A PQ-capable client still gets the hybrid group from the same server.
    client, _ = _handshake(server_ctx, tls.client_context(tls_files.ca))
    assert tls.negotiated_group(client) == "X25519MLKEM768"


def test_hybrid_preferred_server_prefers_pq_even_at_the_cost_of_a_retry(
    tls_files: TLSFiles,
) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key, mode="hybrid-preferred")
    # Key share for X25519 only, but X25519MLKEM768 supported: the server asks again
    # (HelloRetryRequest) rather than settle for classical.
    client_ctx = tls.client_context(tls_files.ca, groups=("*X25519", "X25519MLKEM768"))
    client, _ = _handshake(server_ctx, client_ctx)
    assert tls.negotiated_group(client) == "X25519MLKEM768"


def test_hybrid_preferred_client_against_a_classical_server(tls_files: TLSFiles) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key, groups=("X25519",))
    client, _ = _handshake(server_ctx, tls.client_context(tls_files.ca, mode="hybrid-preferred"))
    assert tls.negotiated_group(client) == "X25519"
    with pytest.raises(SSL.Error):
        _handshake(server_ctx, tls.client_context(tls_files.ca))  # pq-only client refuses


@pytest.mark.parametrize("group", ["SecP384r1MLKEM1024", "MLKEM1024", "SecP256r1MLKEM768"])
def test_other_pq_groups(tls_files: TLSFiles, group: str) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key)
    client, _ = _handshake(server_ctx, tls.client_context(tls_files.ca, groups=(group,)))
    assert tls.negotiated_group(client) == group
    assert tls.is_pq_group(group)


def test_wrong_ca_fails(tls_files: TLSFiles, other_tls_files: TLSFiles) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key)
    with pytest.raises(SSL.Error, match="certificate verify failed"):
        _handshake(server_ctx, tls.client_context(other_tls_files.ca))


@pytest.mark.parametrize("hostname", ["other.example", "127.0.0.2", "::2", "localhost.evil"])
def test_wrong_hostname_fails(tls_files: TLSFiles, hostname: str) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key)
    with pytest.raises(SSL.Error, match="certificate verify failed"):
        _handshake(server_ctx, tls.client_context(tls_files.ca), hostname)


@pytest.mark.parametrize("hostname", ["localhost", "LOCALHOST", "127.0.0.1", "::1", "[::1]"])
def test_right_hostnames_pass(tls_files: TLSFiles, hostname: str) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key)
    client, _ = _handshake(server_ctx, tls.client_context(tls_files.ca), hostname)
    assert tls.negotiated_group(client) == "X25519MLKEM768"


def test_tls12_is_refused(tls_files: TLSFiles) -> None:
    server_ctx = tls.server_context(tls_files.cert, tls_files.key)
    old = SSL.Context(SSL.TLS_METHOD)
    old.set_max_proto_version(SSL.TLS1_2_VERSION)
    client = SSL.Connection(old, None)
    client.set_connect_state()
    with pytest.raises(SSL.Error):
        handshake_in_memory(client, SSL.Connection(server_ctx, None))


def test_configuration_errors(tls_files: TLSFiles) -> None:
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(tls_files.cert, tls_files.key, groups=("NoSuchGroup",))
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(tls_files.cert, tls_files.key, mode="classical")  # type: ignore[arg-type]
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(tls_files.cert, tls_files.ca)  # a certificate is not a key
    with pytest.raises(tls.TLSConfigError):
        tls.client_context(tls_files.key)  # a key is not a CA certificate


def test_group_lists() -> None:
    assert tls.groups_for("pq-only", server=True).split(":")[0] == "X25519MLKEM768"
    assert "X25519:" not in tls.groups_for("pq-only", server=False)
    pq, classical = tls.groups_for("hybrid-preferred", server=True).split("/")
    assert set(pq.split(":")) == set(tls.PQ_GROUPS)
    assert set(classical.split(":")) == set(tls.CLASSICAL_GROUPS)
    assert not any(tls.is_pq_group(g) for g in tls.CLASSICAL_GROUPS)
    assert not tls.is_pq_group(None)


def test_a_failing_hook_does_not_break_the_handshake(tls_files: TLSFiles) -> None:
    def boom(_group: str, _cipher: str) -> None:
        raise RuntimeError("metrics backend down")

    server_ctx = tls.server_context(tls_files.cert, tls_files.key, on_handshake=boom)
    client, _ = _handshake(server_ctx, tls.client_context(tls_files.ca))
    assert tls.negotiated_group(client) == "X25519MLKEM768"


def test_pq_only_client_refuses_a_classical_server_certificate(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, None)
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = tls.server_context(tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(SSL.Error):
        _handshake(server_ctx, tls.client_context(tmp_path / "c.pem"))
    client, _ = _handshake(
        server_ctx, tls.client_context(tmp_path / "c.pem", mode="hybrid-preferred")
    )
    assert tls.peer_certificate_algorithm(client) == "Ed25519"
    assert tls.negotiated_group(client) == "X25519MLKEM768"
