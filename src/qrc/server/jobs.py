"""Background jobs of a server: the scheduler thread and the first-start benchmarks.

Every pass runs the due key jobs and signs a checkpoint only when the audit chain moved
(:meth:`KeyService.run_jobs`); several nodes may run it at once (row locks decide).
"""

from __future__ import annotations

import logging
import threading
import time

from qrc.crypto.benchmark import QUICK_SET, bench_algorithm
from qrc.keys.service import KeyService
from qrc.keys.store.db import utcnow

__all__ = ["Checkpointer", "Scheduler", "measure_benchmarks"]

logger = logging.getLogger(__name__)
_ACTOR = "scheduler"
_CHECKPOINT_ACTOR = "checkpointer"


class Scheduler:
    """A daemon thread that runs :meth:`KeyService.run_jobs` every ``interval`` seconds."""

    def __init__(self, service: KeyService, interval: float) -> None:
        self.service = service
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="qrc-scheduler")

    def start(self) -> None:
        """Start the passes (the first after one interval)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass under way, if any."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                ran = self.service.run_jobs(actor=_ACTOR)
            except Exception:
                logger.exception("scheduler pass failed; retrying next interval")
                continue
            if any(ran.values()):
                logger.info("scheduler: %s", ran)


class Checkpointer:
    """A daemon thread that keeps the unsigned tail of the audit chain short.

    It checkpoints (and so publishes to the witness) once ``every_events`` new events have
    been appended, or ``every_seconds`` after the first unsigned one, whichever comes first:
    the window in which an attacker with write access to the database could cut the tail
    unnoticed is seconds. It looks once a second (a count, no signature) while idle.
    """

    def __init__(self, service: KeyService, every_seconds: float, every_events: int) -> None:
        self.service = service
        self.every_seconds = every_seconds
        self.every_events = every_events
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="qrc-checkpoints")

    def start(self) -> None:
        """Start watching the chain."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the check under way."""
        self._stop.set()

    def _loop(self) -> None:
        poll = min(1.0, self.every_seconds)
        unsigned_since: float | None = None
        while not self._stop.wait(poll):
            try:
                moved = self.service.audit.moved()
                if not moved:
                    unsigned_since = None
                    continue
                now = time.monotonic()
                unsigned_since = unsigned_since or now
                if moved >= self.every_events or now - unsigned_since >= self.every_seconds:
                    self.service.audit.checkpoint_if_moved(actor=_CHECKPOINT_ACTOR)
                    unsigned_since = None
            except Exception:
                logger.exception("audit checkpoint failed; retrying")


def measure_benchmarks(service: KeyService) -> None:
    """Measure the quick set once, so /algorithms/status has numbers (first start only)."""
    if service.benchmarks():
        return
    results = {}
    for algorithm in QUICK_SET:
        try:
            result = bench_algorithm(algorithm, budget=0.05)
        except Exception as exc:  # a benchmark is best effort
            logger.warning("benchmark of %s failed: %s", algorithm, exc)
            continue
        results[algorithm] = {
            "ops_per_second": {k: round(v, 1) for k, v in result.ops.items()},
            "measured_at": utcnow().isoformat(),
        }
    service.store_benchmarks(results, actor="serve")
