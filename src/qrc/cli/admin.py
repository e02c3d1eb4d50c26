"""``qrc admin``: operator commands on the key store of a data directory.

Status and health, root KEK rotation, the scheduler, the audit chain, security events,
backup and restore, and key lifecycle for operators without the API. Every command works on
``--data-dir`` (default ``./.qrc``, or ``QRC_DATA_DIR``) and the environment the service uses
(``QRC_DATABASE_URL``, ``QRC_CUSTODY``, ``QRC_MASTER_PASSPHRASE``, ``QRC_PKCS11_*``), acts as
``admin:<os user>`` in the audit chain, prints one line and exits 2 on any error, and takes
``--json`` where its output is data.

The key service (SQLAlchemy, Alembic) is imported inside the commands, so that the offline
toolkit (``qrc encrypt`` ...) does not pay for it at start.
"""

from __future__ import annotations

import enum
import getpass
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

if TYPE_CHECKING:
    from qrc.crypto.base import KemPrivateKey
    from qrc.keys.custody.base import Custody
    from qrc.keys.keystore import KeyInfo
    from qrc.keys.models import AuditEvent, SecurityEvent
    from qrc.keys.service import KeyService
    from qrc.keys.shamir import Share

__all__ = ["admin_app"]

admin_app = typer.Typer(
    name="admin",
    help="Operate the key store of a data directory: status, KEK rotation, scheduler, audit, "
    "backup and restore, keys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(
    help="The tamper-evident audit chain: verify, checkpoint, export, query.",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Key lifecycle (the same operations as the API).", no_args_is_help=True)
admin_app.add_typer(audit_app, name="audit")
admin_app.add_typer(keys_app, name="keys")

_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True)

DataDirOpt = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="QRC_DATA_DIR",
        help="Data directory (SQLite store, sealed KEK files).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
PassOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the key files' passphrase."),
]
DEFAULT_DIR = Path(".qrc")


# --------------------------------------------------------------------------- plumbing
def _say(line: str) -> None:
    """One plain line on stderr (no wrapping or markup: scripts parse it)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _fail(message: str, code: int = 2) -> NoReturn:
    _say(f"qrc: error: {message}")
    raise typer.Exit(code)


def _actor() -> str:
    """``admin:<os user>``: who did it, as the audit chain records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still says who
        user = f"uid{os.getuid()}"
    return f"admin:{user}"


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(f"{option}: {text!r} is not an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable QRC_DATABASE_URL>"


def _store_url(data_dir: Path) -> str:
    return os.environ.get("QRC_DATABASE_URL") or f"sqlite:///{data_dir.resolve() / 'qrc.db'}"


@contextmanager
def _handled() -> Iterator[None]:
    """Turn the key service's errors into one line and exit status 2."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.keys.audit import AuditError  # noqa: PLC0415
    from qrc.keys.custody.base import CustodyError  # noqa: PLC0415
    from qrc.keys.errors import KeyServiceError  # noqa: PLC0415

    try:
        yield
    except (KeyServiceError, CustodyError, AuditError, CryptoError) as exc:
        _fail(str(exc) or type(exc).__name__)
    except SQLAlchemyError as exc:
        # Only the driver's first line: the full text may quote statement parameters.
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
        _fail(f"the database failed ({first}); check QRC_DATABASE_URL and that the server is up")
    except OSError as exc:
        if exc.filename:
            _fail(f"{exc.filename}: {exc.strerror or exc}")
        _fail(str(exc) or type(exc).__name__)
    except ValueError as exc:  # share errors, bad audit queries
        _fail(str(exc) or type(exc).__name__)


@contextmanager
def _service(data_dir: Path) -> Iterator[KeyService]:
    """The key service of ``data_dir``, closed afterwards; errors become one line."""
    from qrc.keys.factory import open_service  # noqa: PLC0415

    with _handled():
        service = open_service(data_dir)
        try:
            yield service
        finally:
            service.keyring.close()
            service.db.dispose()


def _write_new(path: Path, data: bytes) -> None:
    """Write a new file, mode 0600; never replaces one (O_EXCL: not even a racing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _first_line(path: Path) -> bytes:
    lines = path.read_bytes().splitlines()
    if not lines or not lines[0]:
        _fail(f"{path} is empty: put the passphrase on its first line")
    return lines[0]


# --------------------------------------------------------------------------- status
def _kek_hint(kek_id: str) -> str:
    if kek_id.startswith("pkcs11:"):
        label = kek_id.split(":")[2] if kek_id.count(":") >= 2 else "<label>"
        return (
            f"set QRC_PKCS11_TOKEN, QRC_PKCS11_PIN (and QRC_PKCS11_MODULE) so that the token "
            f"holding key label {label!r} can be opened"
        )
    return (
        f"its sealed file (kek-{kek_id}.sealed or kek.sealed) must be in the data directory "
        "and QRC_MASTER_PASSPHRASE must open it"
    )


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
                + _kek_hint(target)
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
    _out.print(f"data dir      {data_dir.resolve()}", highlight=False)
    _out.print(f"store         {report['store']}", highlight=False, markup=False)
    _out.print(
        f"custody       {custody['kind']} [{colour}]{custody['state']}[/] ({custody['detail']})",
        highlight=False,
    )
    _out.print(f"active KEK    {report['active_kek'] or '-'}", highlight=False)
    keys = report["keys"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(keys["by_status"].items())) or "none"
    _out.print(f"keys          {keys['total']} ({counts})", highlight=False)
    audit = report["audit"]
    last = audit["last_checkpoint"]
    checkpoint = "none" if last is None else f"seq {last['seq']} at {_time(last['at'])}"
    _out.print(
        f"audit         {audit['events']} events, last checkpoint {checkpoint}", highlight=False
    )
    if report["keks"]:
        table = Table("KEK", "custody", "status", "created", "retired", "key versions")
        for k in report["keks"]:
            table.add_row(
                k["id"],
                k["custody"],
                k["status"],
                _time(k["created_at"]),
                _time(k["retired_at"]),
                str(k["key_versions"]),
            )
        _out.print(table)
    if keys["by_algorithm"]:
        table = Table("algorithm", "keys")
        for algorithm, n in sorted(keys["by_algorithm"].items()):
            table.add_row(algorithm, str(n))
        _out.print(table)
    for title, rows in (
        ("pending destructions", report["pending_destructions"]),
        ("due rotations", report["due_rotations"]),
    ):
        _out.print(f"{title}: {len(rows)}", highlight=False)
        for row in rows:
            _out.print(f"  {row['name']} ({row['id']}) due {_time(row['due_at'])}", highlight=False)
    for warning in report["warnings"]:
        _say(f"qrc: warning: {warning}")


@admin_app.command()
def status(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Store, custody health, KEKs, keys, audit, pending jobs; exit 1 if custody is offline."""
    from qrc.keys.custody.base import CustodyError  # noqa: PLC0415
    from qrc.keys.db import Database  # noqa: PLC0415
    from qrc.keys.factory import open_service  # noqa: PLC0415

    with _handled():
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
        _print_json(report)
    else:
        _print_status(report, data_dir)
    if report["custody"]["state"] == "offline":
        raise typer.Exit(1)


# --------------------------------------------------------------------------- KEK rotation
class KekTarget(enum.StrEnum):
    """Where the new root KEK lives."""

    local = "local"
    pkcs11 = "pkcs11"


def _new_kek(target: KekTarget, key_label: str | None, data_dir: Path) -> Custody:
    if target is KekTarget.local:
        from qrc.keys.kek import LocalKekFiles  # noqa: PLC0415

        return LocalKekFiles(data_dir).create()
    from dataclasses import replace  # noqa: PLC0415

    from qrc.keys.custody.pkcs11 import Pkcs11Config, Pkcs11Custody  # noqa: PLC0415

    config = replace(Pkcs11Config.from_environment(), key_label=key_label or "")
    return Pkcs11Custody.create_key(config)


def _print_rotation(result: dict[str, Any], data_dir: Path) -> None:
    new_id = result["new_kek_id"]
    _say(
        f"root KEK is now {new_id}: {result['rewrapped']} key versions rewrapped, "
        f"{result['remaining']} remaining; retired: {', '.join(result['retired']) or 'none'}"
    )
    if result["custody"] == "pkcs11":
        label = new_id.split(":")[2] if new_id.count(":") >= 2 else "<label>"
        _say(
            f"next: set QRC_CUSTODY=pkcs11 and QRC_PKCS11_KEY_LABEL={label} for every qrc "
            "process (until then they start from the old KEK and need QRC_PKCS11_TOKEN and "
            "QRC_PKCS11_PIN to follow the new one)"
        )
    else:
        _say(
            f"the new KEK is sealed in {data_dir / f'kek-{new_id}.sealed'} under the same "
            "passphrase; keep it with kek.sealed in the data directory"
        )
    if result["old_keks"]:
        _say(
            "note: database dumps and copies of the store made before this rotation still "
            f"hold key material wrapped under {', '.join(result['old_keks'])}: keep those KEKs "
            "while you may restore such a copy, or destroy them to make the copies useless "
            "(`qrc admin backup` files do not depend on any KEK)"
        )


@admin_app.command("rotate-kek")
def rotate_kek_command(  # noqa: PLR0915 - one linear procedure, clearest in one place
    to: Annotated[
        KekTarget | None, typer.Option("--to", help="Custody of the new root KEK.")
    ] = None,
    key_label: Annotated[
        str | None,
        typer.Option(
            "--key-label",
            help="Label of the NEW KEK in the token (with --to pkcs11), e.g. qrc-root-kek-2.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10000, help="Key versions per transaction.")
    ] = 64,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted rotation to the active KEK."),
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Rewrap every private key under a new root KEK, online and resumable.

    Exit 0 when every key version is under the new KEK; 1 when some remain (another node
    holds them: run again with --resume).
    """
    from sqlalchemy import select  # noqa: PLC0415

    from qrc.keys.custody.base import HealthState  # noqa: PLC0415
    from qrc.keys.kek import active_kek_id, rotate_kek  # noqa: PLC0415
    from qrc.keys.models import KekRecord  # noqa: PLC0415

    if resume and to is not None:
        _fail("--resume continues the rotation to the store's active KEK: leave out --to")
    if not resume and to is None:
        _fail("say where the new KEK lives: --to local or --to pkcs11 (or --resume)")
    if to is KekTarget.pkcs11 and not key_label:
        _fail(
            "--to pkcs11 needs --key-label LABEL, a label the token does not hold yet "
            "(e.g. qrc-root-kek-2); QRC_PKCS11_TOKEN and QRC_PKCS11_PIN say which token"
        )
    if key_label and to is not KekTarget.pkcs11:
        _fail("--key-label names a PKCS#11 key: use it with --to pkcs11")
    actor = _actor()
    with _service(data_dir) as service:
        with service.db.session() as session:
            active = active_kek_id(session)
        if resume:
            if active is None:
                _fail("no KEK rotation is recorded in this store: start one with --to")
            new = service.keyring.get(active)
            if new is None:
                _fail(f"cannot open the store's active KEK {active}: {_kek_hint(active)}")
        else:
            current = service.keyring.get(active) if active else service.keyring.current
            health = current.health() if current is not None else None
            if health is None or health.state is HealthState.OFFLINE:
                detail = health.detail if health else _kek_hint(active or "")
                _fail(f"the current root KEK cannot be used ({detail}): fix that first")
            if to is None:  # checked above; narrows the type
                _fail("give --to local or --to pkcs11")
            new = _new_kek(to, key_label, data_dir)
            if not as_json:
                _say(f"created the new root KEK {new.kek_id} ({new.kind})")
        columns = (TextColumn("rewrapping key versions"), BarColumn(), MofNCompleteColumn())
        quiet = as_json or not sys.stderr.isatty()
        with Progress(*columns, console=_err, transient=True, disable=quiet) as progress:
            task = progress.add_task("rewrap", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=max(total, done))

            report = rotate_kek(service, new, actor=actor, batch_size=batch_size, progress=step)
        with service.db.session() as session:
            old = sorted(session.scalars(select(KekRecord.id).where(KekRecord.id != new.kek_id)))
    result = {
        "new_kek_id": report.new_kek_id,
        "custody": new.kind,
        "rewrapped": report.rewrapped,
        "remaining": report.remaining,
        "retired": report.retired,
        "old_keks": old,
    }
    if as_json:
        _print_json(result)
    else:
        _print_rotation(result, data_dir)
    if report.remaining:
        _say(
            f"qrc: {report.remaining} key versions are still under older KEKs (another node "
            "holds them): run `qrc admin rotate-kek --resume`"
        )
        raise typer.Exit(1)


# --------------------------------------------------------------------------- scheduler
class _Stop(Exception):
    """SIGTERM: stop the scheduler loop like Ctrl-C does."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _scheduler_pass(service: KeyService, actor: str) -> dict[str, Any]:
    from sqlalchemy import func, select  # noqa: PLC0415

    from qrc.keys.models import AuditCheckpoint  # noqa: PLC0415

    counts: dict[str, Any] = dict(service.run_due(actor=actor))
    with service.db.session() as session:
        head, _ = service.audit.head(session)
        last = session.scalar(select(func.max(AuditCheckpoint.seq)))
    counts["checkpoint_seq"] = None
    # A checkpoint per pass only when the chain moved: an idle store gains nothing from more.
    if last is None or last < head:
        counts["checkpoint_seq"] = service.audit_checkpoint(actor=actor).seq
    counts["at"] = datetime.now(UTC)
    return counts


def _print_pass(counts: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(counts, default=_jsonable) + "\n")
        sys.stdout.flush()
        return
    checkpoint = counts["checkpoint_seq"]
    note = "no new audit events" if checkpoint is None else f"checkpoint at seq {checkpoint}"
    _out.print(
        f"{_time(counts['at'])} rotated {counts['rotated']}, expired {counts['expired']}, "
        f"destroyed {counts['destroyed']}; {note}",
        highlight=False,
    )


@admin_app.command()
def scheduler(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=1.0, help="Seconds between passes.")
    ] = 60.0,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Run due rotations, expiries and destructions, and checkpoint the audit chain.

    Safe beside other schedulers on one PostgreSQL (each job runs exactly once). Ctrl-C or
    SIGTERM stops it between (or cleanly inside) passes.
    """
    actor = _actor()
    with _service(data_dir) as service:
        if once:
            _print_pass(_scheduler_pass(service, actor), as_json)
            return
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            while True:
                try:
                    _print_pass(_scheduler_pass(service, actor), as_json)
                except typer.Exit:
                    raise
                except (KeyboardInterrupt, _Stop):
                    raise
                except Exception as exc:  # a daemon outlives a database or HSM outage
                    _say(f"qrc: error: {exc} (next attempt in {interval:g} s)")
                time.sleep(interval)
        except (KeyboardInterrupt, _Stop):
            _say("qrc: scheduler stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- audit
def _event_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "event_type": event.event_type,
        "actor": event.actor,
        "key_id": event.key_id,
        "key_version": event.key_version,
        "algorithm": event.algorithm,
        "result": event.result,
        "details": event.details,
        "hash": bytes(event.hash).hex(),
    }


def _key_id(service: KeyService, ref: str | None) -> str | None:
    """A key reference (ID or name) as the ID events carry; unknown IDs pass through."""
    from qrc.keys.errors import KeyNotFound  # noqa: PLC0415

    if ref is None:
        return None
    try:
        return service.get_key(ref).id
    except KeyNotFound:
        return ref  # events outlive nothing, but an exact ID still filters correctly


@audit_app.command("verify")
def audit_verify(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Check the whole chain and every checkpoint signature: exit 0 if intact, 1 if not."""
    with _service(data_dir) as service:
        report = service.verify_audit()
    if as_json:
        _print_json(asdict(report))
    elif report.valid:
        _say(f"audit chain valid: {report.reason}")
    else:
        _say(
            f"qrc: audit chain NOT valid: first bad event {report.first_bad_event}: "
            f"{report.reason} ({report.events} events verified before it)"
        )
    if not report.valid:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Sign the chain head with the service's ML-DSA-65 audit key."""
    with _service(data_dir) as service:
        checkpoint = service.audit_checkpoint(actor=_actor())
        result = {
            "seq": checkpoint.seq,
            "at": checkpoint.at,
            "head_hash": bytes(checkpoint.head_hash).hex(),
            "algorithm": checkpoint.algorithm,
            "signer_key_id": checkpoint.signer_key_id,
            "signer_key_version": checkpoint.signer_key_version,
        }
    if as_json:
        _print_json(result)
    else:
        _say(
            f"checkpoint at seq {checkpoint.seq} signed with {checkpoint.algorithm} "
            f"(key {checkpoint.signer_key_id} v{checkpoint.signer_key_version})"
        )


@audit_app.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
) -> None:
    """Checkpoint, then write the chain as JSON lines (verify offline with verify-export)."""
    with _service(data_dir) as service:
        if output is None:
            lines = service.export_audit(sys.stdout, actor=_actor())
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8") as handle:
                lines = service.export_audit(handle, actor=_actor())
    if output is not None:
        _say(f"exported {lines} lines to {output}")


@audit_app.command("public-key")
def audit_public_key(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
) -> None:
    """The audit signing key's public key (SPKI PEM), for offline verification."""
    with _service(data_dir) as service:
        pem = service.audit_public_key_pem(actor=_actor())
    if output is None:
        sys.stdout.write(pem)
        sys.stdout.flush()
    else:
        with _handled():
            output.write_text(pem, encoding="ascii")
        _say(f"wrote {output}")


@audit_app.command("query")
def audit_query(
    since: Annotated[str | None, typer.Option(help="From this ISO time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this ISO time.")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type, e.g. key.rotate.")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key ID or name.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="e.g. admin:alice.")] = None,
    result: Annotated[
        str | None, typer.Option("--result", help="success, failure, denied, invalid.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Events per page.")] = 100,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after a previous page (its cursor).")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Audit events by time, type, key, actor and result, one page at a time."""
    start = _parse_time(since, "--since") if since else None
    end = _parse_time(until, "--until") if until else None
    with _service(data_dir) as service:
        events, next_cursor = service.query_audit(
            since=start,
            until=end,
            event_type=event_type,
            key_id=_key_id(service, key),
            actor=actor,
            result=result,
            limit=limit,
            cursor=cursor,
        )
        rows = [_event_dict(e) for e in events]
    if as_json:
        _print_json({"events": rows, "next_cursor": next_cursor})
        return
    table = Table("seq", "at", "type", "actor", "key", "v", "result", "details")
    for row in rows:
        table.add_row(
            str(row["seq"]),
            _time(row["at"]),
            row["event_type"],
            row["actor"],
            row["key_id"] or "-",
            str(row["key_version"] or "-"),
            row["result"],
            json.dumps(row["details"], sort_keys=True) if row["details"] else "",
        )
    _out.print(table)
    if next_cursor:
        _say(f"more: --cursor {next_cursor}")


@audit_app.command("verify-export")
def audit_verify_export(
    export_file: Annotated[Path, typer.Argument(help="A file written by `audit export`.")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="The audit public key (`audit public-key`).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Verify an exported chain offline (no data directory): exit 0 if intact, 1 if not."""
    from qrc.keys.audit import verify_export  # noqa: PLC0415

    with _handled():
        pem = public_key.read_bytes()
        with export_file.open("rb") as handle:
            report = verify_export(handle, pem)
    if as_json:
        _print_json(asdict(report))
    elif report.valid:
        _say(f"export valid: {report.reason}")
    else:
        where = report.first_bad_event
        _say(f"qrc: export NOT valid: first bad event {where}: {report.reason}")
    if not report.valid:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- security events
def _security_dict(event: SecurityEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at,
        "event_type": event.event_type,
        "severity": event.severity,
        "source": event.source,
        "key_id": event.key_id,
        "algorithm": event.algorithm,
        "details": event.details,
    }


@admin_app.command()
def events(
    event_type: Annotated[
        str | None, typer.Option("--type", help="e.g. key_compromise, hsm_offline.")
    ] = None,
    severity: Annotated[str | None, typer.Option(help="low, medium, high or critical.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key ID or name.")] = None,
    since: Annotated[str | None, typer.Option(help="From this ISO time (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this ISO time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Events per page.")] = 100,
    after: Annotated[
        int | None, typer.Option(help="Only events after this ID (the last one seen).")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Security events (authentication failures, bursts, HSM offline, compromise...)."""
    from qrc.keys.events import query_events  # noqa: PLC0415

    start = _parse_time(since, "--since") if since else None
    end = _parse_time(until, "--until") if until else None
    with _service(data_dir) as service:
        key_id = _key_id(service, key)
        with service.db.session() as session:
            rows = [
                _security_dict(e)
                for e in query_events(
                    session,
                    since=start,
                    until=end,
                    event_type=event_type,
                    severity=severity,
                    key_id=key_id,
                    limit=limit,
                    after_id=after,
                )
            ]
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "at", "type", "severity", "source", "key", "algorithm", "details")
    for row in rows:
        table.add_row(
            str(row["id"]),
            _time(row["at"]),
            row["event_type"],
            row["severity"],
            row["source"],
            row["key_id"] or "-",
            row["algorithm"] or "-",
            json.dumps(row["details"], sort_keys=True) if row["details"] else "",
        )
    _out.print(table)
    if len(rows) == limit:
        _say(f"more: --after {rows[-1]['id']}")


# --------------------------------------------------------------------------- backup / restore
@admin_app.command()
def backup(
    output: Annotated[Path, typer.Option("-o", "--output", help="The backup file to write.")],
    threshold: Annotated[
        int, typer.Option("--threshold", "-k", help="Shares needed to restore.")
    ] = 3,
    shares: Annotated[int, typer.Option("--shares", "-n", help="Shares made.")] = 5,
    custodian: Annotated[
        list[Path] | None,
        typer.Option(
            "--custodian",
            help="A custodian's X25519MLKEM768 public key (SPKI PEM); give exactly n, one "
            "share is sealed to each.",
        ),
    ] = None,
    shares_dir: Annotated[
        Path | None,
        typer.Option("--shares-dir", help="Where the shares go (default: next to the backup)."),
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Back up the whole store under a fresh key split into k-of-n Shamir shares."""
    from qrc.crypto.base import KemPublicKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_public_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415
    from qrc.keys.backup import create_backup  # noqa: PLC0415

    custodians = list(custodian or [])
    if custodians and len(custodians) != shares:
        _fail(f"{shares} shares need {shares} --custodian keys, not {len(custodians)}")
    directory = shares_dir or output.parent
    suffix = "sealed" if custodians else "txt"
    targets = [directory / f"share-{i}-of-{shares}.{suffix}" for i in range(1, shares + 1)]
    # Everything is checked before the backup is made: a refused write must not leave a
    # backup.create event for a backup nobody has.
    for path in (output, *targets):
        if path.exists():
            hint = "" if path == output else " (choose another --shares-dir)"
            _fail(f"{path} exists; refusing to overwrite it{hint}")
    with _handled():
        keys = []
        for path in custodians:
            public = load_public_pem(path.read_bytes(), kind=Kind.KEM)
            if not isinstance(public, KemPublicKey):
                _fail(f"{path} is not a KEM public key: custodians need X25519MLKEM768 keys")
            keys.append(public)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _service(data_dir) as service:
        result = create_backup(
            service,
            threshold=threshold,
            shares=shares,
            custodians=keys or None,
            actor=_actor(),
        )
        _write_new(output, result.data)
        if custodians:
            blobs = result.sealed_shares
        else:
            blobs = [(share.to_text() + "\n").encode("ascii") for share in result.shares]
        for path, blob in zip(targets, blobs, strict=True):
            _write_new(path, blob)
    summary = result.summary
    report = {
        "backup_id": result.backup_id,
        "file": str(output),
        "created_at": summary.created_at,
        "threshold": summary.threshold,
        "shares": summary.shares,
        "counts": asdict(summary.counts),
        "share_files": [str(p) for p in targets],
        "sealed_to": [str(p) for p in custodians],
    }
    if as_json:
        _print_json(report)
    else:
        c = summary.counts
        _say(
            f"backup {result.backup_id} written to {output}: {c.keys} keys, {c.key_versions} "
            f"key versions, {c.audit_events} audit events"
        )
        if custodians:
            for key_path, share_path in zip(custodians, targets, strict=True):
                _say(f"  {share_path}: sealed to {key_path}")
        else:
            _say(f"  {shares} text shares in {directory} (share-<i>-of-{shares}.txt)")
        _say(
            f"any {summary.threshold} of the {summary.shares} shares restore it. WARNING: give "
            "each share to a different custodian and delete the copies here: whoever holds "
            f"{summary.threshold} shares and the file holds every key"
        )


def _read_shares(paths: list[Path], keys: list[tuple[Path, KemPrivateKey]]) -> list[Share]:
    from qrc.keys.shamir import MAGIC as SHARE_MAGIC  # noqa: PLC0415
    from qrc.keys.shamir import (  # noqa: PLC0415
        SEALED_MAGIC,
        InvalidShare,
        Share,
        open_sealed_share,
    )

    found = []
    for path in paths:
        data = path.read_bytes()
        if data.startswith(SEALED_MAGIC):
            if not keys:
                _fail(f"{path} is a sealed share: give the custodian's key with --custodian-key")
            share = None
            for _key_path, key in keys:
                try:
                    share = open_sealed_share(data, key)
                    break
                except InvalidShare:
                    continue
            if share is None:
                _fail(
                    f"{path} does not open with any --custodian-key given: wrong custodian "
                    "key, or the sealed share was altered"
                )
            found.append(share)
            continue
        try:
            if data.startswith(SHARE_MAGIC):  # a binary share, as Share.to_bytes writes it
                found.append(Share.from_bytes(data))
            else:
                found.append(Share.from_text(data.decode("utf-8", errors="replace")))
        except InvalidShare as exc:
            _fail(f"{path}: {exc}")
    return found


@admin_app.command()
def restore(
    input: Annotated[Path, typer.Option("-i", "--input", help="The backup file.")],
    share: Annotated[
        list[Path],
        typer.Option("--share", help="A share file (text, or sealed with --custodian-key)."),
    ],
    custodian_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--custodian-key", help="A custodian's private key (PKCS#8 PEM) for sealed shares."
        ),
    ] = None,
    passphrase_file: PassOpt = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into the empty store of the data directory (keys rewrapped)."""
    from qrc.crypto.base import KemPrivateKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_private_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415
    from qrc.keys.backup import read_header, restore_backup  # noqa: PLC0415

    with _handled():
        data = input.read_bytes()
        header = read_header(data)
        passphrase = _first_line(passphrase_file) if passphrase_file else None
        keys: list[tuple[Path, KemPrivateKey]] = []
        for path in custodian_key or []:
            private = load_private_pem(path.read_bytes(), passphrase, kind=Kind.KEM)
            if not isinstance(private, KemPrivateKey):
                _fail(f"{path} is not a KEM private key (custodian keys are X25519MLKEM768)")
            keys.append((path, private))
        shares = _read_shares(share, keys)
    if not as_json:
        _say(
            f"backup {header.backup_id} of {_time(header.created_at)}: "
            f"{header.counts.keys} keys; needs {header.threshold} of {header.shares} shares, "
            f"{len(shares)} given"
        )
    with _service(data_dir) as service:
        report = restore_backup(service, data, shares, actor=_actor())
    result = {
        "backup_id": report.backup_id,
        "created_at": report.created_at,
        "restored_at": report.restored_at,
        "counts": asdict(report.counts),
        "destroyed_versions": report.destroyed_versions,
        "audit_valid": report.audit.valid,
        "kek_id": report.kek_id,
    }
    if as_json:
        _print_json(result)
    else:
        c = report.counts
        _say(
            f"restored {c.keys} keys ({c.key_versions} versions, {report.destroyed_versions} "
            f"destroyed) and {c.audit_events} audit events into {data_dir}; keys rewrapped "
            f"under KEK {report.kek_id}; audit chain valid"
        )


# --------------------------------------------------------------------------- keys
def _key_row(info: KeyInfo) -> list[str]:
    if info.destruction_due_at is not None and info.status != "destroyed":
        note = f"destroy {_time(info.destruction_due_at)}"
    elif info.next_rotation_at is not None:
        note = f"rotate {_time(info.next_rotation_at)}"
    elif info.expires_at is not None:
        note = f"expires {_time(info.expires_at)}"
    else:
        note = ""
    return [
        info.name,
        info.id,
        info.algorithm,
        info.purpose,
        info.status,
        str(info.version),
        _time(info.created_at),
        note,
    ]


def _show_key(info: KeyInfo, as_json: bool, message: str | None = None) -> None:
    if as_json:
        _print_json(info.as_dict())
    elif message is not None:
        _say(message)
    else:
        for name, value in info.as_dict().items():
            if name == "public_key_pem":
                continue
            shown = json.dumps(value) if isinstance(value, dict) else value
            _out.print(f"{name:<24}{'-' if value is None else shown}", highlight=False)
        if info.public_key_pem:
            _out.print(info.public_key_pem.rstrip(), highlight=False)


RefArg = Annotated[str, typer.Argument(help="Key ID or name.")]


@keys_app.command("list")
def keys_list(
    status_filter: Annotated[
        str | None,
        typer.Option("--status", help="e.g. active, suspended, pending_destruction, destroyed."),
    ] = None,
    purpose: Annotated[str | None, typer.Option(help="encryption, signing, key_wrapping.")] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Every key, by ID."""
    infos: list[KeyInfo] = []
    with _service(data_dir) as service:
        after = None
        while True:
            page, after = service.list_keys(
                status=status_filter, purpose=purpose, limit=1000, after=after
            )
            infos.extend(page)
            if after is None:
                break
    if as_json:
        _print_json([info.as_dict() for info in infos])
        return
    table = Table("name", "id", "algorithm", "purpose", "status", "v", "created", "next")
    for info in infos:
        table.add_row(*_key_row(info))
    _out.print(table)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Unique name, e.g. billing/db-fields.")],
    purpose: Annotated[str, typer.Option("--purpose", help="encryption, signing or key_wrapping.")],
    algorithm: Annotated[
        str | None,
        typer.Option("--algorithm", "-a", help="Registry ID (default: the policy's hybrid)."),
    ] = None,
    rotation_days: Annotated[
        float | None, typer.Option("--rotation-days", help="Rotate automatically every N days.")
    ] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="ISO time of expiry.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE (repeatable).")
    ] = None,
    pre_active: Annotated[
        bool, typer.Option("--pre-active", help="Create it pre_active (activate later).")
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and its first version."""
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--label {item!r}: write KEY=VALUE")
        labels[key] = value
    expires_at = _parse_time(expires, "--expires") if expires else None
    period = timedelta(days=rotation_days) if rotation_days is not None else None
    with _service(data_dir) as service:
        info = service.create_key(
            name=name,
            purpose=purpose,
            actor=_actor(),
            algorithm=algorithm,
            expires_at=expires_at,
            rotation_period=period,
            labels=labels,
            activate=not pre_active,
        )
    _show_key(
        info, as_json, f"created key {info.name} ({info.id}): {info.algorithm}, {info.status}"
    )


@keys_app.command("show")
def keys_show(ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """One key's metadata and public key."""
    with _service(data_dir) as service:
        info = service.get_key(ref)
    _show_key(info, as_json)


@keys_app.command("rotate")
def keys_rotate(ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Add a version and make it primary."""
    with _service(data_dir) as service:
        info = service.rotate(ref, actor=_actor())
    _show_key(info, as_json, f"rotated key {info.name}: primary version is now {info.version}")


@keys_app.command("revoke")
def keys_revoke(
    ref: RefArg,
    reason: Annotated[
        str,
        typer.Option("--reason", help="key_compromise, superseded or cessation_of_operation."),
    ],
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Revoke: key_compromise makes it compromised, other reasons deactivated."""
    with _service(data_dir) as service:
        info = service.revoke(ref, reason, actor=_actor())
    _show_key(info, as_json, f"revoked key {info.name} ({reason}): now {info.status}")


@keys_app.command("activate")
def keys_activate(
    ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False
) -> None:
    """pre_active → active."""
    with _service(data_dir) as service:
        info = service.activate(ref, actor=_actor())
    _show_key(info, as_json, f"activated key {info.name}")


@keys_app.command("suspend")
def keys_suspend(ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """active → suspended: no operation until resumed."""
    with _service(data_dir) as service:
        info = service.suspend(ref, actor=_actor())
    _show_key(info, as_json, f"suspended key {info.name}")


@keys_app.command("resume")
def keys_resume(ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """suspended → active."""
    with _service(data_dir) as service:
        info = service.resume(ref, actor=_actor())
    _show_key(info, as_json, f"resumed key {info.name}")


@keys_app.command("destroy")
def keys_destroy(
    ref: RefArg,
    after_days: Annotated[
        float | None,
        typer.Option(
            "--after-days",
            min=0.0,
            help="Waiting period (default QRC_DESTRUCTION_DELAY_DAYS, else 7).",
        ),
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Schedule crypto-shredding; the scheduler erases the material when it is due."""
    delay = timedelta(days=after_days) if after_days is not None else None
    with _service(data_dir) as service:
        info = service.schedule_destruction(ref, actor=_actor(), delay=delay)
    _show_key(
        info,
        as_json,
        f"destruction of key {info.name} scheduled for {_time(info.destruction_due_at)} "
        f"(runs in `qrc admin scheduler`; cancel with `qrc admin keys cancel-destruction "
        f"{info.name}`)",
    )


@keys_app.command("cancel-destruction")
def keys_cancel_destruction(
    ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False
) -> None:
    """Cancel a scheduled destruction; the key is as it was."""
    with _service(data_dir) as service:
        info = service.cancel_destruction(ref, actor=_actor())
    _show_key(info, as_json, f"destruction of key {info.name} cancelled: {info.status}")
