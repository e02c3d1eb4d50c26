"""End to end, as a user runs it: ``qrc serve`` in a subprocess, then the PQ client and the
command line against it over TLS 1.3 with X25519MLKEM768 and an ML-DSA-65 certificate."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.transit.client import PQClient

API = "/api/v1/security/qrc"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    env = {**os.environ, "QRC_MASTER_PASSPHRASE": "e2e passphrase", "QRC_BENCH_ON_START": "0"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qrc",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("qrc-data")
    process, url = _serve(data_dir)
    yield from _running(process, url, data_dir)


def _running(
    process: subprocess.Popen[str], url: str, data_dir: Path
) -> Iterator[tuple[str, Path]]:
    deadline = time.monotonic() + 60
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline() if process.stdout else ""
        lines.append(line)
        if "admin token in" in line:
            break
        if process.poll() is not None:
            pytest.fail("qrc serve exited:\n" + "".join(lines))
    else:
        process.kill()
        pytest.fail("qrc serve did not start:\n" + "".join(lines))
    # Keep reading its output, so a chatty server never blocks on a full pipe.
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    yield url, data_dir
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0  # graceful shutdown


def _cli(
    url: str, data_dir: Path, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "QRC_URL": url, "QRC_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "qrc", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_serve_initialises_the_data_directory(server: tuple[str, Path]) -> None:
    _, data_dir = server
    assert (data_dir / "tls" / "ca.pem").exists()
    token = data_dir / "admin.token"
    assert token.exists() and oct(token.stat().st_mode & 0o777) == "0o600"
    assert (data_dir / "qrc.db").exists() and (data_dir / "kek.sealed").exists()


def test_pq_client_round_trip_over_x25519mlkem768(server: tuple[str, Path]) -> None:
    url, data_dir = server
    token = (data_dir / "admin.token").read_text().strip()
    with PQClient(url, ca_file=str(data_dir / "tls" / "ca.pem"), token=token) as client:
        created = client.post(API + "/keys/generate", {"name": "e2e-enc", "purpose": "encryption"})
        assert created.status == 201, created.text
        assert client.negotiated_group == "X25519MLKEM768"
        assert client.server_certificate_algorithm == "ML-DSA-65"
        plaintext = base64.b64encode(b"card 4111 1111").decode()
        sealed = client.post(
            API + "/encrypt", {"key": "e2e-enc", "plaintext": plaintext, "context": "cards/7"}
        ).json()
        opened = client.post(
            API + "/decrypt",
            {"key": "e2e-enc", "ciphertext": sealed["ciphertext"], "context": "cards/7"},
        ).json()
        assert opened["plaintext"] == plaintext
        assert client.post(API + "/keys/e2e-enc/rotate").json()["version"] == 2
        signer = client.post(
            API + "/keys/generate", {"name": "e2e-sig", "purpose": "signing"}
        ).json()
        assert signer["algorithm"] == "MLDSA65-Ed25519-SHA512"
        message = base64.b64encode(b"pay 10").decode()
        signature = client.post(API + "/sign", {"key": "e2e-sig", "message": message}).json()
        verified = client.post(
            API + "/verify",
            {"key": "e2e-sig", "message": message, "signature": signature["signature"]},
        ).json()
        assert verified["valid"] is True
        report = client.get(API + "/audit/verify").json()
        assert report["valid"] and report["events"] >= 6
        metrics = client.get("/metrics").text
        assert 'qrc_tls_handshakes_total{group="X25519MLKEM768"}' in metrics
        assert client.connections_opened == 1  # keep-alive all along


def test_command_line_against_the_service(server: tuple[str, Path]) -> None:
    url, data_dir = server
    created = _cli(url, data_dir, "keys", "create", "cli-key", "--purpose", "encryption", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["algorithm"] == "X25519MLKEM768"
    sealed = _cli(url, data_dir, "remote", "encrypt", "-k", "cli-key", "-c", "ctx", stdin=b"secret")
    assert sealed.returncode == 0, sealed.stderr
    opened = _cli(
        url, data_dir, "remote", "decrypt", "-k", "cli-key", "-c", "ctx", stdin=sealed.stdout
    )
    assert opened.stdout == b"secret"
    wrong = _cli(
        url, data_dir, "remote", "decrypt", "-k", "cli-key", "-c", "other", stdin=sealed.stdout
    )
    assert wrong.returncode == 2 and wrong.stderr.decode().startswith(
        "qrc: error: Decryption failed"
    )
    rotated = _cli(url, data_dir, "keys", "rotate", "cli-key", "--if-version", "1", "--json")
    assert rotated.returncode == 0 and json.loads(rotated.stdout)["version"] == 2
    stale = _cli(url, data_dir, "keys", "rotate", "cli-key", "--if-version", "1")
    assert stale.returncode == 2 and "version 2" in stale.stderr.decode()
    assert _cli(url, data_dir, "keys", "min-version", "cli-key", "2").returncode == 0
    retired = _cli(
        url, data_dir, "remote", "decrypt", "-k", "cli-key", "-c", "ctx", stdin=sealed.stdout
    )
    assert retired.returncode == 2 and "retired" in retired.stderr.decode()
    listed = _cli(url, data_dir, "keys", "list", "--json")
    assert "cli-key" in {k["name"] for k in json.loads(listed.stdout)["keys"]}
    viewer = _cli(url, data_dir, "token", "create", "ro", "--role", "viewer")
    assert viewer.returncode == 0 and viewer.stdout.decode().startswith("qrc_")
    denied = subprocess.run(
        [sys.executable, "-m", "qrc", "remote", "encrypt", "-k", "cli-key"],
        input=b"x",
        env={
            **os.environ,
            "QRC_URL": url,
            "QRC_DATA_DIR": str(data_dir),
            "QRC_TOKEN": viewer.stdout.decode().strip(),
        },
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode == 2 and "may not" in denied.stderr.decode()
    assert _cli(url, data_dir, "audit", "verify").returncode == 0
    # Options before the command override the environment (here: a wrong QRC_URL).
    explicit = _cli("https://127.0.0.1:9", data_dir, "audit", "--url", url, "verify")
    assert explicit.returncode == 0, explicit.stderr
    logs = _cli(url, data_dir, "audit", "logs", "--type", "key.decrypt", "--json")
    assert {e["result"] for e in json.loads(logs.stdout)["events"]} == {
        "success",
        "failure",
        "denied",
    }


def test_classical_handshakes_are_flagged_in_hybrid_mode_and_refused_in_pq_only(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    from qrc.transit.client import TLSError

    pq_url, pq_dir = server
    with pytest.raises(TLSError):  # pq-only: a classical-only client cannot connect at all
        PQClient(
            pq_url,
            ca_file=str(pq_dir / "tls" / "ca.pem"),
            mode="hybrid-preferred",
            groups=("X25519",),
        ).get("/health")
    process, url = _serve(tmp_path, "--tls-mode", "hybrid-preferred")
    for _ in _running(process, url, tmp_path):
        ca = str(tmp_path / "tls" / "ca.pem")
        token = (tmp_path / "admin.token").read_text().strip()
        with PQClient(url, ca_file=ca, mode="hybrid-preferred", groups=("X25519",)) as classical:
            assert classical.get("/health").status == 200
            assert classical.negotiated_group == "X25519"
        with PQClient(url, ca_file=ca, token=token) as client:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                events = client.get(API + "/security/events").json()["events"]
                if any(e["event_type"] == "classical_tls_handshake" for e in events):
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"no classical_tls_handshake event: {events}")
            assert client.negotiated_group == "X25519MLKEM768"


def test_the_readme_tour_runs_as_written(server: tuple[str, Path], tmp_path: Path) -> None:
    """README.md's "Five minutes with the service" block, against the running service."""
    import re

    url, data_dir = server
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Five minutes with the service.*?```sh\n(.*?)```", readme, re.S)
    assert block is not None
    lines = block.group(1).splitlines()
    assert lines[0].startswith("export QRC_URL=")
    (tmp_path / "receipt.pdf").write_bytes(b"%PDF-1.7 a receipt")
    script = "set -e\n" + "\n".join(lines[1:])  # the export line points at the test server
    env = {
        **os.environ,
        "QRC_URL": url,
        "QRC_DATA_DIR": str(data_dir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "IBAN DE89 3704" in result.stdout and "intact" in result.stdout


def test_the_api_benchmark_runs() -> None:
    """benchmarks/bench_api.py, briefly: it measures both transports and reports ratios."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "bench_api.py"),
            "--seconds",
            "0.2",
            "--rounds",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["transport"] for row in rows] == ["PQ TLS (X25519MLKEM768)", "plain HTTP"]
    assert all(row["noop_rps"] > 0 and row["encrypt_rps"] > 0 and row["ratio"] > 0 for row in rows)


def test_serve_refuses_the_generated_master_key_outside_development(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
    result = subprocess.run(
        [sys.executable, "-m", "qrc", "serve", "--data-dir", str(tmp_path), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "QRC_MASTER_PASSPHRASE" in result.stderr and "--dev" in result.stderr
    assert not (tmp_path / "admin.token").exists() and not (tmp_path / "kek.sealed").exists()
    invalid = subprocess.run(
        [sys.executable, "-m", "qrc", "serve", "--data-dir", str(tmp_path), "--dev"],
        env={**env, "QRC_RATE_LIMIT": "fast"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert invalid.returncode == 2 and "QRC_RATE_LIMIT" in invalid.stderr
