"""Alembic environment: runs migrations on the engine handed over by ``alembic_config``."""

from __future__ import annotations

from alembic import context

import qrc.keys.store.models  # noqa: F401 - registers every table on Base.metadata
from qrc.keys.store.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
