"""``qrc admin keys ...``: key lifecycle, the same operations as the API."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    current_actor,
    key_service,
    out,
    parse_time,
    print_json,
    show_time,
)
from qrc.cli.io import fail, say

if TYPE_CHECKING:
    from qrc.keys.context import KeyInfo

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Key lifecycle (the same operations as the API).", no_args_is_help=True)


def _key_row(info: KeyInfo) -> list[str]:
    if info.destruction_due_at is not None and info.status != "destroyed":
        note = f"destroy {show_time(info.destruction_due_at)}"
    elif info.next_rotation_at is not None:
        note = f"rotate {show_time(info.next_rotation_at)}"
    elif info.expires_at is not None:
        note = f"expires {show_time(info.expires_at)}"
    else:
        note = ""
    return [
        info.name,
        info.id,
        info.algorithm,
        info.purpose,
        info.status,
        str(info.version),
        show_time(info.created_at),
        note,
    ]


def _show_key(info: KeyInfo, as_json: bool, message: str | None = None) -> None:
    if as_json:
        print_json(info.as_dict())
    elif message is not None:
        say(message)
    else:
        for name, value in info.as_dict().items():
            if name == "public_key_pem":
                continue
            shown = json.dumps(value) if isinstance(value, dict) else value
            out.print(f"{name:<24}{'-' if value is None else shown}", highlight=False)
        if info.public_key_pem:
            out.print(info.public_key_pem.rstrip(), highlight=False)


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
    with key_service(data_dir) as service:
        after = None
        while True:
            page, after = service.keys.list_keys(
                status=status_filter, purpose=purpose, limit=1000, after=after
            )
            infos.extend(page)
            if after is None:
                break
    if as_json:
        print_json([info.as_dict() for info in infos])
        return
    table = Table("name", "id", "algorithm", "purpose", "status", "v", "created", "next")
    for info in infos:
        table.add_row(*_key_row(info))
    out.print(table)


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
            fail(f"--label {item!r}: write KEY=VALUE")
        labels[key] = value
    expires_at = parse_time(expires, "--expires") if expires else None
    period = timedelta(days=rotation_days) if rotation_days is not None else None
    with key_service(data_dir) as service:
        info = service.keys.create_key(
            name=name,
            purpose=purpose,
            actor=current_actor(),
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
    with key_service(data_dir) as service:
        info = service.keys.get_key(ref)
    _show_key(info, as_json)


@keys_app.command("rotate")
def keys_rotate(
    ref: RefArg,
    if_version: Annotated[
        int | None,
        typer.Option(
            "--if-version",
            min=1,
            help="Rotate only if the primary version is still N (else fail: someone rotated).",
        ),
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(
            "--algorithm",
            help="Make the new version under this algorithm (old versions keep theirs).",
        ),
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Add a version and make it primary (under another algorithm with --algorithm)."""
    with key_service(data_dir) as service:
        info = service.keys.rotate(
            ref, actor=current_actor(), expected_version=if_version, algorithm=algorithm
        )
    _show_key(info, as_json, f"rotated key {info.name}: primary version is now {info.version}")


@keys_app.command("min-version")
def keys_min_version(
    ref: RefArg,
    version: Annotated[
        int, typer.Argument(min=1, help="Versions below this no longer decrypt or verify.")
    ],
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Retire old versions for decryption and verification (1 ≤ VERSION ≤ primary)."""
    with key_service(data_dir) as service:
        info = service.keys.set_min_decryption_version(ref, version, actor=current_actor())
    _show_key(
        info,
        as_json,
        f"key {info.name}: versions below {info.min_decryption_version} no longer decrypt "
        "or verify",
    )


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
    with key_service(data_dir) as service:
        info = service.keys.revoke(ref, reason, actor=current_actor())
    _show_key(info, as_json, f"revoked key {info.name} ({reason}): now {info.status}")


@keys_app.command("activate")
def keys_activate(
    ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False
) -> None:
    """pre_active → active."""
    with key_service(data_dir) as service:
        info = service.keys.activate(ref, actor=current_actor())
    _show_key(info, as_json, f"activated key {info.name}")


@keys_app.command("suspend")
def keys_suspend(ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """active → suspended: no operation until resumed."""
    with key_service(data_dir) as service:
        info = service.keys.suspend(ref, actor=current_actor())
    _show_key(info, as_json, f"suspended key {info.name}")


@keys_app.command("resume")
def keys_resume(ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """suspended → active."""
    with key_service(data_dir) as service:
        info = service.keys.resume(ref, actor=current_actor())
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
    with key_service(data_dir) as service:
        info = service.keys.schedule_destruction(ref, actor=current_actor(), delay=delay)
    _show_key(
        info,
        as_json,
        f"destruction of key {info.name} scheduled for {show_time(info.destruction_due_at)} "
        f"(runs in `qrc admin scheduler`; cancel with `qrc admin keys cancel-destruction "
        f"{info.name}`)",
    )


@keys_app.command("cancel-destruction")
def keys_cancel_destruction(
    ref: RefArg, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False
) -> None:
    """Cancel a scheduled destruction; the key is as it was."""
    with key_service(data_dir) as service:
        info = service.keys.cancel_destruction(ref, actor=current_actor())
    _show_key(info, as_json, f"destruction of key {info.name} cancelled: {info.status}")
