"""Encrypted SQLAlchemy columns on PostgreSQL against plaintext (ratios, not absolute times).

Usage: ``python benchmarks/bench_columns.py [--rows N] [--runs R] [--json]``. Each run
inserts ``--rows`` rows through the ORM (one transaction) and reads them back, into a fresh
table of a throw-away database on the PostgreSQL at ``QRC_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``): plaintext ``Text`` first, then
``EncryptedText`` (row's primary key bound) with the DEK cache on and off, all in the same
run, in library mode (key service in the process, SQLite store). Ratios are encrypted
rows/s over plaintext rows/s of the same run; the figures are medians over the runs. The
target is a ratio of at least 0.5 with the cache on (the issue); exits with status 1 if the
median misses it. With the cache off each row costs a data-key hand-out (an audited
transaction in the key store), so that case runs a tenth of the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, Text, create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from qrc.data.cache import CacheLimits
from qrc.data.columns import EncryptedText, use_encryptor
from qrc.data.sdk import DataEncryptor
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import Argon2Params, LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

ADMIN_URL = os.environ.get(
    "QRC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGET = 0.5
VALUE = "someone.with.a.long.name@example.org"


class Base(DeclarativeBase):
    pass


class Plain(Base):
    __tablename__ = "bench_plain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(Text)


class Secret(Base):
    __tablename__ = "bench_secret"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(EncryptedText("bench", bind_primary_key=True))


def _rate(rows: int, action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return rows / (time.perf_counter() - start)


def _measure(engine: Engine, model: type[Any], rows: int) -> tuple[float, float, float]:
    """(inserted rows/s, read rows/s, column read rows/s) for ``rows`` fresh rows of
    ``model``: rows read as entities (``select(Model)``, what applications do), and the
    one column alone (``select(Model.email)``, the harshest comparison)."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {model.__tablename__}"))

    def insert() -> None:
        with Session(engine) as session:
            session.add_all(model(id=i, email=VALUE) for i in range(rows))
            session.commit()

    def read() -> None:
        with Session(engine) as session:
            values = [row.email for row in session.scalars(select(model))]
        if len(values) != rows or values[0] != VALUE:
            raise AssertionError("read back something else")

    def read_column() -> None:
        with Session(engine) as session:
            values = session.scalars(select(model.email)).all()
        if len(values) != rows or values[0] != VALUE:
            raise AssertionError("read back something else")

    return _rate(rows, insert), _rate(rows, read), _rate(rows, read_column)


def _service(directory: Path) -> KeyService:
    db = Database(f"sqlite:///{directory / 'qrc.db'}")
    db.upgrade()
    params = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
    custody = LocalCustody.create(directory / "kek.sealed", "bench", params=params)
    service = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))
    service.keys.create_key(name="bench", purpose="encryption", algorithm="AES-256-GCM", actor="b")
    return service


def run(rows: int, runs: int) -> dict[str, Any]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = "qrc_bench_" + secrets.token_hex(4)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    results: dict[str, list[float]] = {}
    try:
        Base.metadata.create_all(engine)
        with tempfile.TemporaryDirectory() as tmp:
            service = _service(Path(tmp))
            cached = DataEncryptor.local(service)
            uncached = DataEncryptor.local(service, cache=CacheLimits(max_entries=0))
            for _ in range(runs):
                plain_in, plain_out, plain_col = _measure(engine, Plain, rows)
                use_encryptor(cached)
                on_in, on_out, on_col = _measure(engine, Secret, rows)
                use_encryptor(uncached)
                small = max(1, rows // 10)
                p_in, p_out, _ = _measure(engine, Plain, small)
                off_in, off_out, _ = _measure(engine, Secret, small)
                for label, value in (
                    ("plain_insert_rps", plain_in),
                    ("plain_read_rps", plain_out),
                    ("cache_on_insert_rps", on_in),
                    ("cache_on_read_rps", on_out),
                    ("cache_off_insert_rps", off_in),
                    ("cache_off_read_rps", off_out),
                    ("cache_on_insert_ratio", on_in / plain_in),
                    ("cache_on_read_ratio", on_out / plain_out),
                    ("plain_column_read_rps", plain_col),
                    ("cache_on_column_read_rps", on_col),
                    ("cache_on_column_read_ratio", on_col / plain_col),
                    ("cache_off_insert_ratio", off_in / p_in),
                    ("cache_off_read_ratio", off_out / p_out),
                ):
                    results.setdefault(label, []).append(value)
            use_encryptor(None)
            stats = cached.cache_stats()
            cached.close()
            uncached.close()
            service.close()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    summary: dict[str, Any] = {k: round(statistics.median(v), 3) for k, v in results.items()}
    summary.update(rows=rows, runs=runs, cache_hits=stats.hits, cache_misses=stats.misses)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per run (2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs (5); medians reported")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.rows, args.runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"PostgreSQL, {result['rows']} rows x {result['runs']} runs (medians)")
        for case in ("plain", "cache_on", "cache_off"):
            line = f"{case:<10} insert {result[case + '_insert_rps']:>10.0f} rows/s  "
            line += f"read {result[case + '_read_rps']:>10.0f} rows/s"
            if case != "plain":
                line += f"  ratios {result[case + '_insert_ratio']:.2f} / "
                line += f"{result[case + '_read_ratio']:.2f}"
            print(line)
        print(
            f"column alone: plain {result['plain_column_read_rps']:.0f} rows/s, encrypted "
            f"{result['cache_on_column_read_rps']:.0f} rows/s, "
            f"ratio {result['cache_on_column_read_ratio']:.2f}"
        )
        print(f"target: cache on >= {TARGET} of plaintext (insert and entity read)")
    ok = min(result["cache_on_insert_ratio"], result["cache_on_read_ratio"]) >= TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
