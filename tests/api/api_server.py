"""The API app over a fresh SQLite store, served by :func:`qrc.transit.server.serve` in a
subprocess (plain HTTP on loopback), for tests that attack it over real sockets.

Usage: python -m tests.api.api_server DATA_DIR [--tls] [--busy-timeout-ms N]
[--header-timeout S]. Writes ``tokens.json`` (a token per role) to DATA_DIR, then prints
``READY <host> <port>`` once the port accepts connections.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event

from qrc.api.app import create_app
from qrc.api.deps import ApiSettings, AppState
from qrc.transit.ca import default_server_names, ensure_server_tls
from qrc.transit.server import ServerOptions, serve
from tests.api.conftest import ROLES, build_service

REPO = Path(__file__).resolve().parents[2]


class ApiProcess:
    """This module in a subprocess; ``port`` and ``tokens`` are known once it is ready."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.api.api_server", str(data_dir), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(120) or not self.port:
            self.stop()
            raise AssertionError("API server did not start:\n" + "".join(self.lines))
        self.tokens: dict[str, str] = json.loads((data_dir / "tokens.json").read_text())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("READY "):
                self.port = int(line.split()[2])
                self._ready.set()
        self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM, by pid
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(10)
        return code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--busy-timeout-ms", type=int, default=None)
    parser.add_argument("--header-timeout", type=float, default=15.0)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="LOG %(name)s %(message)s")
    data_dir = Path(args.data_dir)
    service = build_service(data_dir)
    if args.busy_timeout_ms is not None:
        # The store waits 10 s for a write lock; a test of the busy store waits less. This
        # listener runs after the store's own (registration order) and overrides it.
        timeout = int(args.busy_timeout_ms)

        def shorter(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA busy_timeout={timeout}")

        event.listen(service.db.engine, "connect", shorter)
        service.db.engine.dispose()
    tokens = {}
    for role in ROLES:
        _client, tokens[role] = service.tokens.create(name=f"{role}-tok", role=role, actor="test")
    (data_dir / "tokens.json").write_text(json.dumps(tokens))
    tls = ensure_server_tls(data_dir, default_server_names("127.0.0.1")) if args.tls else None
    app = create_app(AppState(service, ApiSettings()))

    def ready(addresses: list[tuple[str, int]]) -> None:
        host, port = addresses[0]
        print(f"READY {host} {port}", flush=True)

    try:
        serve(
            app,
            "127.0.0.1",
            0,
            tls,
            on_ready=ready,
            options=ServerOptions(header_timeout=args.header_timeout),
            access_log=sys.stdout,
        )
    finally:
        service.close()
    print("EXITED", flush=True)


if __name__ == "__main__":
    main()
