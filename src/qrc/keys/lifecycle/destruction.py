"""Destruction (crypto-shredding): every version's wrapped material is erased for good.

Scheduled with a waiting period (:meth:`KeyLifecycle.schedule_destruction`), run by the
scheduler when due. The key's record stays, ``destroyed``.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from qrc.keys.context import ServiceContext
from qrc.keys.faults import fault_point
from qrc.keys.lifecycle.transition import move_to
from qrc.keys.states import KeyState
from qrc.keys.store.db import Database
from qrc.keys.store.models import Key, KeyVersion

__all__ = ["destroy_locked", "purge_freed_storage"]


def destroy_locked(ctx: ServiceContext, session: Session, key: Key, actor: str) -> None:
    """Erase every version of ``key`` and mark it destroyed (the caller holds its row lock)."""
    versions = session.scalars(select(KeyVersion).where(KeyVersion.key_id == key.id))
    now = ctx.clock()
    for index, version in enumerate(versions):
        version.wrapped_private = None
        version.destroyed_at = now
        if index == 0:
            session.flush()
            fault_point("destroy-after-first-version")
    move_to(key, KeyState.DESTROYED, now)
    key.destroyed_at, key.next_rotation_at = now, None
    ctx.record(session, "key.destroy", actor, key=key)


def purge_freed_storage(db: Database) -> None:
    """Ask the database to drop freed copies of erased material.

    SQLite runs with ``secure_delete`` (freed pages are zeroed) and is checkpointed so the
    write-ahead log lets go of old pages; PostgreSQL gets a ``VACUUM`` of the versions
    table. Copies in database backups and PostgreSQL's WAL archive are beyond reach:
    ``docs/key-management.md`` says how KEK rotation makes those useless too.
    """
    if db.is_sqlite:
        # Outside any transaction (ours begin with BEGIN IMMEDIATE), on the raw handle.
        raw = db.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        return
    with db.engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.execute(text("VACUUM qrc_key_versions"))
