"""``qrc admin status``: store, custody health, KEKs, keys, audit and pending jobs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    handled,
    out,
    print_json,
    show_time,
)
from qrc.cli.io import say

if TYPE_CHECKING:
    pass

__all__ = ["status"]


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
    from qrc.keys.status import read_status  # noqa: PLC0415
    from qrc.server.config import load_settings  # noqa: PLC0415

    with handled():
        report = read_status(load_settings(data_dir=data_dir).service_config())
    report["data_dir"] = str(data_dir.resolve())
    if as_json:
        print_json(report)
    else:
        _print_status(report, data_dir)
    if report["custody"]["state"] == "offline":
        raise typer.Exit(1)
