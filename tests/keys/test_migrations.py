"""The Alembic migrations against the models, on SQLite and on a fresh PostgreSQL database.

The schema is owned by the migrations (``Database.upgrade``), the code by the models: if a
model changes without a migration, ``compare_metadata`` between a migrated store and
``Base.metadata`` shows the difference and this module fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, inspect

import qrc.keys.store.models  # registers every table on Base.metadata
from qrc.keys.store.db import Base, Database
from qrc.keys.store.migrations import alembic_config
from tests.keys.pg import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, unmigrated store: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
        yield database
        database.dispose()
        return
    with fresh_database() as url:
        database = Database(url)
        yield database
        database.dispose()


def _differences(engine: Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as connection:
        # The same comparison options as migrations/env.py uses for autogenerate.
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _qrc_tables(engine: Engine) -> set[str]:
    return {name for name in inspect(engine).get_table_names() if name.startswith("qrc_")}


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _head(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def test_upgrade_from_empty_matches_the_models(empty_db: Database) -> None:
    engine = empty_db.engine
    assert _qrc_tables(engine) == set()
    empty_db.upgrade()
    assert _current_revision(engine) == _head(engine)
    assert _qrc_tables(engine) == set(Base.metadata.tables)
    assert _differences(engine, Base.metadata) == []


def test_downgrade_to_base_and_upgrade_again(empty_db: Database) -> None:
    engine = empty_db.engine
    empty_db.upgrade()
    command.downgrade(alembic_config(engine), "base")
    assert _qrc_tables(engine) == set()
    assert _current_revision(engine) is None
    empty_db.upgrade()
    assert _current_revision(engine) == _head(engine)
    assert _differences(engine, Base.metadata) == []


def test_upgrade_is_idempotent(empty_db: Database) -> None:
    engine = empty_db.engine
    empty_db.upgrade()
    with empty_db.session() as session:
        session.add(qrc.keys.store.models.Policy(name="marker", value={"kept": True}))
    empty_db.upgrade()
    empty_db.upgrade("head")
    assert _current_revision(engine) == _head(engine)
    assert _differences(engine, Base.metadata) == []
    with empty_db.session() as session:  # data survives a repeated upgrade
        policy = session.get(qrc.keys.store.models.Policy, "marker")
        assert policy is not None and policy.value == {"kept": True}


def test_a_model_change_without_a_migration_is_detected(tmp_path: Path) -> None:
    """The comparison has teeth: a column the migrations lack shows up as a difference."""
    database = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    database.upgrade()
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["qrc_keys"].append_column(Column("added_without_migration", Integer))
    differences = _differences(database.engine, changed)
    database.dispose()
    assert len(differences) == 1
    assert "added_without_migration" in repr(differences[0])
