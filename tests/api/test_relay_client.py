"""Two agents exchange messages through the relay of a real server over PQ TLS
(:class:`qrc.transit.relay_client.Mailbox`). The server runs in a subprocess: this module
with ``--serve DIR`` (the API app with the relay router registered, TLS from
``ensure_server_tls``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.crypto import get_kem, get_signature
from qrc.transit.agents import Agent, AgentIdentity, Directory
from qrc.transit.relay_client import Mailbox, RelayError

REPO = Path(__file__).resolve().parents[2]


def _serve(data_dir: Path) -> None:
    from qrc.api.app import create_app
    from qrc.api.deps import ApiSettings, AppState
    from qrc.transit.ca import ensure_server_tls
    from qrc.transit.server import serve
    from tests.api.conftest import build_service
    from tests.api.test_relay import register_relay

    service = build_service(data_dir)
    tokens = {
        name: service.tokens.create(name=name, role="crypto_user", actor="test")[1]
        for name in ("alice", "bob")
    }
    (data_dir / "tokens.json").write_text(json.dumps(tokens))
    tls = ensure_server_tls(data_dir, ["127.0.0.1", "localhost"])
    app = create_app(AppState(service, ApiSettings()))
    register_relay(app)

    def ready(addresses: list[tuple[str, int]]) -> None:
        print(f"READY {addresses[0][0]} {addresses[0][1]}", flush=True)

    try:
        serve(app, "127.0.0.1", 0, tls, on_ready=ready)
    finally:
        service.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("relay-server")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.api.test_relay_client", "--serve", str(data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("READY "):
            break
    else:
        proc.wait(10)
        raise AssertionError("server did not start:\n" + "".join(lines))
    port = int(lines[-1].split()[2])
    tokens = json.loads((data_dir / "tokens.json").read_text())
    yield f"https://127.0.0.1:{port}/api/v1/security/qrc", str(data_dir / "tls" / "ca.pem"), tokens
    proc.terminate()
    proc.wait(30)


def _agents() -> dict[str, Agent]:
    directory = Directory()
    out = {}
    for name in ("alice", "bob"):
        sig, kem = get_signature("ML-DSA-65").generate(), get_kem("X25519MLKEM768").generate()
        directory.add(AgentIdentity(name, sig.public_key(), kem.public_key()))
        out[name] = Agent(name, sig, kem, directory)
    return out


def test_two_agents_talk_through_the_relay_over_pq_tls(
    server: tuple[str, str, dict[str, str]],
) -> None:
    url, ca, tokens = server
    agents = _agents()
    with (
        Mailbox(agents["alice"], url, token=tokens["alice"], ca_file=ca) as alice,
        Mailbox(agents["bob"], url, token=tokens["bob"], ca_file=ca) as bob,
    ):
        alice.send("bob", b"first", content_type="text/plain")
        alice.send("bob", b"second")
        got = bob.receive()
        assert [(m.sender, m.body) for m in got] == [("alice", b"first"), ("alice", b"second")]
        assert bob.receive() == []  # acknowledged
        bob.send("alice", b"reply")
        assert [m.body for m in alice.receive()] == [b"reply"]
        intruder = Mailbox(agents["bob"], url, token=tokens["alice"], ca_file=ca)
        with intruder, pytest.raises(RelayError, match="404"):  # not alice's queue
            intruder.receive()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=Path, required=True)
    _serve(parser.parse_args().serve)
