"""Fixtures for the key-service tests: a store on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import Argon2Params, LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from tests.keys.pg import fresh_database

FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty store: SQLite in a temp dir, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
        database.upgrade()
        yield database
        database.dispose()
        return
    with fresh_database() as url:
        database = Database(url)
        database.upgrade()
        yield database
        database.dispose()


@pytest.fixture
def custody(tmp_path: Path) -> LocalCustody:
    return LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)


@pytest.fixture
def service(db: Database, custody: LocalCustody) -> KeyService:
    # Tests shred keys at once; a configured service never allows a zero waiting period.
    return KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))


def refuse_audit_writes(db: Database) -> None:
    """Make the database itself refuse every new audit event (a real failure, no mock)."""
    with db.engine.begin() as connection:
        if db.is_sqlite:
            connection.exec_driver_sql(
                "CREATE TRIGGER qrc_refuse_audit BEFORE INSERT ON qrc_audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit writes refused'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION qrc_refuse_audit() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'audit writes refused'; END $$ LANGUAGE plpgsql"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER qrc_refuse_audit BEFORE INSERT ON qrc_audit_events "
                "FOR EACH ROW EXECUTE FUNCTION qrc_refuse_audit()"
            )
