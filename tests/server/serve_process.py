"""``qrc serve`` in a subprocess on a free port, for tests that use real clients against it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from qrc.transit.client import PQClient

API = "/api/v1/security/qrc"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class QrcServe:
    """``qrc serve --dev`` with ``env`` on top of a clean ``QRC_*`` environment."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *args: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
        clean |= {"QRC_BENCH_ON_START": "0", **(env or {})}
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qrc",
                "serve",
                "--dev",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                *args,
            ],
            env=clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        while not any("admin token in" in line for line in self.lines):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise AssertionError("qrc serve did not start:\n" + "".join(self.lines))
            assert self.process.stdout is not None
            self.lines.append(self.process.stdout.readline())
        threading.Thread(target=self._drain, daemon=True).start()
        self.token = (data_dir / "admin.token").read_text().strip()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def ecdsa_ca(self) -> Path:
        return self.data_dir / "tls" / "ca-ecdsa.pem"

    def client(self) -> PQClient:
        """qrc's own client (pq-only: X25519MLKEM768, ML-DSA only) with the admin token."""
        return PQClient(self.url, ca_file=str(self.ca), token=self.token)

    def security_events(self, event_type: str) -> list[dict[str, object]]:
        with self.client() as client:
            answer = client.get(f"{API}/security/events?event_type={event_type}")
            assert answer.status == 200, answer.body
            events: list[dict[str, object]] = answer.json()["events"]
            return events

    def metrics(self) -> str:
        with self.client() as client:
            answer = client.get("/metrics")
            assert answer.status == 200, answer.body
            return answer.body.decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
