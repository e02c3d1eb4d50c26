"""Revocation in the tunnel: certificates from the private CA whose keys the key service holds
(``qrc.transit.authority``), both ends as real subprocesses with ``--crl``, Redis behind.

The attacks: a peer whose certificate was revoked after it was issued (refused as soon as the
CA publishes its CRL, with no restart and no signal), and an end given a CRL that is not its
CA's (fails closed: nobody gets through)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from qrc.keys.service import KeyService
from qrc.transit.authority import PrivateCA, ServiceCAKeys
from tests.data.conftest import make_service
from tests.transit.test_tunnel_cli import TunnelProcess

REDIS = "127.0.0.1:6379"


@dataclass
class Issued:
    ca: PrivateCA
    root: Path
    server: tuple[Path, Path]
    clients: dict[str, tuple[Path, Path, str]]  # name -> (cert, key, serial)


def _write(directory: Path, name: str, chain: bytes, key: bytes) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(chain)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return cert_path, key_path


def _authority(directory: Path, service: KeyService) -> PrivateCA:
    authority = PrivateCA(directory, ServiceCAKeys(service.keys, "test"))
    authority.init()
    return authority


@pytest.fixture
def issued(tmp_path: Path) -> Iterator[Issued]:
    service = make_service(tmp_path / "svc")
    try:
        ca = _authority(tmp_path / "ca", service)
        root = tmp_path / "root.pem"
        root.write_bytes(ca.certificate("ml-dsa", "root").public_bytes(serialization.Encoding.PEM))
        chain, key, _ = ca.issue("gateway", kind="server", names=["127.0.0.1"])
        server = _write(tmp_path, "gateway", chain, key)
        clients = {}
        for name in ("job-a", "job-b"):
            chain, key, record = ca.issue(name, kind="client")
            clients[name] = (*_write(tmp_path, name, chain, key), record.serial)
        yield Issued(ca, root, server, clients)
    finally:
        service.close()


def _client_end(issued: Issued, name: str, server_port: int) -> TunnelProcess:
    cert, key, _ = issued.clients[name]
    return TunnelProcess(
        "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server_port}",
        "--cert", str(cert), "--key", str(key), "--ca", str(issued.root),
        "--crl", str(issued.ca.crl_file("ml-dsa")),
    )  # fmt: skip


def _ping(end: TunnelProcess) -> bytes:
    with socket.create_connection(("127.0.0.1", end.port), timeout=30) as s:
        s.sendall(b"PING\r\n")
        s.shutdown(socket.SHUT_WR)
        reply = bytearray()
        try:
            while data := s.recv(4096):
                reply += data
        except ConnectionResetError:
            pass
        return bytes(reply)


def test_a_revoked_peer_is_refused_once_the_crl_is_published(issued: Issued) -> None:
    crl = issued.ca.crl_file("ml-dsa")
    server = TunnelProcess(
        "server", "--listen", "127.0.0.1:0", "--forward", REDIS,
        "--cert", str(issued.server[0]), "--key", str(issued.server[1]),
        "--ca", str(issued.root), "--crl", str(crl), "--reload-check-seconds", "0.1",
    )  # fmt: skip
    a = _client_end(issued, "job-a", server.port)
    b = _client_end(issued, "job-b", server.port)
    try:
        assert _ping(a) == b"+PONG\r\n"
        assert _ping(b) == b"+PONG\r\n"
        issued.ca.revoke(issued.clients["job-a"][2], reason="key_compromise")
        server.wait_for_log("reloaded")  # the new CRL file, picked up without a signal
        assert _ping(a) == b""
        assert _ping(b) == b"+PONG\r\n"  # the others go on
    finally:
        a.terminate()
        b.terminate()
        code, log = server.terminate()
    assert code == 0, log
    assert json.loads(log.strip().splitlines()[-1])["refused"] == {"certificate_revoked": 1}


def test_a_crl_that_is_not_the_cas_fails_closed(issued: Issued, tmp_path: Path) -> None:
    other_service = make_service(tmp_path / "other-svc")
    try:
        other = _authority(tmp_path / "other-ca", other_service)
    finally:
        other_service.close()
    server = TunnelProcess(
        "server", "--listen", "127.0.0.1:0", "--forward", REDIS,
        "--cert", str(issued.server[0]), "--key", str(issued.server[1]),
        "--ca", str(issued.root), "--crl", str(other.crl_file("ml-dsa")),
    )  # fmt: skip
    a = _client_end(issued, "job-a", server.port)
    try:
        assert _ping(a) == b""
    finally:
        a.terminate()
        code, log = server.terminate()
    assert code == 0, log
    assert json.loads(log.strip().splitlines()[-1])["refused"] == {"crl_unavailable": 1}


def test_a_file_that_is_not_a_crl_is_a_clear_error(issued: Issued, tmp_path: Path) -> None:
    junk = tmp_path / "junk.crl"
    junk.write_bytes(b"not a CRL")
    with pytest.raises(AssertionError, match="is not a CRL"):
        TunnelProcess(
            "server", "--listen", "127.0.0.1:0", "--forward", REDIS,
            "--cert", str(issued.server[0]), "--key", str(issued.server[1]),
            "--ca", str(issued.root), "--crl", str(junk),
        )  # fmt: skip
