"""``qrc admin rotate-kek``: rewrap every private key under a new root KEK."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    current_actor,
    err,
    kek_hint,
    key_service,
    print_json,
)
from qrc.cli.io import fail, say

if TYPE_CHECKING:
    from qrc.keys.custody.base import Custody

__all__ = ["KekTarget", "rotate_kek_command"]


class KekTarget(enum.StrEnum):
    """Where the new root KEK lives."""

    local = "local"
    pkcs11 = "pkcs11"


def _new_kek(target: KekTarget, key_label: str | None, data_dir: Path) -> Custody:
    from qrc.server.config import load_settings  # noqa: PLC0415

    custody = load_settings(data_dir=data_dir).custody_config()
    if target is KekTarget.local:
        from qrc.keys.custody.kek_files import LocalKekFiles  # noqa: PLC0415

        return LocalKekFiles(data_dir, custody.master_passphrase).create()
    from qrc.keys.custody.pkcs11 import Pkcs11Custody  # noqa: PLC0415

    return Pkcs11Custody.create_key(custody.pkcs11(key_label=key_label or ""))


def _print_rotation(result: dict[str, Any], data_dir: Path) -> None:
    new_id = result["new_kek_id"]
    say(
        f"root KEK is now {new_id}: {result['rewrapped']} key versions rewrapped, "
        f"{result['remaining']} remaining; retired: {', '.join(result['retired']) or 'none'}"
    )
    if result["custody"] == "pkcs11":
        label = new_id.split(":")[2] if new_id.count(":") >= 2 else "<label>"
        say(
            f"next: set QRC_CUSTODY=pkcs11 and QRC_PKCS11_KEY_LABEL={label} for every qrc "
            "process (until then they start from the old KEK and need QRC_PKCS11_TOKEN and "
            "QRC_PKCS11_PIN to follow the new one)"
        )
    else:
        say(
            f"the new KEK is sealed in {data_dir / f'kek-{new_id}.sealed'} under the same "
            "passphrase; keep it with kek.sealed in the data directory"
        )
    if result["old_keks"]:
        say(
            "note: database dumps and copies of the store made before this rotation still "
            f"hold key material wrapped under {', '.join(result['old_keks'])}: keep those KEKs "
            "while you may restore such a copy, or destroy them to make the copies useless "
            "(`qrc admin backup` files do not depend on any KEK)"
        )


def rotate_kek_command(
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
    from qrc.keys.custody.base import HealthState  # noqa: PLC0415

    if resume and to is not None:
        fail("--resume continues the rotation to the store's active KEK: leave out --to")
    if not resume and to is None:
        fail("say where the new KEK lives: --to local or --to pkcs11 (or --resume)")
    if to is KekTarget.pkcs11 and not key_label:
        fail(
            "--to pkcs11 needs --key-label LABEL, a label the token does not hold yet "
            "(e.g. qrc-root-kek-2); QRC_PKCS11_TOKEN and QRC_PKCS11_PIN say which token"
        )
    if key_label and to is not KekTarget.pkcs11:
        fail("--key-label names a PKCS#11 key: use it with --to pkcs11")
    actor = current_actor()
    with key_service(data_dir) as service:
        active = service.keks.active_kek_id()
        if resume:
            if active is None:
                fail("no KEK rotation is recorded in this store: start one with --to")
            new = service.keyring.get(active)
            if new is None:
                fail(f"cannot open the store's active KEK {active}: {kek_hint(active)}")
        else:
            current = service.keyring.get(active) if active else service.keyring.current
            health = current.health() if current is not None else None
            if health is None or health.state is HealthState.OFFLINE:
                detail = health.detail if health else kek_hint(active or "")
                fail(f"the current root KEK cannot be used ({detail}): fix that first")
            if to is None:  # checked above; narrows the type
                fail("give --to local or --to pkcs11")
            new = _new_kek(to, key_label, data_dir)
            if not as_json:
                say(f"created the new root KEK {new.kek_id} ({new.kind})")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: PLC0415

        columns = (TextColumn("rewrapping key versions"), BarColumn(), MofNCompleteColumn())
        quiet = as_json or not sys.stderr.isatty()
        with Progress(*columns, console=err, transient=True, disable=quiet) as progress:
            task = progress.add_task("rewrap", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=max(total, done))

            report = service.keks.rotate(new, actor=actor, batch_size=batch_size, progress=step)
        old = sorted(r.id for r in service.keks.records() if r.id != new.kek_id)
    result = {
        "new_kek_id": report.new_kek_id,
        "custody": new.kind,
        "rewrapped": report.rewrapped,
        "remaining": report.remaining,
        "retired": report.retired,
        "old_keks": old,
    }
    if as_json:
        print_json(result)
    else:
        _print_rotation(result, data_dir)
    if report.remaining:
        say(
            f"qrc: {report.remaining} key versions are still under older KEKs (another node "
            "holds them): run `qrc admin rotate-kek --resume`"
        )
        raise typer.Exit(1)
