"""Scale-out on one machine: POST /encrypt (1 KiB) with 16 clients, --workers 1 against 2.

Starts ``qrc serve`` over PQ TLS on a fresh data directory with ``--workers 1``, then
``--workers 2``, and drives each with 16 client threads (one keep-alive PQ TLS connection
each), alternating the no-op route (``GET /health``) and ``POST /encrypt``. Prints requests
per second, p50/p99 latency, the ratio encrypt / no-op at each worker count, the throughput
ratio of 2 workers to 1 (target: at least 1.25) and the CPU the load generator itself took.

With ``--postgres URL`` (an admin URL such as
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) it also runs ``--workers 1`` on a
fresh PostgreSQL database and prints its throughput against SQLite's (target: at least 0.8).

    python benchmarks/bench_workers.py [--seconds 5] [--clients 16] [--postgres URL] [--json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from qrc.transit.client import PQClient

API = "/api/v1/security/qrc"
TARGET_SCALE = 1.25
TARGET_POSTGRES = 0.8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(
    data_dir: Path, port: int, workers: int, database_url: str | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "QRC_MASTER_PASSPHRASE": "bench", "QRC_BENCH_ON_START": "0",
           "QRC_RATE_LIMIT": "0"}  # fmt: skip
    if database_url is not None:
        env["QRC_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "qrc", "serve", "--data-dir", str(data_dir), "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    ready = 0
    for line in process.stdout:
        ready += "admin token in" in line
        if ready == workers:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process
    raise SystemExit("qrc serve did not start")


def _load(
    url: str, ca: str, token: str, clients: int, seconds: float, encrypt: bool
) -> dict[str, float]:
    body = {"key": "bench", "plaintext": base64.b64encode(os.urandom(1024)).decode()}
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        mine = []
        with PQClient(url, ca_file=ca, token=token) as pq:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                if encrypt:
                    response = pq.request("POST", API + "/encrypt", body)
                else:
                    response = pq.request("GET", "/health")
                if response.status >= 400:
                    raise SystemExit(f"HTTP {response.status}: {response.text[:200]}")
                mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


@contextlib.contextmanager
def _postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url``, dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text  # noqa: PLC0415

    name = "qrc_bench_" + secrets.token_hex(4)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(
    workers: int, clients: int, seconds: float, database_url: str | None = None
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, port = Path(tmp), _free_port()
        process = _start(data_dir, port, workers, database_url)
        try:
            token = (data_dir / "admin.token").read_text().strip()
            url, ca = f"https://127.0.0.1:{port}", str(data_dir / "tls" / "ca.pem")
            with PQClient(url, ca_file=ca, token=token) as pq:
                pq.request(
                    "POST", API + "/keys/generate", {"name": "bench", "purpose": "encryption"}
                )
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            noop = [_load(url, ca, token, clients, seconds, False) for _ in range(2)]
            enc = [_load(url, ca, token, clients, seconds, True) for _ in range(2)]
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    client_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    noop_rps = statistics.median(r["rps"] for r in noop)
    enc_rps = statistics.median(r["rps"] for r in enc)
    return {
        "workers": workers,
        "noop_rps": round(noop_rps, 1),
        "encrypt_rps": round(enc_rps, 1),
        "encrypt_p50_ms": round(statistics.median(r["p50_ms"] for r in enc), 1),
        "encrypt_p99_ms": round(statistics.median(r["p99_ms"] for r in enc), 1),
        "ratio_to_noop": round(enc_rps / noop_rps, 3),
        "load_generator_cpu_seconds": round(client_cpu, 1),
        "wall_seconds": round(4 * seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--postgres", metavar="URL", help="also measure on PostgreSQL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    one = measure(1, args.clients, args.seconds)
    two = measure(2, args.clients, args.seconds)
    scale = float(two["encrypt_rps"]) / float(one["encrypt_rps"])  # type: ignore[arg-type]
    report: dict[str, object] = {
        "cores": os.cpu_count(), "one": one, "two": two, "scale": round(scale, 3)
    }  # fmt: skip
    if args.postgres:
        with _postgres_database(args.postgres) as url:
            pg = measure(1, args.clients, args.seconds, url)
        pg_ratio = float(pg["encrypt_rps"]) / float(one["encrypt_rps"])  # type: ignore[arg-type]
        report.update(postgres=pg, postgres_to_sqlite=round(pg_ratio, 3))
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        for row in (one, two):
            print(
                f"--workers {row['workers']}: no-op {row['noop_rps']} req/s, encrypt "
                f"{row['encrypt_rps']} req/s (p50 {row['encrypt_p50_ms']} ms, p99 "
                f"{row['encrypt_p99_ms']} ms), ratio {row['ratio_to_noop']}; load generator "
                f"CPU {row['load_generator_cpu_seconds']} s of {row['wall_seconds']} s"
            )
        print(
            f"2 workers / 1 worker: {scale:.2f} (target >= {TARGET_SCALE}); {os.cpu_count()} cores"
        )
        if args.postgres:
            pg_row = report["postgres"]
            assert isinstance(pg_row, dict)
            print(
                f"PostgreSQL, --workers 1: encrypt {pg_row['encrypt_rps']} req/s (p50 "
                f"{pg_row['encrypt_p50_ms']} ms, p99 {pg_row['encrypt_p99_ms']} ms), ratio to "
                f"no-op {pg_row['ratio_to_noop']}; PostgreSQL / SQLite: "
                f"{report['postgres_to_sqlite']} (target >= {TARGET_POSTGRES})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
