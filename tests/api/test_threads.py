"""The server reuses its worker threads: no thread is started per request.

FastAPI runs synchronous routes and dependencies on anyio's worker threads; under Daphne,
anyio would stop each worker when its request ended (see :mod:`qrc.transit.threads`). This
test drives a real server process with sequential requests and watches its threads in
``/proc``: with one thread a request it would see hundreds; with a pool, a few dozen at most.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.api_server import ApiProcess

API = "/api/v1/security/qrc"
REQUESTS = 300
# anyio's default limiter (40 worker threads) plus the server's own few.
MOST_THREADS = 60

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path)
    yield process
    process.stop()


def _watch(pid: int, seen: set[str], stop: threading.Event) -> None:
    tasks = f"/proc/{pid}/task"
    while not stop.is_set():
        try:
            seen.update(os.listdir(tasks))
        except OSError:
            return
        stop.wait(0.0005)


def test_requests_reuse_worker_threads(server: ApiProcess) -> None:
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(server.proc.pid, seen, stop), daemon=True)
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        created = http.post(API + "/keys/generate", json={"name": "t", "purpose": "encryption"})
        assert created.status_code == 201, created.text
        body = {"key": "t", "plaintext": base64.b64encode(b"x" * 64).decode()}
        watcher.start()
        for i in range(REQUESTS):
            if i % 3 == 0:
                response = http.get("/health")
            elif i % 3 == 1:
                response = http.post(API + "/encrypt", json=body)
            else:
                response = http.get(API + "/keys")
            assert response.status_code == 200, response.text
    stop.set()
    watcher.join()
    # Every request used a worker thread (sync routes and dependencies), so a thread per
    # request would show as at least REQUESTS distinct thread IDs.
    assert 1 < len(seen) <= MOST_THREADS, f"{len(seen)} threads for {REQUESTS} requests"
