"""A busy store is a 503 with Retry-After, never a 500.

Another connection holds SQLite's write lock (``BEGIN IMMEDIATE`` on the store file) while
requests that need the store run against the API served by Daphne in a subprocess (its busy
timeout shortened to 0.2 s so that the test does not wait 10 s per request). The driver
errors of PostgreSQL are classified by their SQLSTATE.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from qrc.api.problems import store_problem
from qrc.transit.client import PQClient
from tests.api.api_server import ApiProcess
from tests.api.conftest import PROBLEM_PREFIX, B


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path / "data", "--busy-timeout-ms", "200")
    yield process
    process.stop()


def _encrypt(client: PQClient) -> object:
    plaintext = base64.b64encode(b"payload").decode()
    return client.post(B + "/encrypt", {"key": "busy", "plaintext": plaintext, "context": "c"})


def test_a_locked_store_answers_503_with_retry_after(server: ApiProcess) -> None:
    with PQClient(server.url, token=server.tokens["admin"]) as client:
        created = client.post(B + "/keys/generate", {"name": "busy", "purpose": "encryption"})
        assert created.status == 201, created.text
        assert _encrypt(client).status == 200  # type: ignore[attr-defined]
        holder = sqlite3.connect(server.data_dir / "qrc.db", timeout=5, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held
            for _ in range(3):
                answer = _encrypt(client)
                assert answer.status == 503, answer.text  # type: ignore[attr-defined]
                assert int(answer.headers["retry-after"]) >= 1  # type: ignore[attr-defined]
                problem = answer.json()  # type: ignore[attr-defined]
                assert problem["type"] == PROBLEM_PREFIX + "store-unavailable"
                assert "locked" not in answer.text  # type: ignore[attr-defined]
            # Reads take no write lock: listing keys goes on while the writer holds it.
            listing = client.get(B + "/keys")
            assert listing.status == 200, listing.text
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert _encrypt(client).status == 200  # type: ignore[attr-defined]
    assert "Traceback" not in server.output()


class _Driver(Exception):
    """A stand-in for a database driver's exception (module and SQLSTATE set per test)."""

    sqlstate: str | None = None


def _driver(module: str, name: str, message: str, sqlstate: str | None = None) -> Exception:
    cls: type[_Driver] = type(name, (_Driver,), {"__module__": module})
    exc = cls(message)
    exc.sqlstate = sqlstate
    return exc


def _wrapped(orig: Exception, cls: type[DBAPIError] = OperationalError) -> DBAPIError:
    return cls("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("orig", "slug"),
    [
        (sqlite3.OperationalError("database is locked"), "store-unavailable"),
        (sqlite3.OperationalError("database table is locked"), "store-unavailable"),
        (sqlite3.OperationalError("no such table: qrc_keys"), "internal"),
        (
            _driver("psycopg.errors", "LockNotAvailable", "lock timeout", "55P03"),
            "store-unavailable",
        ),
        (_driver("psycopg.errors", "SerializationFailure", "x", "40001"), "store-unavailable"),
        (_driver("psycopg.errors", "DeadlockDetected", "x", "40P01"), "store-unavailable"),
        (
            _driver("psycopg.errors", "QueryCanceled", "statement timeout", "57014"),
            "store-unavailable",
        ),
        (_driver("psycopg.errors", "AdminShutdown", "x", "57P01"), "store-unavailable"),
        (_driver("psycopg.errors", "ConnectionFailure", "x", "08006"), "store-unavailable"),
        (_driver("psycopg", "OperationalError", "connection refused"), "store-unavailable"),
        (_driver("psycopg.errors", "UndefinedTable", "no such table", "42P01"), "internal"),
        (_driver("psycopg.errors", "UniqueViolation", "duplicate", "23505"), "internal"),
        (
            _driver(
                "psycopg", "DataError", "PostgreSQL text fields cannot contain NUL (0x00) bytes"
            ),
            "bad-request",
        ),
    ],
)
def test_store_errors_are_classified(orig: Exception, slug: str) -> None:
    assert store_problem(_wrapped(orig)) == slug


def test_pool_timeout_and_lost_connections_are_unavailable() -> None:
    assert store_problem(PoolTimeout("QueuePool limit of size 5 overflow 10 reached")) == (
        "store-unavailable"
    )
    lost = DBAPIError(
        "SELECT 1", {}, _driver("psycopg", "InterfaceError", "x"), connection_invalidated=True
    )
    assert store_problem(lost) == "store-unavailable"
    assert store_problem(ProgrammingError("SELECT 1", {}, ValueError("x"))) == "internal"
