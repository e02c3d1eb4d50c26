"""``qrc migrate``: leave an algorithm — plan it, dry-run it, run it, resume it.

``plan ALG`` shows the keys, certificates, encrypted objects and TLS channels under ``ALG``
with the work estimated from the measured benchmarks; ``run ALG`` rotates the keys, rewraps
the indexed data (``--sql-url``/``--redis-url``: where it lives), reissues the private CA's
leaf certificates (``--certificates-out``: where the new keys go) and tightens the TLS
policy; ``update ALG=STATUS...`` changes statuses and migrates off every algorithm the change
deprecates or disallows (the story's ``update_qrc_algorithms_and_keys``). A run that was
interrupted is finished by running it again. Registered in ``qrc.cli.main`` as
``("migrate", "qrc.cli.migrate:migrate_app")``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrc.cli.admin.common import DEFAULT_DIR, DataDirOpt, JsonOpt, current_actor, key_service
from qrc.cli.io import fail

if TYPE_CHECKING:
    from qrc.monitor.migration_plan import FullMigrationPlan
    from qrc.monitor.migration_run import MigrationRun, Progress

__all__ = ["migrate_app"]

migrate_app = typer.Typer(
    name="migrate",
    help="Move keys, data, certificates and TLS policy off an algorithm.",
    no_args_is_help=True,
)

Algorithm = Annotated[
    str, typer.Argument(help="A registry ID, e.g. ML-KEM-768 (see `qrc algorithms`).")
]
SqlUrl = Annotated[
    str | None, typer.Option("--sql-url", help="The application database of sql: locations.")
]
RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="The Redis of redis: locations.")]
CertsOut = Annotated[
    Path | None,
    typer.Option(
        "--certificates-out",
        help="Directory for reissued leaf certificates and their new keys (mode 0600).",
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Run without asking.")]


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\n")


def _plan_lines(plan: FullMigrationPlan) -> list[str]:
    counts = plan.counts
    lines = [
        f"migration off {plan.algorithm} ({plan.kind}, {plan.status})",
        f"  keys {counts['keys']} (to rotate {counts['keys_to_rotate']}), objects "
        f"{counts['objects']}, certificates {counts['certificates']} (to reissue "
        f"{counts['certificates_to_reissue']}), channels {counts['channels']}, "
        f"manual {counts['manual']}",
        f"  estimated machine time {plan.estimate.seconds:.3f} s"
        + (
            f" (unmeasured: {', '.join(plan.estimate.unmeasured)})"
            if plan.estimate.unmeasured
            else ""
        ),
    ]
    for key in plan.keys.keys:
        target = f" -> {key.target}" if key.rotates else ""
        lines.append(f"  key {key.name} v{key.primary_version}: {key.action}{target}")
    for group in plan.objects:
        lines.append(f"  objects {group.objects} {group.data_type or 'untyped'} under "
                     f"{group.key_name} v{group.key_version}")  # fmt: skip
    for cert in plan.certificates:
        lines.append(f"  certificate {cert.role} {cert.subject} {cert.serial}: {cert.action}")
    for channel in plan.channels:
        lines.append(f"  channel {channel.name}: {channel.action}")
    if plan.nothing_to_do:
        lines.append("  nothing uses it: nothing to do")
    return lines


def _run_lines(run: MigrationRun) -> list[str]:
    state = "dry run" if run.dry_run else ("complete" if run.complete else "not complete")
    summary = ", ".join(f"{k} {v}" for k, v in run.summary().items())
    lines = [f"migration off {run.algorithm}: {state} ({summary})"]
    lines += [f"  rotated {r['key']} to {r['algorithm']} v{r['version']}" for r in run.rotated]
    lines += [f"  rewrapped {r['rewrapped']} object(s) of {r['key']}" for r in run.rewrapped]
    lines += [
        f"  reissued {r['old_serial']} as {r['new_serial']} ({r['family']}): {r['certificate']}"
        for r in run.reissued
    ]
    lines += [f"  tightened {t}" for t in run.tightened]
    lines += [f"  FAILED {f['step']} {f['item']}: {f['reason']}" for f in run.failed]
    lines += [f"  {'would' if run.dry_run else 'pending'}: {p}" for p in run.pending]
    lines += [f"  manual: {m}" for m in run.manual]
    if not run.dry_run and not run.complete:
        lines.append("  run it again to go on (it resumes where it stopped)")
    return lines


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    """A progress bar per step on a terminal; one line per event on stderr otherwise."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():

        def line(step: str, done: int, total: int, what: str) -> None:
            sys.stderr.write(f"{step} {done}/{total}: {what}\n")
            sys.stderr.flush()

        yield line
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import Progress as Bar  # noqa: PLC0415

    with Bar(console=Console(stderr=True)) as bar:
        tasks: dict[str, Any] = {}

        def update(step: str, done: int, total: int, what: str) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=None)
            bar.update(tasks[step], completed=done, total=max(total, done) or None,
                       description=f"{step}: {what[:60]}")  # fmt: skip

        yield update


@contextmanager
def _targets(sql_url: str | None, redis_url: str | None) -> Iterator[dict[str, Any]]:
    from qrc.data.rewrap import open_targets  # noqa: PLC0415

    try:
        targets, close = open_targets(sql_url=sql_url, redis_url=redis_url)
    except Exception as exc:  # a bad URL or a missing driver: say which
        fail(f"cannot open the data's location ({str(exc)[:200]}): check --sql-url/--redis-url")
    try:
        yield dict(targets)
    finally:
        close()


def _confirm(dry_run: bool, yes: bool, what: str) -> None:
    if dry_run or yes:
        return
    if not sys.stdin.isatty():
        fail(f"{what} changes keys and policy: add --yes to run it (or --dry-run to see it first)")
    if not typer.confirm(f"{what}?"):
        fail("nothing was changed", code=1)


def _with_service(data_dir: Path, work: Callable[[Any], Any]) -> Any:
    from qrc.keys.errors import KeyServiceError  # noqa: PLC0415

    with key_service(data_dir) as service:
        try:
            return work(service)
        except KeyServiceError as exc:
            fail(str(exc))


@migrate_app.command("plan")
def plan(
    algorithm: Algorithm, data_dir: DataDirOpt = DEFAULT_DIR, as_json: JsonOpt = False
) -> None:
    """What leaving ALGORITHM involves: keys, certificates, objects, channels, work (dry run)."""
    from qrc.monitor.migration_plan import plan_algorithm_migration  # noqa: PLC0415

    found = _with_service(
        data_dir, lambda service: plan_algorithm_migration(service, algorithm, data_dir=data_dir)
    )
    _emit(found.as_dict(), as_json, _plan_lines(found))


@migrate_app.command("run")
def run(
    algorithm: Algorithm,
    data_dir: DataDirOpt = DEFAULT_DIR,
    dry_run: DryRun = False,
    yes: Yes = False,
    sql_url: SqlUrl = None,
    redis_url: RedisUrl = None,
    certificates_out: CertsOut = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Rotate at most N keys.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rotate keys, rewrap data, reissue leaf certificates, tighten TLS: off ALGORITHM."""
    from qrc.monitor.migration_run import run_algorithm_migration  # noqa: PLC0415

    _confirm(dry_run, yes, f"migrate everything off {algorithm}")
    with _targets(sql_url, redis_url) as targets, _progress(not as_json) as progress:
        done = _with_service(
            data_dir,
            lambda service: run_algorithm_migration(
                service, algorithm, actor=current_actor(), dry_run=dry_run, data_dir=data_dir,
                certificates_out=certificates_out, rewrap_targets=targets, limit=limit,
                progress=progress,
            ),
        )  # fmt: skip
    _emit(done.as_dict(), as_json, _run_lines(done))
    if not dry_run and not done.complete:
        raise typer.Exit(3)


@migrate_app.command("update")
def update(
    statuses: Annotated[
        list[str], typer.Argument(help="ALG=STATUS (active, experimental, deprecated, disallowed).")
    ],
    data_dir: DataDirOpt = DEFAULT_DIR,
    dry_run: DryRun = False,
    yes: Yes = False,
    sql_url: SqlUrl = None,
    redis_url: RedisUrl = None,
    certificates_out: CertsOut = None,
    as_json: JsonOpt = False,
) -> None:
    """Change algorithm statuses, then migrate off every one deprecated or disallowed."""
    from qrc.monitor.migration_run import update_qrc_algorithms_and_keys  # noqa: PLC0415

    wanted: dict[str, str] = {}
    for item in statuses:
        name, sep, status = item.partition("=")
        if not sep or not name or not status:
            fail(f"{item!r}: give ALG=STATUS, e.g. ML-KEM-768=deprecated")
        wanted[name] = status
    _confirm(dry_run, yes, f"change {', '.join(statuses)} and migrate")
    with _targets(sql_url, redis_url) as targets, _progress(not as_json) as progress:
        policy, runs = _with_service(
            data_dir,
            lambda service: update_qrc_algorithms_and_keys(
                service, wanted, actor=current_actor(), dry_run=dry_run, data_dir=data_dir,
                certificates_out=certificates_out, rewrap_targets=targets, progress=progress,
            ),
        )  # fmt: skip
    data = {
        "applied": not dry_run,
        "changes": policy.changes,
        "migrations": [r.as_dict() for r in runs],
    }
    lines = [("would change: " if dry_run else "changed: ") + "; ".join(policy.changes)]
    for done in runs:
        lines += _run_lines(done)
    _emit(data, as_json, lines)
    if not dry_run and not all(r.complete for r in runs):
        raise typer.Exit(3)
