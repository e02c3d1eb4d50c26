"""Alembic migrations of the key store, run from code (no alembic.ini needed).

``qrc admin`` and the service call :func:`upgrade` at start; operators who prefer the
Alembic command line can point it at this folder (``script_location = qrc.keys.store:migrations``).
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

__all__ = ["alembic_config", "upgrade"]


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration for ``engine`` with our script location."""
    config = Config()
    config.set_main_option("script_location", "qrc.keys.store:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the store behind ``engine`` up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)
