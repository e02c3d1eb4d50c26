"""``qrc admin scheduler``: due rotations, expiries, destructions, audit checkpoints."""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    current_actor,
    jsonable,
    key_service,
    out,
    show_time,
)
from qrc.cli.io import say

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = ["scheduler"]


class _Stop(Exception):
    """SIGTERM: stop the scheduler loop like Ctrl-C does."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _scheduler_pass(service: KeyService, actor: str) -> dict[str, Any]:
    counts = service.run_jobs(actor=actor)
    counts["at"] = datetime.now(UTC)
    return counts


def _print_pass(counts: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(counts, default=jsonable) + "\n")
        sys.stdout.flush()
        return
    checkpoint = counts["checkpoint_seq"]
    note = "no new audit events" if checkpoint is None else f"checkpoint at seq {checkpoint}"
    out.print(
        f"{show_time(counts['at'])} rotated {counts['rotated']}, expired {counts['expired']}, "
        f"destroyed {counts['destroyed']}; {note}",
        highlight=False,
    )


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
    actor = current_actor()
    with key_service(data_dir) as service:
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
                    say(f"qrc: error: {exc} (next attempt in {interval:g} s)")
                time.sleep(interval)
        except (KeyboardInterrupt, _Stop):
            say("qrc: scheduler stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)
