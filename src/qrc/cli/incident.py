"""``qrc incident``: run the incident playbooks on a data directory (``docs/incident-response.md``).

``qrc incident key-compromise KEY`` and ``qrc incident algorithm-break ALG`` first show the
plan and change nothing; ``--yes`` runs it (at a terminal, the plan is followed by a
question). A run prints each step as it ends (stderr), then the report (stdout; ``--json``
for machines), audits itself, sends ``incident`` notices and a fresh audit checkpoint to
the configured event sinks (``QRC_WEBHOOK_URL``, ``QRC_SYSLOG_ADDRESS``), and exits 0 when
complete, 1 when a step is left to finish (fix what it names and run the same command
again: every step skips what is already done). Registered in ``qrc.cli.main`` as
``("incident", "qrc.cli.incident:incident_app")``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    current_actor,
    handled,
    print_json,
)
from qrc.cli.io import say

if TYPE_CHECKING:
    from qrc.data.rewrap import RewrapTarget
    from qrc.keys.service import KeyService
    from qrc.monitor.incident import IncidentReport, Notifier

__all__ = ["incident_app"]

incident_app = typer.Typer(
    name="incident",
    help="Incident playbooks: key compromise, algorithm break (dry run unless --yes).",
    no_args_is_help=True,
    add_completion=False,
)

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Act: run the playbook, not only plan.")]
SqlOpt = Annotated[
    str | None, typer.Option("--sql-url", help="The application database of sql: locations.")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="The Redis of redis: locations.")]

# (service, execute, targets, notifier) -> report
Playbook = Callable[
    ["KeyService", bool, "Mapping[str, RewrapTarget]", "Notifier | None"], "IncidentReport"
]


@contextmanager
def _session(
    data_dir: Path, sql_url: str | None, redis_url: str | None
) -> Iterator[tuple[KeyService, Mapping[str, RewrapTarget], Notifier | None]]:
    from qrc.data.rewrap import open_targets  # noqa: PLC0415
    from qrc.keys.factory import open_service  # noqa: PLC0415
    from qrc.server.config import load_settings  # noqa: PLC0415
    from qrc.server.sinkjob import open_sinks  # noqa: PLC0415

    with handled():
        settings = load_settings(data_dir=data_dir)
        targets, close_targets = open_targets(sql_url=sql_url, redis_url=redis_url)
        service = open_service(settings.service_config())
        try:
            with open_sinks(settings, service) as dispatcher:
                if dispatcher is not None:
                    say(f"qrc: notifying {', '.join(dispatcher.sinks)}")
                else:
                    say(
                        "qrc: no event sink is configured (QRC_WEBHOOK_URL, "
                        "QRC_SYSLOG_ADDRESS): tell the SIEM and the on-call team yourself"
                    )
                yield service, targets, dispatcher
            for stats in dispatcher.stats() if dispatcher is not None else []:
                lost = sum(stats.dropped.values())
                if lost or stats.depth:
                    say(
                        f"qrc: {lost} event(s) could not be delivered to the {stats.sink} sink "
                        f"(last error: {stats.last_error}); the audit chain has them all"
                    )
        finally:
            service.close()
            close_targets()


def _show(report: IncidentReport, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    out = sys.stdout
    verb = "plan" if report.dry_run else report.outcome
    out.write(f"incident {report.incident_id}: {report.playbook} of {report.subject} ({verb})\n")
    for step in report.steps:
        out.write(f"  {step.name:<13} {step.status:<13} {step.action}\n")
        for key, value in step.detail.items():
            if value not in ({}, [], None):
                out.write(f"  {'':<13} {'':<13}   {key}: {value}\n")
    out.write("What remains for people to do:\n")
    for action in report.human_actions:
        out.write(f"  - {action}\n")
    out.flush()


def _run(
    playbook: Playbook,
    data_dir: Path,
    yes: bool,
    as_json: bool,
    sql_url: str | None,
    redis_url: str | None,
) -> None:
    with _session(data_dir, sql_url, redis_url) as (service, targets, notifier):
        with handled():
            report = playbook(service, False, targets, None)
        if not yes:
            _show(report, as_json)
            ask = sys.stdin.isatty() and sys.stdout.isatty() and not as_json
            if not ask or not typer.confirm("Run this playbook now?", default=False):
                say("qrc: dry run, nothing changed; run again with --yes to act")
                return
        with handled():
            try:
                report = playbook(service, True, targets, notifier)
            finally:
                # A checkpoint over the incident's events, for the witness and the sinks.
                service.audit.checkpoint_if_moved(actor=current_actor())
        _show(report, as_json)
    if report.outcome != "complete":
        say("qrc: the playbook is not finished: fix what the failed step names, run it again")
        raise typer.Exit(1)


@incident_app.command("key-compromise")
def key_compromise(
    key: Annotated[str, typer.Argument(help="The compromised key (name or ID).")],
    data_dir: DataDirOpt = DEFAULT_DIR,
    yes: YesOpt = False,
    suspend: Annotated[
        bool, typer.Option("--suspend", help="Only suspend (unconfirmed compromise).")
    ] = False,
    algorithm: Annotated[
        str | None,
        typer.Option("--algorithm", "-a", help="Replacement's algorithm (default: policy's)."),
    ] = None,
    sql_url: SqlOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a compromised key, replace it, move its data to the replacement, report."""
    from qrc.monitor.incident_key import key_compromise as playbook  # noqa: PLC0415

    actor = current_actor()

    def run(
        service: KeyService,
        execute: bool,
        targets: Mapping[str, RewrapTarget],
        notifier: Notifier | None,
    ) -> IncidentReport:
        return playbook(
            service, key, actor=actor, execute=execute, suspend=suspend, algorithm=algorithm,
            targets=targets, notifier=notifier, progress=say if execute else None,
        )  # fmt: skip

    _run(run, data_dir, yes, as_json, sql_url, redis_url)


@incident_app.command("algorithm-break")
def algorithm_break(
    algorithm: Annotated[str, typer.Argument(help="The broken algorithm (registry ID).")],
    data_dir: DataDirOpt = DEFAULT_DIR,
    yes: YesOpt = False,
    to: Annotated[
        str | None,
        typer.Option("--to", help="New default where ALG is a purpose's default."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Disallow now, even with data left under ALG.")
    ] = False,
    certificates_out: Annotated[
        Path | None,
        typer.Option("--certificates-out", help="Where reissued leaf certificates are written."),
    ] = None,
    sql_url: SqlOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop using a broken algorithm: deprecate it, migrate off it, disallow it; report."""
    from qrc.monitor.incident_algorithm import algorithm_break as playbook  # noqa: PLC0415

    actor = current_actor()

    def run(
        service: KeyService,
        execute: bool,
        targets: Mapping[str, RewrapTarget],
        notifier: Notifier | None,
    ) -> IncidentReport:
        return playbook(
            service, algorithm, actor=actor, execute=execute, replacement=to, force=force,
            targets=targets, data_dir=data_dir, certificates_out=certificates_out,
            notifier=notifier, progress=say if execute else None,
        )  # fmt: skip

    _run(run, data_dir, yes, as_json, sql_url, redis_url)
