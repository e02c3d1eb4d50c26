"""``qrc serve``: the key service over PQ TLS (or plain HTTP on loopback behind a terminator).

On a new data directory it initialises everything the embedded default needs: the SQLite
store, the local sealed root KEK, a private ML-DSA-65 CA and server certificate
(``DIR/tls/ca.pem`` is what clients trust), and a bootstrap admin token in
``DIR/admin.token`` (mode 0600). Then it runs the power-on self-tests, starts the scheduler
(due rotations and destructions, audit checkpoints) and serves until SIGTERM/SIGINT. The
work is :func:`qrc.server.runner.run`'s; this is its command line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from qrc.cli.io import fail, say

__all__ = ["serve"]


def serve(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data directory [default: QRC_DATA_DIR, else .qrc]."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8443,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain HTTP on loopback, for a TLS terminator.")
    ] = False,
    tls_mode: Annotated[
        str | None,
        typer.Option(help="pq-only or hybrid-preferred (default: the stored policy, pq-only)."),
    ] = None,
    scheduler_interval: Annotated[
        float, typer.Option(help="Seconds between scheduler passes.")
    ] = 60.0,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Development: allow the root KEK sealed under a generated master.key.",
        ),
    ] = False,
    workers: Annotated[
        str,
        typer.Option(
            "--workers",
            help="Server processes on the port: a number, or auto (one per core).",
        ),
    ] = "1",
    reuse_port: Annotated[bool, typer.Option("--reuse-port", hidden=True)] = False,
) -> None:
    """Run the key service (HTTPS with X25519MLKEM768 and an ML-DSA certificate by default)."""
    # The service's dependencies load here, not when any `qrc` command starts.
    from qrc.server.config import ConfigurationError, load_settings  # noqa: PLC0415
    from qrc.server.runner import ServeOptions, run  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if tls_mode not in (None, "pq-only", "hybrid-preferred"):
        raise typer.BadParameter("--tls-mode must be pq-only or hybrid-preferred")
    from qrc.server.workers import prepare, supervise, worker_argv, worker_count  # noqa: PLC0415

    try:
        count = worker_count(workers)
    except ValueError:
        raise typer.BadParameter("--workers is a number from 1 to 64, or auto") from None
    if count > 1 and port == 0:
        raise typer.BadParameter("--workers needs a fixed --port (the workers share it)")
    try:
        settings = load_settings(data_dir=data_dir, dev=dev or None)
        if count > 1:
            prepare(settings, host=host, plain=plain)
            raise typer.Exit(supervise(worker_argv(sys.argv[1:]), count, say))
        options = ServeOptions(host, port, plain, tls_mode, scheduler_interval, reuse_port)
        run(settings, options, say)
    except ConfigurationError as exc:
        fail(str(exc))
