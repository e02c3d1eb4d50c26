"""``qrc admin audit ...`` (the audit chain) and ``qrc admin events`` (security events)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    current_actor,
    handled,
    key_service,
    out,
    parse_time,
    print_json,
    show_time,
)
from qrc.cli.io import fail, say

if TYPE_CHECKING:
    from qrc.keys.store.models import AuditEvent, SecurityEvent

__all__ = ["audit_app", "events"]

audit_app = typer.Typer(
    help="The tamper-evident audit chain: verify, checkpoint, export, query.",
    no_args_is_help=True,
)

# Options `audit query` and `events` share.
SinceOpt = Annotated[str | None, typer.Option(help="From this ISO time (inclusive).")]
UntilOpt = Annotated[str | None, typer.Option(help="Before this ISO time.")]
KeyRefOpt = Annotated[str | None, typer.Option("--key", help="Key ID or name.")]
LimitOpt = Annotated[int, typer.Option(min=1, max=1000, help="Events per page.")]
OutputOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")
]


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


def _time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as times (either may be left out)."""
    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    return start, end


def _details_text(details: dict[str, Any] | None) -> str:
    return json.dumps(details, sort_keys=True) if details else ""


@audit_app.command("verify")
def audit_verify(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Check the whole chain and every checkpoint signature: exit 0 if intact, 1 if not."""
    with key_service(data_dir) as service:
        report = service.audit.verify()
    if as_json:
        print_json(asdict(report))
    elif report.valid:
        say(f"audit chain valid: {report.reason}")
    else:
        say(
            f"qrc: audit chain NOT valid: first bad event {report.first_bad_event}: "
            f"{report.reason} ({report.events} events verified before it)"
        )
    if not report.valid:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Sign the chain head with the service's ML-DSA-65 audit key."""
    with key_service(data_dir) as service:
        checkpoint = service.audit.checkpoint(actor=current_actor())
        result = {
            "seq": checkpoint.seq,
            "at": checkpoint.at,
            "head_hash": bytes(checkpoint.head_hash).hex(),
            "algorithm": checkpoint.algorithm,
            "signer_key_id": checkpoint.signer_key_id,
            "signer_key_version": checkpoint.signer_key_version,
        }
    if as_json:
        print_json(result)
    else:
        say(
            f"checkpoint at seq {checkpoint.seq} signed with {checkpoint.algorithm} "
            f"(key {checkpoint.signer_key_id} v{checkpoint.signer_key_version})"
        )


@audit_app.command("rotate-key")
def audit_rotate_key(data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Give the audit key a new version: the change is signed into the chain by the old one,
    and the new public key is pinned in the data directory's audit anchor."""
    with key_service(data_dir) as service:
        checkpoint = service.audit.rotate_signing_key(actor=current_actor())
        version = service.keys.get_key(checkpoint.signer_key_id).version
    result = {
        "key_id": checkpoint.signer_key_id,
        "version": version,
        "signed_by_version": checkpoint.signer_key_version,
        "checkpoint_seq": checkpoint.seq,
    }
    if as_json:
        print_json(result)
    else:
        say(
            f"audit key {checkpoint.signer_key_id} is now at version {version}; the change is "
            f"in the chain, signed by version {checkpoint.signer_key_version} at seq "
            f"{checkpoint.seq}. Give auditors the new public key (`audit public-key`)."
        )


@audit_app.command("export")
def audit_export(
    output: OutputOpt = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
) -> None:
    """Checkpoint, then write the chain as JSON lines (verify offline with verify-export)."""
    with key_service(data_dir) as service:
        if output is None:
            lines = service.audit.export(sys.stdout, actor=current_actor())
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8") as handle:
                lines = service.audit.export(handle, actor=current_actor())
    if output is not None:
        say(f"exported {lines} lines to {output}")


@audit_app.command("public-key")
def audit_public_key(
    output: OutputOpt = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
) -> None:
    """The audit signing key's public key (SPKI PEM), for offline verification."""
    with key_service(data_dir) as service:
        pem = service.audit.public_key_pem(actor=current_actor())
        fingerprint = service.audit.anchor_fingerprint()
    if output is None:
        sys.stdout.write(pem)
        sys.stdout.flush()
    else:
        with handled():
            output.write_text(pem, encoding="ascii")
        say(f"wrote {output}")
    # Auditors verify an export with --anchor-sha256 given this, through another channel.
    say(f"audit anchor sha256: {fingerprint}")


@audit_app.command("query")
def audit_query(
    since: SinceOpt = None,
    until: UntilOpt = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type, e.g. key.rotate.")
    ] = None,
    key: KeyRefOpt = None,
    actor: Annotated[str | None, typer.Option("--actor", help="e.g. admin:alice.")] = None,
    result: Annotated[
        str | None, typer.Option("--result", help="success, failure, denied, invalid.")
    ] = None,
    limit: LimitOpt = 100,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after a previous page (its cursor).")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Audit events by time, type, key, actor and result, one page at a time."""
    start, end = _time_range(since, until)
    with key_service(data_dir) as service:
        found, next_cursor = service.audit.query(
            since=start,
            until=end,
            event_type=event_type,
            key=key,
            actor=actor,
            result=result,
            limit=limit,
            cursor=cursor,
        )
        rows = [_event_dict(e) for e in found]
    if as_json:
        print_json({"events": rows, "next_cursor": next_cursor})
        return
    table = Table("seq", "at", "type", "actor", "key", "v", "result", "details")
    for row in rows:
        table.add_row(
            str(row["seq"]),
            show_time(row["at"]),
            row["event_type"],
            row["actor"],
            row["key_id"] or "-",
            str(row["key_version"] or "-"),
            row["result"],
            _details_text(row["details"]),
        )
    out.print(table)
    if next_cursor:
        say(f"more: --cursor {next_cursor}")


@audit_app.command("verify-export")
def audit_verify_export(
    export_file: Annotated[Path, typer.Argument(help="A file written by `audit export`.")],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="The audit public key (`audit public-key`)."),
    ] = None,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor", help="The audit anchor (audit-keys.jsonl): every pinned key version."
        ),
    ] = None,
    anchor_sha256: Annotated[
        str | None,
        typer.Option(
            "--anchor-sha256",
            help="Trust the keys the export carries if they have this fingerprint "
            "(`audit public-key` prints it).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify an exported chain offline (no data directory): exit 0 if intact, 1 if not.

    The trust comes from the command line, never from the export alone: one public key, the
    anchor file of every version (after the audit key was rotated), or the fingerprint of
    the keys the export carries, told out of band.
    """
    from qrc.crypto.base import VerifyingKey  # noqa: PLC0415
    from qrc.keys.audit.anchor import FileAnchor  # noqa: PLC0415
    from qrc.keys.audit.log import verify_export  # noqa: PLC0415

    if sum(given is not None for given in (public_key, anchor, anchor_sha256)) != 1:
        fail(
            "give the trust: --public-key PEM, --anchor audit-keys.jsonl or --anchor-sha256 "
            "HEX (one of them)"
        )
    with handled():
        trusted: bytes | dict[tuple[str, int], VerifyingKey] | None = None
        if public_key is not None:
            trusted = public_key.read_bytes()
        elif anchor is not None:
            if not anchor.is_file():
                fail(f"{anchor}: no such anchor file")
            trusted = dict(FileAnchor(anchor).keys())
        with export_file.open("rb") as handle:
            report = verify_export(handle, trusted, anchor_sha256=anchor_sha256)
    if as_json:
        print_json(asdict(report))
    elif report.valid:
        say(f"export valid: {report.reason}")
    else:
        where = report.first_bad_event
        say(f"qrc: export NOT valid: first bad event {where}: {report.reason}")
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


def events(
    event_type: Annotated[
        str | None, typer.Option("--type", help="e.g. key_compromise, hsm_offline.")
    ] = None,
    severity: Annotated[str | None, typer.Option(help="low, medium, high or critical.")] = None,
    key: KeyRefOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: LimitOpt = 100,
    after: Annotated[
        int | None, typer.Option(help="Only events after this ID (the last one seen).")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Security events (authentication failures, bursts, HSM offline, compromise...)."""
    start, end = _time_range(since, until)
    with key_service(data_dir) as service:
        rows = [
            _security_dict(e)
            for e in service.audit.security_events(
                since=start,
                until=end,
                event_type=event_type,
                severity=severity,
                key=key,
                limit=limit,
                after_id=after,
            )
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "at", "type", "severity", "source", "key", "algorithm", "details")
    for row in rows:
        table.add_row(
            str(row["id"]),
            show_time(row["at"]),
            row["event_type"],
            row["severity"],
            row["source"],
            row["key_id"] or "-",
            row["algorithm"] or "-",
            _details_text(row["details"]),
        )
    out.print(table)
    if len(rows) == limit:
        say(f"more: --after {rows[-1]['id']}")
