"""Root KEK rotation: rewrap every stored private key under a new KEK, online and resumable.

Local → local, local → pkcs11, pkcs11 → pkcs11, while the service keeps working:

1. the new KEK is recorded ``active`` and the old ones ``retiring`` (``qrc_keks``);
2. versions still wrapped under another KEK are rewrapped in small batches, each batch one
   transaction (row locks skip batches another node is doing);
3. when none are left, the old KEKs become ``retired``.

Run it again after an interruption and it carries on where it stopped. Other service
processes notice the new active KEK within seconds (:meth:`KeyMaterial.follow_active_kek`)
and, given a loader that can open it, wrap new material under it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qrc.keys.context import ServiceContext
from qrc.keys.custody.base import Custody
from qrc.keys.custody.keyring import key_aad
from qrc.keys.faults import fault_point
from qrc.keys.store.db import utcnow
from qrc.keys.store.keks import active_kek_id, register_kek
from qrc.keys.store.models import KekRecord, KeyVersion

__all__ = ["KekRotation", "KekRotationReport"]


@dataclass(frozen=True)
class KekRotationReport:
    """How a rotation went: the new KEK, versions rewrapped now, versions still to do."""

    new_kek_id: str
    rewrapped: int
    remaining: int
    retired: list[str]


def _remaining(session: Session, kek_id: str) -> int:
    statement = select(func.count()).where(
        KeyVersion.wrapped_private.is_not(None),
        (KeyVersion.kek_id != kek_id) | KeyVersion.kek_id.is_(None),
    )
    return int(session.scalar(statement) or 0)


class KekRotation:
    """The root KEKs of the store and their rotation (``service.keks``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def active_kek_id(self) -> str | None:
        """The KEK the store says new material is wrapped under."""
        with self.ctx.db.read_session() as session:
            return active_kek_id(session)

    def records(self) -> list[KekRecord]:
        """Every KEK the store knows, oldest first."""
        with self.ctx.db.read_session() as session:
            return list(session.scalars(select(KekRecord).order_by(KekRecord.created_at)))

    def rotate(
        self,
        new: Custody,
        *,
        actor: str,
        batch_size: int = 64,
        max_batches: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> KekRotationReport:
        """Rewrap every private key under ``new`` (resumable; see the module docstring).

        ``max_batches`` stops early (the rest is done by the next call); ``progress(done,
        total)`` is called per batch.
        """
        ctx = self.ctx
        keyring = ctx.material.keyring
        old = keyring.current
        with ctx.db.session() as session:
            if session.get(KekRecord, old.kek_id) is None and old.kek_id != new.kek_id:
                register_kek(session, old, status="retiring")
            register_kek(session, new, status="active")
            total = _remaining(session, new.kek_id)
            ctx.record(
                session,
                "kek.rotate",
                actor,
                details={"to": new.kek_id, "custody": new.kind, "versions": total},
            )
        keyring.set_current(new)
        done = batches = 0
        while max_batches is None or batches < max_batches:
            rewrapped = self._rewrap_batch(new, actor, batch_size)
            if not rewrapped:
                break
            done += rewrapped
            batches += 1
            if progress is not None:
                progress(done, total)
            fault_point("kek-rewrap-batch")
        retired: list[str] = []
        with ctx.db.session() as session:
            remaining = _remaining(session, new.kek_id)
            if remaining == 0:
                retiring = select(KekRecord).where(KekRecord.status == "retiring")
                for record in session.scalars(retiring):
                    record.status, record.retired_at = "retired", utcnow()
                    retired.append(record.id)
                if retired:
                    ctx.record(session, "kek.retire", actor, details={"retired": retired})
        return KekRotationReport(new.kek_id, done, remaining, retired)

    def _rewrap_batch(self, new: Custody, actor: str, batch_size: int) -> int:
        ctx = self.ctx
        keyring = ctx.material.keyring
        with ctx.db.session() as session:
            statement = (
                select(KeyVersion)
                .where(
                    KeyVersion.wrapped_private.is_not(None),
                    (KeyVersion.kek_id != new.kek_id) | KeyVersion.kek_id.is_(None),
                )
                .order_by(KeyVersion.id)
                .limit(batch_size)
                .with_for_update(skip_locked=not ctx.db.is_sqlite)
            )
            rows = list(session.scalars(statement))
            if not rows:
                return 0
            for row in rows:
                blob = row.wrapped_private
                if blob is None:  # selected non-null; destroyed since only under our lock
                    continue
                aad = key_aad(row.key_id, row.version, row.algorithm)
                raw = keyring.unwrap(row.key_id, row.version, row.algorithm, blob)
                row.wrapped_private = new.wrap(raw, aad)
                row.kek_id = new.kek_id
            ctx.record(
                session, "kek.rewrap", actor, details={"to": new.kek_id, "versions": len(rows)}
            )
            return len(rows)
