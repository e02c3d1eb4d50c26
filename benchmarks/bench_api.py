"""API throughput: POST /encrypt (1 KiB) against a no-op route on the same server, same run.

Starts ``qrc serve`` in a subprocess on a fresh data directory, once over PQ TLS and once
plain (``--plain``), and drives it with one keep-alive :class:`PQClient`, alternating short
batches of the two routes so both see the same machine load. Prints requests per second and
the ratio encrypt / no-op (target: at least 0.50). Usage:

    python benchmarks/bench_api.py [--seconds 2] [--rounds 7] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from qrc.transit.client import PQClient

API = "/api/v1/security/qrc"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(data_dir: Path, port: int, plain: bool) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "qrc", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    env = {
        **os.environ,
        "QRC_MASTER_PASSPHRASE": "bench",
        "QRC_BENCH_ON_START": "0",
        "QRC_RATE_LIMIT": "0",
    }
    process = subprocess.Popen(
        [*args, *(["--plain"] if plain else [])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "admin token in" in line:
            # Keep reading, so a chatty server never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process
    raise SystemExit("qrc serve did not start")


def _rate(client: PQClient, method: str, path: str, body: object, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        response = client.request(method, path, body)
        if response.status >= 400:
            raise SystemExit(f"{path}: HTTP {response.status} {response.text[:200]}")
        count += 1
    return count / (time.perf_counter() - start)


def measure(plain: bool, seconds: float, rounds: int) -> dict[str, object]:
    """Median requests/s of the no-op route and of encrypt, and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, port = Path(tmp), _free_port()
        process = _start(data_dir, port, plain)
        try:
            token = (data_dir / "admin.token").read_text().strip()
            url = f"{'http' if plain else 'https'}://127.0.0.1:{port}"
            with PQClient(url, ca_file=str(data_dir / "tls" / "ca.pem"), token=token) as client:
                client.post(API + "/keys/generate", {"name": "bench", "purpose": "encryption"})
                body = {
                    "key": "bench",
                    "plaintext": base64.b64encode(os.urandom(1024)).decode(),
                    "context": "bench",
                }
                _rate(client, "POST", API + "/encrypt", body, 0.5)  # warm up both paths
                _rate(client, "GET", "/health", None, 0.5)
                noop, encrypt = [], []
                for _ in range(rounds):
                    noop.append(_rate(client, "GET", "/health", None, seconds))
                    encrypt.append(_rate(client, "POST", API + "/encrypt", body, seconds))
                group = client.negotiated_group
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    ratios = [e / n for e, n in zip(encrypt, noop, strict=True)]
    return {
        "transport": "plain HTTP" if plain else f"PQ TLS ({group})",
        "noop_rps": statistics.median(noop),
        "encrypt_rps": statistics.median(encrypt),
        "ratio": statistics.median(ratios),
        "ratios": [round(r, 3) for r in ratios],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(plain, args.seconds, args.rounds) for plain in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"{row['transport']:<28} no-op {row['noop_rps']:8.0f} req/s   encrypt 1 KiB "
                f"{row['encrypt_rps']:8.0f} req/s   ratio {row['ratio']:.2f} (target >= 0.50)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
