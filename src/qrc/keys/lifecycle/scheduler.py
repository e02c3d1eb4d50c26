"""Scheduled jobs on keys: due destructions, expiries and rotations, once across nodes.

Each due key is handled in its own transaction under its row lock (on PostgreSQL
``FOR UPDATE SKIP LOCKED``: another node's key is skipped, not waited for) and the due
condition is checked again under the lock, so each job runs exactly once however many
nodes run the scheduler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from qrc.keys.context import ServiceContext, guarded
from qrc.keys.lifecycle.destruction import destroy_locked, purge_freed_storage
from qrc.keys.lifecycle.rotation import rotate_locked
from qrc.keys.lifecycle.transition import move_to
from qrc.keys.states import KeyState
from qrc.keys.store.models import Key

__all__ = ["KeyScheduler"]

_BATCH = 1000


class KeyScheduler:
    """Runs what is due on keys (``service.scheduler``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    @guarded("scheduler.run")
    def run_due(self, *, actor: str = "scheduler", now: datetime | None = None) -> dict[str, int]:
        """Run due destructions, expiries and rotations; counts of each."""
        moment = now or self.ctx.clock()
        counts = {"rotated": 0, "expired": 0, "destroyed": 0}
        for key_id in self._due_ids(Key.destruction_due_at, moment):
            if self._run_one(key_id, moment, actor, "destroy"):
                counts["destroyed"] += 1
        for key_id in self._due_ids(Key.expires_at, moment):
            if self._run_one(key_id, moment, actor, "expire"):
                counts["expired"] += 1
        for key_id in self._due_ids(Key.next_rotation_at, moment):
            if self._run_one(key_id, moment, actor, "rotate"):
                counts["rotated"] += 1
        if counts["destroyed"]:
            purge_freed_storage(self.ctx.db)
        return counts

    def _due_ids(self, column: Any, moment: datetime) -> list[str]:
        with self.ctx.db.session() as session:
            statement = select(Key.id).where(
                column.is_not(None), column <= moment, Key.status != KeyState.DESTROYED.value
            )
            return list(session.scalars(statement.order_by(Key.id).limit(_BATCH)))

    def _run_one(self, key_id: str, moment: datetime, actor: str, job: str) -> bool:
        ctx = self.ctx
        with ctx.db.session() as session:
            statement = select(Key).where(Key.id == key_id)
            statement = statement.with_for_update(skip_locked=not ctx.db.is_sqlite)
            key = session.scalars(statement).first()
            if key is None or key.status == KeyState.DESTROYED:
                return False
            if job == "destroy":
                if key.destruction_due_at is None or key.destruction_due_at > moment:
                    return False
                destroy_locked(ctx, session, key, actor)
            elif job == "expire":
                if key.expires_at is None or key.expires_at > moment:
                    return False
                if key.status not in (KeyState.ACTIVE, KeyState.SUSPENDED, KeyState.PRE_ACTIVE):
                    return False
                move_to(key, KeyState.DEACTIVATED, ctx.clock())
                key.next_rotation_at = None
                ctx.record(session, "key.expire", actor, key=key)
            else:
                due = key.next_rotation_at
                if due is None or due > moment or key.status != KeyState.ACTIVE:
                    return False
                if key.destruction_due_at is not None:
                    return False
                rotate_locked(ctx, session, key, actor, key.primary_version, moment)
        if job == "destroy":
            ctx.material.forget(key_id)
        return True
