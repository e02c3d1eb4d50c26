"""A throw-away PostgreSQL database per test module (the real server on this machine)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

ADMIN_URL = os.environ.get(
    "QRC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def postgres_available() -> bool:
    try:
        with _admin_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create ``qrc_test_<random>``, yield its URL, drop it afterwards.

    Skips when the server is down outside CI; under ``CI=true`` a missing server fails.
    """
    if not postgres_available():
        message = f"PostgreSQL not reachable at {ADMIN_URL} (start it: see README)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    name = "qrc_test_" + secrets.token_hex(6)
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
