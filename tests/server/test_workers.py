"""``qrc serve --workers 2``: two processes on one port, one supervisor, a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from qrc.server.workers import worker_argv, worker_count

API = "/api/v1/security/qrc"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
    env |= {"QRC_MASTER_PASSPHRASE": "workers", "QRC_BENCH_ON_START": "0"}
    command = [sys.executable, "-m", "qrc", "serve", "--plain", "--data-dir", str(tmp_path),
               "--port", str(port), "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while sum("serving on" in line for line in lines) < 2:
        assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
        lines.append(process.stdout.readline() if process.stdout else "")
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    try:
        workers = _children(process.pid)
        assert len(workers) == 2
        token = (tmp_path / "admin.token").read_text().strip()  # made once, before the workers
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{port}"
        created = httpx.post(
            url + API + "/keys/generate",
            json={"name": "w", "purpose": "encryption"},
            headers=headers,
            timeout=60,
        )
        assert created.status_code == 201, created.text
        for _ in range(20):  # a new connection each time: the kernel spreads them
            answer = httpx.post(
                url + API + "/encrypt",
                json={"key": "w", "plaintext": "eA=="},
                headers=headers,
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_worker_counts_and_command_lines() -> None:
    assert worker_count("3") == 3 and worker_count("auto") >= 1
    for bad in ("0", "65", "many"):
        with pytest.raises(ValueError):
            worker_count(bad)
    argv = worker_argv(["serve", "--workers", "2", "--port", "9", "--workers=4"])
    assert argv[1:] == ["-m", "qrc", "serve", "--port", "9", "--reuse-port"]
