"""The state of a store and its custody at a glance (``qrc admin status``).

Read even when the root KEK cannot be opened: the store is reported on, and the custody's
problem is said with what to set.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from qrc.keys.custody.base import Custody, CustodyError, HealthState
from qrc.keys.custody.factory import kek_hint
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.service import KeyService
from qrc.keys.states import KeyState
from qrc.keys.store.db import Database
from qrc.keys.store.keks import active_kek_id
from qrc.keys.store.models import AuditCheckpoint, AuditEvent, KekRecord, Key, KeyVersion

__all__ = ["read_status"]


def read_status(config: ServiceConfig) -> dict[str, Any]:
    """Store, custody health, KEKs, keys, audit, pending jobs and warnings, JSON-ready."""
    service: KeyService | None = None
    problem = None
    try:
        service = open_service(config)
        db = service.db
    except CustodyError as exc:
        # The store is migrated before custody is opened: it can still be reported on.
        problem = str(exc)
        db = Database(config.store_url)
    try:
        return _collect(service, db, config.custody.kind, problem)
    finally:
        if service is not None:
            service.close()
        else:
            db.dispose()


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable QRC_DATABASE_URL>"


def _collect(
    service: KeyService | None, db: Database, configured: str, problem: str | None
) -> dict[str, Any]:
    """Everything the status shows, the store read in one transaction."""
    now = datetime.now(UTC)
    warnings: list[str] = []
    with db.read_session() as session:
        active = active_kek_id(session)
        per_kek = dict(
            session.execute(
                select(KeyVersion.kek_id, func.count())
                .where(KeyVersion.wrapped_private.is_not(None))
                .group_by(KeyVersion.kek_id)
            ).all()
        )
        keks: list[dict[str, Any]] = [
            {
                "id": r.id,
                "custody": r.custody,
                "status": r.status,
                "created_at": r.created_at,
                "retired_at": r.retired_at,
                "key_versions": int(per_kek.get(r.id, 0)),
            }
            for r in session.scalars(select(KekRecord).order_by(KekRecord.created_at))
        ]
        # A restored store wraps under its KEK before any record of it exists.
        recorded = {k["id"] for k in keks}
        keks += [
            {
                "id": kek_id,
                "custody": str(kek_id).split("-")[0].split(":")[0],
                "status": "unrecorded",
                "created_at": None,
                "retired_at": None,
                "key_versions": int(n),
            }
            for kek_id, n in per_kek.items()
            if kek_id is not None and kek_id not in recorded
        ]
        by_status = {
            str(s): int(n)
            for s, n in session.execute(select(Key.status, func.count()).group_by(Key.status))
        }
        by_algorithm = {
            str(a): int(n)
            for a, n in session.execute(select(Key.algorithm, func.count()).group_by(Key.algorithm))
        }
        pending = [
            {"id": k.id, "name": k.name, "due_at": k.destruction_due_at}
            for k in session.scalars(
                select(Key)
                .where(Key.destruction_due_at.is_not(None), Key.status != KeyState.DESTROYED.value)
                .order_by(Key.destruction_due_at)
            )
        ]
        due = [
            {"id": k.id, "name": k.name, "due_at": k.next_rotation_at}
            for k in session.scalars(
                select(Key)
                .where(
                    Key.next_rotation_at.is_not(None),
                    Key.next_rotation_at <= now,
                    Key.status == KeyState.ACTIVE.value,
                    Key.destruction_due_at.is_(None),
                )
                .order_by(Key.next_rotation_at)
            )
        ]
        events = int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
        head = session.scalar(select(func.max(AuditEvent.seq)))
        checkpoint = session.scalars(
            select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
        ).first()

    custody: dict[str, Any] = {"configured": configured}
    if service is None:
        custody.update(state=HealthState.OFFLINE.value, kind=configured, kek_id=None)
        custody["detail"] = problem or "custody could not be opened"
    else:
        current = service.keyring.current
        target = active or current.kek_id
        try:
            opened: Custody | None = service.keyring.get(target)
        except CustodyError as exc:
            opened, problem = None, str(exc)
        if opened is None:
            custody.update(state=HealthState.OFFLINE.value, kind=current.kind, kek_id=target)
            custody["detail"] = problem or (
                f"this configuration cannot open the store's active KEK {target}: "
                + kek_hint(target)
            )
        else:
            health = opened.health()
            custody.update(
                state=health.state.value,
                kind=health.custody,
                kek_id=health.kek_id,
                detail=health.detail,
            )
            if opened.kind != current.kind:
                warnings.append(
                    f"QRC_CUSTODY={configured} opens KEK {current.kek_id}, but the store's "
                    f"active KEK is {opened.kek_id} ({opened.kind}): set QRC_CUSTODY="
                    f"{opened.kind}"
                    + (" and QRC_PKCS11_KEY_LABEL" if opened.kind == "pkcs11" else "")
                )
        if getattr(current, "development_passphrase", False):
            warnings.append(
                "DEVELOPMENT ONLY: the root KEK is sealed under the generated master.key in the "
                "data directory; set QRC_MASTER_PASSPHRASE (and delete master.key) in production"
            )
    unfinished = sum(k["key_versions"] for k in keks if k["status"] == "retiring")
    if unfinished or any(k["status"] == "retiring" for k in keks):
        warnings.append(
            f"a KEK rotation is unfinished ({unfinished} key versions under older KEKs): "
            "run `qrc admin rotate-kek --resume`"
        )
    if head and (checkpoint is None or checkpoint.seq < head):
        behind = head - (checkpoint.seq if checkpoint else 0)
        warnings.append(
            f"{behind} audit events are not covered by a signed checkpoint yet: run "
            "`qrc admin audit checkpoint` or keep `qrc admin scheduler` running"
        )
    return {
        "store": _redact(str(db.url)),
        "custody": custody,
        "active_kek": active,
        "keks": keks,
        "keys": {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_algorithm": by_algorithm,
        },
        "audit": {
            "events": events,
            "head_seq": head or 0,
            "last_checkpoint": None
            if checkpoint is None
            else {"seq": checkpoint.seq, "at": checkpoint.at, "algorithm": checkpoint.algorithm},
        },
        "pending_destructions": pending,
        "due_rotations": due,
        "warnings": warnings,
    }
