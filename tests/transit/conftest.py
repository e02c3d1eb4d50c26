"""Shared TLS material for the transit tests (one CA per test session: ML-DSA keygen is
cheap, but certificates are reused so that each test reads as what it checks)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qrc.transit.ca import TLSFiles, ensure_server_tls
from tests.server.conftest import service  # noqa: F401 - a key service on SQLite


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return ensure_server_tls(tmp_path_factory.mktemp("pki"), ["localhost", "127.0.0.1", "::1"])


@pytest.fixture(scope="session")
def other_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A second, unrelated CA (a client trusting it must refuse our server)."""
    return ensure_server_tls(tmp_path_factory.mktemp("other-pki"), ["localhost", "127.0.0.1"])


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


class ServerProcess:
    """``asgi_server.py`` in a subprocess; ``port`` is known once it printed READY."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("asgi_server.py")), str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(60):
            self.stop()
            raise AssertionError("server did not start:\n" + "".join(self.lines))
        if not self.port:
            self.stop()
            raise AssertionError("server exited:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("READY "):
                self.port = int(line.split()[2])
                self._ready.set()
        self._ready.set()

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def output(self) -> str:
        self._reader.join(10)
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM, by pid
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(tmp_path / f"data{len(started)}", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
