"""Root KEK records, rotation, and the local KEK files of a data directory.

A KEK rotation rewraps every stored private key under a new root KEK (local → local,
local → pkcs11, pkcs11 → pkcs11) while the service keeps working:

1. the new KEK is recorded ``active`` and the old ones ``retiring`` (``qrc_keks``);
2. versions still wrapped under another KEK are rewrapped in small batches, each batch one
   transaction (row locks skip batches another node is doing);
3. when none are left, the old KEKs become ``retired``.

Run it again after an interruption and it carries on where it stopped. Other service
processes notice the new active KEK within seconds (:meth:`KeyStore._follow_active_kek`)
and, given a loader that can open it, wrap new material under it too.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qrc.keys.custody.base import Custody, CustodyError
from qrc.keys.custody.local import KEK_FILE, PASSPHRASE_ENV, PASSPHRASE_FILE, LocalCustody
from qrc.keys.db import utcnow
from qrc.keys.models import KekRecord, KeyVersion
from qrc.keys.wrapping import key_aad

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "KekRotationReport",
    "LocalKekFiles",
    "active_kek_id",
    "register_kek",
    "rotate_kek",
]


def register_kek(session: Session, custody: Custody, *, status: str = "active") -> KekRecord:
    """Record ``custody``'s KEK (idempotent); ``active`` demotes any other active KEK."""
    record = session.get(KekRecord, custody.kek_id)
    if status == "active":
        for other in session.scalars(select(KekRecord).where(KekRecord.status == "active")):
            if other.id != custody.kek_id:
                other.status = "retiring"
    if record is None:
        record = KekRecord(
            id=custody.kek_id, custody=custody.kind, status=status, created_at=utcnow(), details={}
        )
        session.add(record)
    else:
        record.status = status
    session.flush()
    return record


def active_kek_id(session: Session) -> str | None:
    """The KEK new material is wrapped under, as recorded in the store."""
    return session.scalar(select(KekRecord.id).where(KekRecord.status == "active"))


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


def rotate_kek(
    service: KeyService,
    new: Custody,
    *,
    actor: str,
    batch_size: int = 64,
    max_batches: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> KekRotationReport:
    """Rewrap every private key under ``new`` (resumable; see the module docstring).

    ``service`` is a :class:`~qrc.keys.service.KeyService`. ``max_batches`` stops early
    (the rest is done by the next call); ``progress(done, total)`` is called per batch.
    """
    from qrc.keys.management import fault_point  # noqa: PLC0415 - management imports us

    keyring = service.keyring
    old = keyring.current
    with service.db.session() as session:
        if session.get(KekRecord, old.kek_id) is None and old.kek_id != new.kek_id:
            register_kek(session, old, status="retiring")
        register_kek(session, new, status="active")
        total = _remaining(session, new.kek_id)
        service._audit(
            session,
            "kek.rotate",
            actor,
            details={"to": new.kek_id, "custody": new.kind, "versions": total},
        )
    keyring.set_current(new)
    done = batches = 0
    while max_batches is None or batches < max_batches:
        with service.db.session() as session:
            statement = (
                select(KeyVersion)
                .where(
                    KeyVersion.wrapped_private.is_not(None),
                    (KeyVersion.kek_id != new.kek_id) | KeyVersion.kek_id.is_(None),
                )
                .order_by(KeyVersion.id)
                .limit(batch_size)
                .with_for_update(skip_locked=not service.db.is_sqlite)
            )
            rows = list(session.scalars(statement))
            if not rows:
                break
            for row in rows:
                blob = row.wrapped_private
                if blob is None:  # selected non-null; destroyed since only under our lock
                    continue
                aad = key_aad(row.key_id, row.version, row.algorithm)
                raw = keyring.unwrap(row.key_id, row.version, row.algorithm, blob)
                row.wrapped_private = new.wrap(raw, aad)
                row.kek_id = new.kek_id
            service._audit(
                session, "kek.rewrap", actor, details={"to": new.kek_id, "versions": len(rows)}
            )
        done += len(rows)
        batches += 1
        if progress is not None:
            progress(done, total)
        fault_point("kek-rewrap-batch")
    retired: list[str] = []
    with service.db.session() as session:
        remaining = _remaining(session, new.kek_id)
        if remaining == 0:
            for record in session.scalars(select(KekRecord).where(KekRecord.status == "retiring")):
                record.status, record.retired_at = "retired", utcnow()
                retired.append(record.id)
            if retired:
                service._audit(session, "kek.retire", actor, details={"retired": retired})
    return KekRotationReport(new.kek_id, done, remaining, retired)


class LocalKekFiles:
    """The sealed KEK files of a data directory: ``kek.sealed`` and ``kek-<id>.sealed``.

    The first KEK lives in ``kek.sealed``; each local KEK made by a rotation gets a file of
    its own. All are sealed under the same passphrase (``QRC_MASTER_PASSPHRASE``, or the
    development ``master.key``).
    """

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = os.environ if env is None else env

    def passphrase(self) -> str:
        """The passphrase the KEK files are sealed under."""
        value = self.env.get(PASSPHRASE_ENV)
        if value:
            return value
        path = self.data_dir / PASSPHRASE_FILE
        if path.exists():
            return path.read_text("utf-8").strip()
        raise CustodyError(f"set {PASSPHRASE_ENV} to the passphrase the root KEK is sealed with")

    def path_for(self, kek_id: str) -> Path:
        """Where a rotated-in local KEK is sealed."""
        return self.data_dir / f"kek-{kek_id}.sealed"

    def create(self) -> LocalCustody:
        """A new local KEK, sealed into its own file."""
        staging = self.data_dir / f"kek-new-{secrets.token_hex(4)}.sealed"
        custody = LocalCustody.create(staging, self.passphrase())
        staging.rename(self.path_for(custody.kek_id))
        return custody

    def load(self, kek_id: str) -> Custody | None:
        """Open the local KEK ``kek_id`` if its file is here (the loader of a Keyring)."""
        if not kek_id.startswith("local-"):
            return None
        for path in (self.path_for(kek_id), self.data_dir / KEK_FILE):
            if path.exists():
                custody = LocalCustody.open(path, self.passphrase())
                if custody.kek_id == kek_id:
                    return custody
                custody.close()
        return None
