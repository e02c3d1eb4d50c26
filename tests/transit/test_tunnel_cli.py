"""``qrc tunnel`` as a user runs it: both ends as real subprocesses (``python -m
qrc.cli.tunnel``), psql and redis-cli through them, a peer certificate issued on the command
line, and a clean stop on SIGTERM with a connection still open."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qrc.transit.tunnel_certs import issue_peer_certificate, write_peer_files
from tests.transit.test_tunnel import Pki, pki  # noqa: F401  (the module's PKI fixture)


class TunnelProcess:
    """One tunnel end in a subprocess; ``port`` is known once it printed READY."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qrc.cli.tunnel", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read_errors, daemon=True)
        self._reader.start()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until READY or exit
        if not line.startswith("READY "):
            self.proc.kill()
            self._reader.join(10)
            raise AssertionError(f"tunnel did not start: {line!r} {''.join(self.errors)!r}")
        self.port = int(line.split()[2])

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def wait_for_log(self, text: str) -> None:
        end = time.monotonic() + 30
        while not any(text in line for line in self.errors):
            if time.monotonic() > end or self.proc.poll() is not None:
                raise AssertionError(f"never logged {text!r}: {''.join(self.errors)}")
            time.sleep(0.02)

    def terminate(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self._reader.join(10)
        return self.proc.returncode, "".join(self.errors)


def _ends(
    pki: Pki,  # noqa: F811
    target: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> tuple[TunnelProcess, TunnelProcess]:
    server = TunnelProcess(
        "server", "--listen", "127.0.0.1:0", "--forward", target,
        "--cert", str(pki.server[0]), "--key", str(pki.server[1]), "--ca", str(pki.ca), *extra,
        env=env,
    )  # fmt: skip
    client = TunnelProcess(
        "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server.port}",
        "--cert", str(pki.client[0]), "--key", str(pki.client[1]), "--ca", str(pki.ca),
        "--verbose",
    )  # fmt: skip
    return server, client


def test_psql_and_redis_cli_through_subprocess_ends_then_sigterm(pki: Pki) -> None:  # noqa: F811
    pg_server, pg_client = _ends(pki, "127.0.0.1:5432")
    redis_server, redis_client = _ends(pki, "127.0.0.1:6379", "--drain-timeout", "0.5")
    try:
        psql = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(pg_client.port), "-U", "postgres", "-d",
             "test", "-tAc", "SELECT count(*) FROM generate_series(1, 100000)"],
            check=False, capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGSSLMODE": "disable"},
        )  # fmt: skip
        assert psql.returncode == 0, psql.stderr
        assert psql.stdout.strip() == "100000"
        cli = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(redis_client.port), "PING"],
            check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert cli.stdout.strip() == "PONG", cli.stderr
        # A connection left open when SIGTERM comes: the end waits, then closes it.
        idle = socket.create_connection(("127.0.0.1", redis_client.port), timeout=30)
        idle.sendall(b"PING\r\n")
        assert idle.recv(100) == b"+PONG\r\n"
        code, err = redis_server.terminate()
        assert code == 0, err
        stats = json.loads(err.strip().splitlines()[-1])
        assert stats["accepted"] == 2
        assert stats["active"] == 0
        assert stats["refused"] == {}
        assert idle.recv(1) == b""  # closed for us, not left hanging
        idle.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", redis_server.port), timeout=5).close()
    finally:
        for end in (redis_client, pg_client, pg_server, redis_server):
            if end.proc.poll() is None:
                code, err = end.terminate()
                assert code == 0, err


def test_issue_on_the_command_line_and_refuse_an_unknown_peer(
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    issued = subprocess.run(
        [sys.executable, "-m", "qrc.cli.tunnel", "issue", "--ca-dir", str(pki.ca.parent),
         "--name", "batch-job", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert (tmp_path / "batch-job.key").stat().st_mode & 0o077 == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
    env["QRC_MASTER_PASSPHRASE"] = "tunnel test passphrase"
    service_dir = tmp_path / "service"
    server, _client = _ends(pki, "127.0.0.1:6379", "--events-data-dir", str(service_dir), env=env)
    _client.terminate()
    good = TunnelProcess(
        "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server.port}",
        "--cert", str(tmp_path / "batch-job.pem"), "--key", str(tmp_path / "batch-job.key"),
        "--ca", str(pki.ca),
    )  # fmt: skip
    bad = TunnelProcess(
        "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server.port}",
        "--cert", str(pki.foreign[0]), "--key", str(pki.foreign[1]), "--ca", str(pki.ca),
    )  # fmt: skip
    replies: list[bytes] = []
    for end in (good, bad):
        with socket.create_connection(("127.0.0.1", end.port), timeout=30) as s:
            s.sendall(b"PING\r\n")
            s.shutdown(socket.SHUT_WR)
            reply = bytearray()
            try:
                while data := s.recv(4096):
                    reply += data
            except ConnectionResetError:
                pass
            replies.append(bytes(reply))
    assert replies == [b"+PONG\r\n", b""]
    for end in (good, bad):
        end.terminate()
    code, err = server.terminate()
    assert code == 0, err
    assert "untrusted_certificate" in err  # logged when refused
    assert json.loads(err.strip().splitlines()[-1])["refused"] == {"untrusted_certificate": 1}
    # ...and in the key service's security events, as `qrc admin events` shows them.
    shown = subprocess.run(
        [sys.executable, "-m", "qrc", "admin", "events", "--type", "tls_handshake_refused",
         "--data-dir", str(service_dir), "--json"],
        check=False, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    (event,) = json.loads(shown.stdout)
    assert event["source"] == "tunnel:server"
    assert event["details"]["reason"] == "untrusted_certificate"


def test_sighup_reloads_a_renewed_certificate_without_dropping_connections(
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert.write_bytes(pki.server[0].read_bytes())
    key.write_bytes(pki.server[1].read_bytes())
    server, client = _ends(Pki(**{**pki.__dict__, "server": (cert, key)}), "127.0.0.1:6379")
    try:
        with socket.create_connection(("127.0.0.1", client.port), timeout=30) as first:
            first.sendall(b"PING\r\n")
            assert first.recv(100) == b"+PONG\r\n"
            renewed = issue_peer_certificate(pki.ca.parent, "db-gateway-renewed", ["127.0.0.1"])
            write_peer_files(renewed, tmp_path, "gw")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for_log("reloaded")
            with socket.create_connection(("127.0.0.1", client.port), timeout=30) as second:
                second.sendall(b"PING\r\n")
                assert second.recv(100) == b"+PONG\r\n"
            first.sendall(b"PING\r\n")  # the connection from before the reload goes on
            assert first.recv(100) == b"+PONG\r\n"
    finally:
        _, client_log = client.terminate()
        code, server_log = server.terminate()
    assert code == 0, server_log
    names = [line.rsplit("authenticated as ", 1)[1].split()[0]
             for line in client_log.splitlines() if "authenticated as" in line]  # fmt: skip
    assert names == ["CN=db-gateway", "CN=db-gateway-renewed"]
    assert json.loads(server_log.strip().splitlines()[-1])["reloads"] == 1
