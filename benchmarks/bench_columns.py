"""Encrypted SQLAlchemy columns on PostgreSQL against plaintext (ratios, not absolute times).

Usage: ``python benchmarks/bench_columns.py [--rows N] [--runs R] [--reads K] [--json]``.
Each run inserts ``--rows`` rows through the ORM (one transaction) into a fresh table of a
throw-away database on the PostgreSQL at ``QRC_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``), plaintext ``Text`` then
``EncryptedText`` (row's primary key bound), ``--reads`` / 3 times, and reads both tables
back ``--reads`` times, alternating plaintext and encrypted; in library mode (key service in
the process, SQLite store), with the DEK cache on, then off. Ratios are encrypted rows/s
over plaintext rows/s measured next to each other (the median of the pairs within a run);
the figures are medians over the runs. The target is a ratio of at least 0.5 with the cache
on for inserts and entity reads (the issue); exits with status 1 if a median misses it.
With the cache off each row costs a data-key hand-out (an audited transaction in the key
store), so that case runs a tenth of the rows and one pair.
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


def _insert(engine: Engine, model: type[Any], rows: int) -> float:
    """Inserted rows/s: ``rows`` fresh rows of ``model`` through the ORM, one transaction."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {model.__tablename__}"))

    def insert() -> None:
        with Session(engine) as session:
            session.add_all(model(id=i, email=VALUE) for i in range(rows))
            session.commit()

    return _rate(rows, insert)


def _reads(engine: Engine, model: type[Any], rows: int) -> tuple[float, float]:
    """(read rows/s, column read rows/s) of the ``rows`` rows of ``model``: rows read as
    entities (``select(Model)``, what applications do), and the one column alone
    (``select(Model.email)``, the harshest comparison)."""

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

    return _rate(rows, read), _rate(rows, read_column)


def _measure(
    engine: Engine, rows: int, reads: int
) -> tuple[float, float, float, float, float, float]:
    """Plaintext and encrypted, in the same run: (insert ratio, entity read ratio, column
    read ratio) and the encrypted rates. Inserts alternate between the two tables
    ``reads // 3`` times and reads ``reads`` times; each ratio is the median of its pairs,
    so a burst of load elsewhere on the machine falls on both sides of a pair rather than
    on one table's whole measurement."""
    inserted, secret_inserted = [], []
    for _ in range(max(1, reads // 3)):  # inserts are slower: a third as many pairs
        plain_in = _insert(engine, Plain, rows)
        secret_in = _insert(engine, Secret, rows)
        inserted.append(secret_in / plain_in)
        secret_inserted.append(secret_in)
    entity, column, secret_entity, secret_column = [], [], [], []
    for _ in range(reads):
        plain_out, plain_col = _reads(engine, Plain, rows)
        on_out, on_col = _reads(engine, Secret, rows)
        entity.append(on_out / plain_out)
        column.append(on_col / plain_col)
        secret_entity.append(on_out)
        secret_column.append(on_col)
    median = statistics.median
    return (
        median(inserted),
        median(entity),
        median(column),
        median(secret_inserted),
        median(secret_entity),
        median(secret_column),
    )


def _service(directory: Path) -> KeyService:
    db = Database(f"sqlite:///{directory / 'qrc.db'}")
    db.upgrade()
    params = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
    custody = LocalCustody.create(directory / "kek.sealed", "bench", params=params)
    service = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))
    service.keys.create_key(name="bench", purpose="encryption", algorithm="AES-256-GCM", actor="b")
    return service


def run(rows: int, runs: int, reads: int = 9) -> dict[str, Any]:
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
                use_encryptor(cached)
                insert, read, column, on_in, on_out, on_col = _measure(engine, rows, reads)
                use_encryptor(uncached)
                small = max(1, rows // 10)
                off_insert, off_read, _, off_in, off_out, _ = _measure(engine, small, 1)
                for label, value in (
                    ("cache_on_insert_rps", on_in),
                    ("cache_on_read_rps", on_out),
                    ("cache_on_column_read_rps", on_col),
                    ("cache_off_insert_rps", off_in),
                    ("cache_off_read_rps", off_out),
                    ("cache_on_insert_ratio", insert),
                    ("cache_on_read_ratio", read),
                    ("cache_on_column_read_ratio", column),
                    ("cache_off_insert_ratio", off_insert),
                    ("cache_off_read_ratio", off_read),
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
    summary.update(
        rows=rows, runs=runs, reads=reads, cache_hits=stats.hits, cache_misses=stats.misses
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per run (2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs (5); medians reported")
    parser.add_argument(
        "--reads", type=int, default=9, help="alternating read pairs per run (9); median"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.rows, args.runs, args.reads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"PostgreSQL, {result['rows']} rows x {result['runs']} runs, "
            f"{result['reads']} alternating reads each (medians of ratios)"
        )
        for case in ("cache_on", "cache_off"):
            line = f"{case:<10} insert {result[case + '_insert_rps']:>8.0f} rows/s, "
            line += f"read {result[case + '_read_rps']:>8.0f} rows/s;"
            line += f" against plaintext: insert {result[case + '_insert_ratio']:.2f}, "
            line += f"entity read {result[case + '_read_ratio']:.2f}"
            print(line)
        print(
            f"column alone: encrypted {result['cache_on_column_read_rps']:.0f} rows/s, "
            f"ratio {result['cache_on_column_read_ratio']:.2f}"
        )
        print(f"target: cache on >= {TARGET} of plaintext (insert and entity read)")
    ok = min(result["cache_on_insert_ratio"], result["cache_on_read_ratio"]) >= TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
