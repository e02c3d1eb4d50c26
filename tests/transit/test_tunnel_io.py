"""The tunnel's data path on memory BIOs, without sockets: what a transport keeps stays
intact although the read and record buffers are reused, and one ``send`` seals a whole
write. test_tunnel.py carries real traffic through both ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pytest
from OpenSSL import SSL

from qrc.transit import tls
from qrc.transit.ca import CertificateAuthority
from qrc.transit.tunnel import client_context, server_context
from qrc.transit.tunnel_certs import issue_peer_certificate, write_peer_files
from qrc.transit.tunnel_io import Relay, Side, TLSStream


class KeepingTransport(asyncio.Transport):
    """Never sends and keeps what it is given as given, as asyncio does from Python 3.12 on
    when the socket cannot take it all at once."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[memoryview] = []

    def write(self, data: Any) -> None:
        self.kept.append(memoryview(data))

    def get_write_buffer_size(self) -> int:
        return sum(len(v) for v in self.kept)

    def received(self) -> bytes:
        return b"".join(bytes(v) for v in self.kept)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[SSL.Context, SSL.Context]:
    d = tmp_path_factory.mktemp("tunnel-io-pki")
    ca = CertificateAuthority.create(d / "ca")
    srv = write_peer_files(issue_peer_certificate(d / "ca", "srv", ["127.0.0.1"]), d, "srv")
    cli = write_peer_files(issue_peer_certificate(d / "ca", "cli"), d, "cli")
    return server_context(*srv, ca.ca_file), client_context(*cli, ca.ca_file)


def _drain(conn: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            out += conn.bio_read(1 << 20)
        except SSL.WantReadError:
            return out


def _connected(contexts: tuple[SSL.Context, SSL.Context]) -> tuple[SSL.Connection, ...]:
    server = SSL.Connection(contexts[0], None)
    server.set_accept_state()
    client = tls.client_connection(contexts[1], None, "127.0.0.1")
    for _ in range(10):
        for conn in (client, server):
            with contextlib.suppress(SSL.WantReadError):
                conn.do_handshake()
        to_server, to_client = _drain(client), _drain(server)
        if to_server:
            server.bio_write(to_server)
        if to_client:
            client.bio_write(to_client)
    for conn in (client, server):
        assert conn.get_peer_certificate() is not None, "handshake did not finish"
    return server, client


def _feed(side: Side, data: bytes, step: int) -> None:
    """Hand ``data`` to ``side`` as its transport would, ``step`` bytes per read."""
    for at in range(0, len(data), step):
        buffer = side.get_buffer(-1)
        chunk = data[at : at + min(step, len(buffer))]
        buffer[: len(chunk)] = chunk
        side.buffer_updated(len(chunk))


def test_kept_writes_stay_intact_both_ways(
    contexts: tuple[SSL.Context, SSL.Context],
) -> None:
    async def run() -> None:
        server, client = _connected(contexts)
        tls_side, plain = Side(), Side()
        tls_out, plain_out = KeepingTransport(), KeepingTransport()
        tls_side.connection_made(tls_out)
        plain.connection_made(plain_out)
        relay = Relay(TLSStream(server, tls_side), plain)
        relay.start()

        # TLS -> plain: far more than one read buffer, in reads of odd sizes.
        to_plain = os.urandom(3 << 20)
        view = memoryview(to_plain)
        while view:
            view = view[client.send(view) :]
        _feed(tls_side, _drain(client), 100_003)
        assert plain_out.received() == to_plain

        # plain -> TLS: whatever the TLS transport kept decrypts to what was sent.
        to_tls = os.urandom(3 << 20)
        _feed(plain, to_tls, 70_001)
        client.bio_write(tls_out.received())
        got = bytearray()
        with pytest.raises(SSL.WantReadError):
            while True:
                got += client.recv(1 << 16)
        assert bytes(got) == to_tls
        assert relay.bytes_to_tls == len(to_tls)
        assert relay.bytes_from_tls == len(to_plain)
        assert not relay.done.done()

    asyncio.run(run())


def test_one_send_seals_a_whole_write(contexts: tuple[SSL.Context, SSL.Context]) -> None:
    _server, client = _connected(contexts)
    data = os.urandom(200_000)  # 13 records
    assert client.send(data) == len(data)
