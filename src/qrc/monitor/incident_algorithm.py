"""The algorithm-break playbook (``qrc incident algorithm-break ALG``).

Steps, in order (each skips what is already done, so a second run finishes the first):

1. ``restrict`` — the policy marks the algorithm ``deprecated`` (no new key may use it) and,
   where it is a purpose's default, makes ``replacement`` the default
   (:meth:`KeyService.update_policy`, what ``POST /protocols/update`` calls).
2. ``migrate`` — the migration off the algorithm
   (:func:`qrc.monitor.migration_run.run_algorithm_migration`): keys rotated to a new
   version of their purpose's default, indexed data rewrapped where a target reaches its
   location, the private CA's leaf certificates reissued (written to ``certificates_out``
   for their holders), the TLS mode tightened when a classical group is broken.
3. ``disallow`` — once the migration is complete, the policy disallows the algorithm: no
   operation at all, old versions included. Not before: disallowing first would make the
   data still under it unreadable. ``force`` disallows at once, whatever is left.

Deprecating comes first rather than disallowing because data under the algorithm must still
be readable to be moved; from that moment no new key or version uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from qrc.crypto.registry import Status, get_info
from qrc.data.rewrap import RewrapTarget
from qrc.keys.audit.events import EventType
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import PolicyUpdate
from qrc.monitor.incident import IncidentReport, Notifier, PlaybookRun, Progress
from qrc.monitor.migration_run import MigrationRun, run_algorithm_migration

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = ["algorithm_break"]


class _AlgorithmBreak(PlaybookRun):
    playbook = "algorithm_break"

    def __init__(
        self,
        service: KeyService,
        algorithm: str,
        *,
        replacement: str | None,
        targets: Mapping[str, RewrapTarget],
        force: bool,
        data_dir: Path | None,
        certificates_out: Path | None,
        actor: str,
        execute: bool,
        notifier: Notifier | None,
        progress: Progress | None,
    ) -> None:
        super().__init__(
            service, algorithm, actor=actor, execute=execute, notifier=notifier, progress=progress
        )
        self.algorithm = algorithm
        self.replacement = replacement
        self.targets = targets
        self.force = force
        self.data_dir = data_dir
        self.certificates_out = certificates_out

    def _defaults_to_move(self) -> dict[str, str]:
        defaults = self.service.current_policy()["default_algorithms"]
        moving = [purpose for purpose, alg in defaults.items() if alg == self.algorithm]
        if moving and self.replacement is None:
            raise InvalidRequest(
                f"{self.algorithm} is the default for {', '.join(moving)}: give the algorithm "
                "to move to (--to ALGORITHM)"
            )
        return {purpose: str(self.replacement) for purpose in moving}

    def _migration(self, *, dry_run: bool) -> MigrationRun:
        def progress(step: str, done: int, total: int, what: str) -> None:
            self.say(f"migrate {step} {done}/{total}: {what}")

        return run_algorithm_migration(
            self.service,
            self.algorithm,
            actor=self.actor,
            dry_run=dry_run,
            data_dir=self.data_dir,
            certificates_out=self.certificates_out,
            rewrap_targets=self.targets,
            progress=None if dry_run else progress,
        )

    # ------------------------------------------------------------------ plan
    def plan(self) -> None:
        defaults = self._defaults_to_move()
        status = self.service.policy.status(self.algorithm)
        restrict = self.add("restrict", f"policy: {self.algorithm} deprecated (no new keys)")
        restrict.detail.update(policy_status=status.value, new_defaults=defaults)
        would = self._migration(dry_run=True)
        migrate = self.add(
            "migrate",
            "rotate keys, rewrap indexed data, reissue certificates, tighten TLS "
            f"({', '.join(f'{k} {v}' for k, v in would.plan.counts.items())})",
        )
        migrate.detail["keys"] = [
            {"name": k.name, "to": k.target or defaults.get(k.purpose), "action": k.action}
            for k in would.plan.keys.keys
        ]
        migrate.detail["pending"] = would.pending
        self.add("disallow", f"policy: {self.algorithm} disallowed once the migration is done")
        self.report.human_actions[:0] = would.manual

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        self._restrict()
        migration = self._migrate()
        self._disallow(migration)

    def _update(self, update: PolicyUpdate) -> None:
        self.service.update_policy(update, actor=self.actor)

    def _restrict(self) -> None:
        step = self.report.step("restrict")
        defaults = self._defaults_to_move()
        status = self.service.policy.status(self.algorithm)
        if status in (Status.DEPRECATED, Status.DISALLOWED) and not defaults:
            self.finish_step(step, "already done", policy_status=status.value)
            return
        statuses = {} if status is Status.DISALLOWED else {self.algorithm: "deprecated"}
        self._update(PolicyUpdate(default_algorithms=defaults, algorithm_status=statuses))
        self.security_event(
            EventType.ALGORITHM_MIGRATION,
            algorithm=self.algorithm,
            description=f"{self.algorithm} declared broken (qrc incident algorithm-break)",
            action_taken="deprecated at once; migration off it started; disallowed once done",
        )
        self.finish_step(step, "done", new_defaults=defaults)

    def _migrate(self) -> MigrationRun:
        step = self.report.step("migrate")
        migration = self._migration(dry_run=False)
        self.report.human_actions[:0] = [m for m in migration.manual if m]
        summary = migration.summary()
        changed = migration.changed
        outcome = "done" if changed else "already done"
        if not migration.complete:
            outcome = "failed"
        self.finish_step(
            step, outcome, **summary, pending_work=migration.pending, failures=migration.failed
        )
        return migration

    def _disallow(self, migration: MigrationRun) -> None:
        step = self.report.step("disallow")
        if self.service.policy.status(self.algorithm) is Status.DISALLOWED:
            self.finish_step(step, "already done")
            return
        if not migration.complete and not self.force:
            self.finish_step(
                step,
                "failed",
                reason="the migration is not complete: disallowing now would make what is "
                "left unreadable; finish it (targets for the data's locations) and run "
                "again, or --force",
            )
            return
        self._update(PolicyUpdate(algorithm_status={self.algorithm: "disallowed"}))
        self.finish_step(step, "done", forced=not migration.complete)


def algorithm_break(
    service: KeyService,
    algorithm: str,
    *,
    actor: str,
    execute: bool = False,
    replacement: str | None = None,
    force: bool = False,
    targets: Mapping[str, RewrapTarget] | None = None,
    data_dir: Path | None = None,
    certificates_out: Path | None = None,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
) -> IncidentReport:
    """Plan (``execute=False``) or run the algorithm-break playbook for ``algorithm``.

    ``data_dir`` (the service's: ``ca/``, ``tls/``) and ``certificates_out`` (where reissued
    leaves go) are passed to the migration; ``targets`` reach the indexed data.

    Raises:
        UnsupportedAlgorithm: not a registry ID.
        InvalidRequest: the algorithm is a purpose's default and no ``replacement`` is given.
    """
    algorithm = get_info(algorithm).id
    if replacement is not None:
        replacement = get_info(replacement).id
    run = _AlgorithmBreak(
        service,
        algorithm,
        replacement=replacement,
        targets=targets or {},
        force=force,
        data_dir=data_dir,
        certificates_out=certificates_out,
        actor=actor,
        execute=execute,
        notifier=notifier,
        progress=progress,
    )
    run.plan()
    if not execute:
        return run.end()
    run.begin()
    try:
        run.run()
    finally:
        run.end()
    return run.report
