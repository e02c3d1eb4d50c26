"""``qrc admin status``: store, custody health, KEKs, keys, audit and pending jobs."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    handled,
    kek_hint,
    out,
    print_json,
    show_time,
)
from qrc.cli.io import say

if TYPE_CHECKING:
    from qrc.keys.custody.base import Custody
    from qrc.keys.service import KeyService

__all__ = ["status"]


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable QRC_DATABASE_URL>"


def _store_url(data_dir: Path) -> str:
    return os.environ.get("QRC_DATABASE_URL") or f"sqlite:///{data_dir.resolve() / 'qrc.db'}"


def _collect_status(service: KeyService | None, db: Any, problem: str | None) -> dict[str, Any]:
    """Everything ``status`` shows, read in one transaction."""
    from sqlalchemy import func, select  # noqa: PLC0415

    from qrc.keys.custody.base import CustodyError, HealthState  # noqa: PLC0415
    from qrc.keys.kek import active_kek_id  # noqa: PLC0415
    from qrc.keys.lifecycle import KeyState  # noqa: PLC0415
    from qrc.keys.models import (  # noqa: PLC0415
        AuditCheckpoint,
        AuditEvent,
        KekRecord,
        Key,
        KeyVersion,
    )

    now = datetime.now(UTC)
    configured = (os.environ.get("QRC_CUSTODY") or "local").strip().lower()
    warnings: list[str] = []
    with db.session() as session:
        active = active_kek_id(session)
        per_kek = dict(
            session.execute(
                select(KeyVersion.kek_id, func.count())
                .where(KeyVersion.wrapped_private.is_not(None))
                .group_by(KeyVersion.kek_id)
            ).all()
        )
        keks = [
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


def _print_status(report: dict[str, Any], data_dir: Path) -> None:
    custody = report["custody"]
    colour = {"online": "green", "degraded": "yellow"}.get(custody["state"], "red")
    out.print(f"data dir      {data_dir.resolve()}", highlight=False)
    out.print(f"store         {report['store']}", highlight=False, markup=False)
    out.print(
        f"custody       {custody['kind']} [{colour}]{custody['state']}[/] ({custody['detail']})",
        highlight=False,
    )
    out.print(f"active KEK    {report['active_kek'] or '-'}", highlight=False)
    keys = report["keys"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(keys["by_status"].items())) or "none"
    out.print(f"keys          {keys['total']} ({counts})", highlight=False)
    audit = report["audit"]
    last = audit["last_checkpoint"]
    checkpoint = "none" if last is None else f"seq {last['seq']} at {show_time(last['at'])}"
    out.print(
        f"audit         {audit['events']} events, last checkpoint {checkpoint}", highlight=False
    )
    if report["keks"]:
        table = Table("KEK", "custody", "status", "created", "retired", "key versions")
        for k in report["keks"]:
            table.add_row(
                k["id"],
                k["custody"],
                k["status"],
                show_time(k["created_at"]),
                show_time(k["retired_at"]),
                str(k["key_versions"]),
            )
        out.print(table)
    if keys["by_algorithm"]:
        table = Table("algorithm", "keys")
        for algorithm, n in sorted(keys["by_algorithm"].items()):
            table.add_row(algorithm, str(n))
        out.print(table)
    for title, rows in (
        ("pending destructions", report["pending_destructions"]),
        ("due rotations", report["due_rotations"]),
    ):
        out.print(f"{title}: {len(rows)}", highlight=False)
        for row in rows:
            out.print(
                f"  {row['name']} ({row['id']}) due {show_time(row['due_at'])}", highlight=False
            )
    for warning in report["warnings"]:
        say(f"qrc: warning: {warning}")


def status(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Store, custody health, KEKs, keys, audit, pending jobs; exit 1 if custody is offline."""
    from qrc.keys.custody.base import CustodyError  # noqa: PLC0415
    from qrc.keys.db import Database  # noqa: PLC0415
    from qrc.keys.factory import open_service  # noqa: PLC0415

    with handled():
        service: KeyService | None = None
        problem = None
        try:
            service = open_service(data_dir)
            db = service.db
        except CustodyError as exc:
            # The store is migrated before custody is opened: it can still be reported on.
            problem = str(exc)
            db = Database(_store_url(data_dir))
        try:
            report = _collect_status(service, db, problem)
        finally:
            if service is not None:
                service.keyring.close()
            db.dispose()
    report["data_dir"] = str(data_dir.resolve())
    if as_json:
        print_json(report)
    else:
        _print_status(report, data_dir)
    if report["custody"]["state"] == "offline":
        raise typer.Exit(1)
