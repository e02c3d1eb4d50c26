"""The PQ mutual-TLS tunnel against a direct connection to the same PostgreSQL and Redis.

Usage: ``python benchmarks/bench_tunnel.py [--runs R] [--rows N] [--mib M] [--pings P]
[--json]``.

Both tunnel ends run as subprocesses (``python -m qrc.cli.tunnel server|client``) on this
machine, with a throwaway CA, as a deployment would run them. Each run measures, direct
and through the tunnel, one after the other:

- PostgreSQL bulk copy: ``COPY ... TO STDOUT`` of a table of ``--rows`` rows (about 120
  bytes each) and ``COPY ... FROM STDIN`` of the same data, MB/s, by psycopg;
- Redis big values: SET then GET of ``--mib`` MiB in 8 MiB values, MB/s, by redis-py;
- latency: ``SELECT 1`` and ``PING`` round trips on an open connection (median);
- connection setup: connect and first query (the tunnel adds its TLS handshake).

Figures are medians over the runs; ratios are tunnel / direct throughput (target for bulk
copy: >= 0.80) and the added latency is tunnel - direct, in the same run. The default table
(1,000,000 rows, 120 MB) makes each copy last about a second: copies of a third of that
measured mostly the first fraction of a second (TCP windows, where the scheduler puts four
busy processes on two cores) and came out at either about 0.66 or about 0.88, run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis

from qrc.transit.ca import CertificateAuthority
from qrc.transit.tunnel_certs import issue_peer_certificate, write_peer_files

PG_URL = "postgresql://postgres@127.0.0.1:{port}/test"
TABLE = "qrc_bench_tunnel"
VALUE_SIZE = 8 << 20


class End:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qrc.cli.tunnel", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise SystemExit(f"tunnel end did not start: {line!r}")
        self.port = int(line.split()[2])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _tunnel(pki: Path, target: str) -> tuple[End, End]:
    common = ["--ca", str(pki / "ca" / "ca.pem")]
    server = End(
        "server", "--listen", "127.0.0.1:0", "--forward", target,
        "--cert", str(pki / "srv.pem"), "--key", str(pki / "srv.key"), *common,
    )  # fmt: skip
    client = End(
        "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server.port}",
        "--cert", str(pki / "cli.pem"), "--key", str(pki / "cli.key"), *common,
    )  # fmt: skip
    return server, client


def _timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _prepare_table(rows: int) -> bytes:
    with psycopg.connect(PG_URL.format(port=5432), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id int, payload text)")
        conn.execute(
            f"INSERT INTO {TABLE} SELECT i, md5(i::text) || repeat('x', 80) "
            "FROM generate_series(1, %s) AS i",
            (rows,),
        )
        out = bytearray()
        with conn.cursor().copy(f"COPY {TABLE} TO STDOUT") as copy:
            for block in copy:
                out += block
        return bytes(out)


def _pg(port: int, data: bytes, pings: int) -> dict[str, float]:
    url = PG_URL.format(port=port)
    setup = _timed(lambda: psycopg.connect(url, autocommit=True).execute("SELECT 1").close())
    with psycopg.connect(url, autocommit=True) as conn:

        def copy_out() -> None:
            size = 0
            with conn.cursor().copy(f"COPY {TABLE} TO STDOUT") as copy:
                for block in copy:
                    size += len(block)
            if size != len(data):
                raise AssertionError("COPY TO returned another size")

        def copy_in() -> None:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS t_in (id int, payload text)")
            conn.execute("TRUNCATE t_in")
            with conn.cursor().copy("COPY t_in FROM STDIN") as copy:
                for at in range(0, len(data), 1 << 20):
                    copy.write(data[at : at + (1 << 20)])

        out_s, in_s = _timed(copy_out), _timed(copy_in)
        latencies = [_timed(lambda: conn.execute("SELECT 1").fetchone()) for _ in range(pings)]
    mb = len(data) / 1e6
    return {
        "copy_out_mb_s": mb / out_s,
        "copy_in_mb_s": mb / in_s,
        "select1_ms": statistics.median(latencies) * 1e3,
        "connect_ms": setup * 1e3,
    }


def _redis(port: int, mib: int, pings: int) -> dict[str, float]:
    setup = _timed(lambda: redis.Redis(host="127.0.0.1", port=port).ping())
    r = redis.Redis(host="127.0.0.1", port=port)
    value = os.urandom(VALUE_SIZE)
    count = max(1, (mib << 20) // VALUE_SIZE)
    names = [f"qrc-bench-tunnel-{os.getpid()}-{i}" for i in range(count)]

    def sets() -> None:
        for name in names:
            r.set(name, value, ex=300)

    def gets() -> None:
        for name in names:
            if len(r.get(name) or b"") != VALUE_SIZE:  # type: ignore[arg-type]
                raise AssertionError("GET returned another size")

    set_s, get_s = _timed(sets), _timed(gets)
    latencies = [_timed(r.ping) for _ in range(pings)]
    r.delete(*names)
    r.close()
    mb = count * VALUE_SIZE / 1e6
    return {
        "set_mb_s": mb / set_s,
        "get_mb_s": mb / get_s,
        "ping_ms": statistics.median(latencies) * 1e3,
        "connect_ms": setup * 1e3,
    }


def _pki(directory: Path) -> Path:
    CertificateAuthority.create(directory / "ca")
    write_peer_files(
        issue_peer_certificate(directory / "ca", "srv", ["127.0.0.1"]), directory, "srv"
    )
    write_peer_files(issue_peer_certificate(directory / "ca", "cli"), directory, "cli")
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # The ends compete for CPU with the clients and servers: the load says how much else did.
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        pki = _pki(Path(tmp))
        data = _prepare_table(args.rows)
        pg_ends, redis_ends = _tunnel(pki, "127.0.0.1:5432"), _tunnel(pki, "127.0.0.1:6379")
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in ("pg", "pg_t", "rd", "rd_t")}
        redis_bytes = max(1, (args.mib << 20) // VALUE_SIZE) * VALUE_SIZE
        try:
            for _ in range(args.runs):
                runs["pg"].append(_pg(5432, data, args.pings))
                before = sum(e.cpu_seconds() for e in pg_ends)
                runs["pg_t"].append(_pg(pg_ends[1].port, data, args.pings))
                cpu = sum(e.cpu_seconds() for e in pg_ends) - before
                # Both ends together, per GB carried (COPY out and in).
                runs["pg_t"][-1]["ends_cpu_s_per_gb"] = cpu / (2 * len(data) / 1e9)
                runs["rd"].append(_redis(6379, args.mib, args.pings))
                before = sum(e.cpu_seconds() for e in redis_ends)
                runs["rd_t"].append(_redis(redis_ends[1].port, args.mib, args.pings))
                cpu = sum(e.cpu_seconds() for e in redis_ends) - before
                runs["rd_t"][-1]["ends_cpu_s_per_gb"] = cpu / (2 * redis_bytes / 1e9)
        finally:
            for end in (*pg_ends, *redis_ends):
                end.stop()
            with psycopg.connect(PG_URL.format(port=5432), autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}

    # Ratios per run (same run), then their median.
    def ratio(kind: str, metric: str) -> float:
        pairs = zip(runs[kind], runs[kind + "_t"], strict=True)
        return statistics.median(t[metric] / d[metric] for d, t in pairs)

    def added(kind: str, metric: str) -> float:
        pairs = zip(runs[kind], runs[kind + "_t"], strict=True)
        return statistics.median(t[metric] - d[metric] for d, t in pairs)

    result = {
        "runs": args.runs,
        "copy_bytes": len(data),
        "redis_bytes_per_run": redis_bytes,
        "cpus": os.cpu_count(),
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": os.getloadavg()[0],
        "direct": {"postgresql": med["pg"], "redis": med["rd"]},
        "tunnel": {"postgresql": med["pg_t"], "redis": med["rd_t"]},
        "ratio": {
            "pg_copy_out": ratio("pg", "copy_out_mb_s"),
            "pg_copy_in": ratio("pg", "copy_in_mb_s"),
            "redis_set": ratio("rd", "set_mb_s"),
            "redis_get": ratio("rd", "get_mb_s"),
        },
        "added_ms": {
            "pg_select1": added("pg", "select1_ms"),
            "redis_ping": added("rd", "ping_ms"),
            "pg_connect": added("pg", "connect_ms"),
            "redis_connect": added("rd", "connect_ms"),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"tunnel vs direct, median of {args.runs} runs ({len(data) / 1e6:.1f} MB COPY, "
          f"{redis_bytes / 1e6:.0f} MB Redis per run; {os.cpu_count()} CPUs, "
          f"load {load_at_start:.1f} at start, "
          f"{result['load_average_1min_at_end']:.1f} at end)")  # fmt: skip
    for name, value in result["ratio"].items():
        print(f"  throughput ratio {name:<12} {value:5.2f}  (target for bulk copy >= 0.80)")
    for name, value in result["added_ms"].items():
        print(f"  added latency    {name:<14} {value:+7.3f} ms")
    for side in ("direct", "tunnel"):
        for service, figures in result[side].items():
            text = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            print(f"  {side:<6} {service:<10} {text}")


if __name__ == "__main__":
    main()
