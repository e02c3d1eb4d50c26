"""``qrc serve --workers N``: N server processes on one port, one core each.

The supervisor prepares what must be made once (the data directory, the bootstrap admin
token, the private CA and server certificate, a first checkpoint), then starts N workers,
each a whole ``qrc serve`` listening with ``SO_REUSEPORT`` on the same address: the kernel
spreads connections over them. Workers share the store as separate nodes do: the scheduler's
row locks and the audit lock make each job and checkpoint happen once. SIGTERM or SIGINT to
the supervisor drains every worker; if one worker dies, the others are stopped and the
supervisor exits with its status (a process manager restarts the whole).
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 - starts our own workers (sys.executable -m qrc)
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import FrameType

from qrc.keys.factory import open_service
from qrc.server.bootstrap import bootstrap_admin_token
from qrc.server.config import Settings
from qrc.transit.ca import default_server_names
from qrc.transit.pki import ensure_listener_tls

__all__ = ["prepare", "supervise", "worker_argv", "worker_count"]

_POLL_SECONDS = 0.2


def worker_count(value: str) -> int:
    """``auto`` (the number of cores) or a positive number.

    Raises:
        ValueError: anything else.
    """
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    count = int(value)
    if not 1 <= count <= 64:
        raise ValueError("--workers is 1 to 64, or auto")
    return count


def prepare(settings: Settings, *, host: str, plain: bool) -> None:
    """What the workers must find made: bootstrap token, CA and certificate, a checkpoint."""
    settings.check_production()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    service = open_service(settings.service_config())
    try:
        bootstrap_admin_token(service, settings.data_dir)
        service.audit.checkpoint(actor="serve")
    finally:
        service.close()
    if not plain:
        passphrase = settings.ca_passphrase
        validity = timedelta(days=settings.tls_cert_days)
        ensure_listener_tls(
            settings.data_dir,
            default_server_names(host),
            certificates=settings.tls_certificates,
            ca_passphrase=passphrase.get_secret_value().encode() if passphrase else None,
            validity=validity,
            renew_before=validity / 3,
        )


def supervise(worker_command: Sequence[str], count: int, say: Callable[[str], None]) -> int:
    """Run ``count`` workers until a signal (or one of them dies); their worst exit status."""
    workers = [subprocess.Popen(list(worker_command)) for _ in range(count)]  # noqa: S603  # nosec B603
    say(f"qrc: {count} workers started (pids {', '.join(str(w.pid) for w in workers)})")
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(worker.poll() is None for worker in workers):
            if not stopping and any(worker.poll() is not None for worker in workers):
                say("qrc: a worker exited; stopping the others")
                stop(signal.SIGTERM, None)
            time.sleep(_POLL_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [worker.returncode for worker in workers]
    return max((abs(code) for code in codes), default=0)


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: this one, with ``--workers`` replaced."""
    out: list[str] = [sys.executable, "-m", "qrc"]
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [*out, "--reuse-port"]
