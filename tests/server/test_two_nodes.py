"""Two service nodes on one PostgreSQL: the stateless layout of production, tried for real.

Two ``qrc serve`` processes share the database, the sealed KEK, the audit anchor, MAC key and
witness (as nodes behind a load balancer would) and take concurrent encrypts, rotations and
a token revocation. Every answer must be consistent, every ciphertext must decrypt on either
node, and the audit chain must verify on both.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.keys.pg import fresh_database

API = "/api/v1/security/qrc"
PASSPHRASE = "two nodes passphrase"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qrc", "serve", "--plain", "--data-dir", str(data_dir),
             "--port", str(self.port), "--scheduler-interval", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.process.stdout.readline() if self.process.stdout else ""
            lines.append(line)
            if "admin token in" in line:
                break
            if self.process.poll() is not None:
                pytest.fail("qrc serve exited:\n" + "".join(lines))
        else:
            self.process.kill()
            pytest.fail("qrc serve did not start:\n" + "".join(lines))
        threading.Thread(
            target=lambda: self.process.stdout and self.process.stdout.read(), daemon=True
        ).start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node, str]]:
    with fresh_database() as url:
        shared = tmp_path / "shared"
        shared.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
        env |= {
            "QRC_DATABASE_URL": url,
            "QRC_MASTER_PASSPHRASE": PASSPHRASE,
            "QRC_BENCH_ON_START": "0",
            "QRC_AUDIT_ANCHOR": str(shared / "audit-keys.jsonl"),
            "QRC_AUDIT_WITNESS": str(shared / "audit-witness.note"),
            "QRC_CHECKPOINT_SECONDS": "0.5",
        }
        first_dir, second_dir = tmp_path / "a", tmp_path / "b"
        first = Node(first_dir, env)
        second_dir.mkdir(mode=0o700)
        shutil.copy2(first_dir / "kek.sealed", second_dir / "kek.sealed")  # one root KEK
        second = Node(second_dir, env)
        token = (first_dir / "admin.token").read_text().strip()
        try:
            yield first, second, token
        finally:
            first.stop()
            second.stop()


def _post(node: Node, path: str, token: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        node.url + API + path,
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def test_two_nodes_answer_consistently(nodes: tuple[Node, Node, str]) -> None:
    first, second, admin = nodes
    assert (
        _post(
            first, "/keys/generate", admin, {"name": "shared", "purpose": "encryption"}
        ).status_code
        == 201
    )

    def encrypt(i: int) -> tuple[int, dict[str, object]]:
        node = (first, second)[i % 2]
        answer = _post(
            node,
            "/encrypt",
            admin,
            {"key": "shared", "plaintext": base64.b64encode(b"m%d" % i).decode(), "context": "c"},
        )
        assert answer.status_code == 200, answer.text
        return i, answer.json()

    def rotate(i: int) -> int:
        """A conditional rotation, retried when the other node rotated first (409)."""
        node = (first, second)[i % 2]
        headers = {"Authorization": f"Bearer {admin}"}
        for _ in range(50):
            seen = httpx.get(node.url + API + "/keys/shared", headers=headers, timeout=60)
            version = int(seen.json()["version"])
            answer = _post(node, "/keys/shared/rotate", admin, {"expected_version": version})
            if answer.status_code == 200:
                assert answer.json()["version"] == version + 1
                return version + 1
            assert answer.status_code == 409, answer.text
        raise AssertionError("a rotation never got through")

    with ThreadPoolExecutor(max_workers=6) as pool:
        sealed = list(pool.map(encrypt, range(40)))
        versions = list(pool.map(rotate, range(6)))
        sealed += list(pool.map(encrypt, range(40, 60)))
    assert sorted(versions) == list(range(2, 8))  # six rotations, each seen once, no fork
    for i, answer in sealed:
        for node in (first, second):
            opened = _post(
                node,
                "/decrypt",
                admin,
                {"key": "shared", "ciphertext": answer["ciphertext"], "context": "c"},
            )
            assert opened.status_code == 200, opened.text
            assert base64.b64decode(opened.json()["plaintext"]) == b"m%d" % i

    # A token revoked on one node stops working on the other (its cache lasts 5 s at most).
    created = _post(first, "/tokens", admin, {"name": "svc", "role": "crypto_user"})
    token = created.json()
    body = {"key": "shared", "plaintext": "eA=="}
    assert _post(second, "/encrypt", token["token"], body).status_code == 200
    revoked = httpx.delete(
        first.url + API + f"/tokens/{token['id']}",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=60,
    )
    assert revoked.status_code == 200, revoked.text
    deadline = time.monotonic() + 30
    while _post(second, "/encrypt", token["token"], body).status_code != 401:
        assert time.monotonic() < deadline, "the revocation never reached the other node"
        time.sleep(0.5)

    for node in (first, second):
        report = httpx.get(
            node.url + API + "/audit/verify",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=120,
        ).json()
        assert report["valid"], report
