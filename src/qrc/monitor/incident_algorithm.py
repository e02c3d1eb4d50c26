"""The algorithm-break playbook (``qrc incident algorithm-break ALG``).

Steps, in order (each skips what is already done, so a second run finishes the first):

1. ``restrict`` — the policy marks the algorithm ``deprecated`` (no new key may use it) and,
   where it is a purpose's default, makes ``replacement`` the default
   (:meth:`KeyService.update_policy`, what ``POST /protocols/update`` calls).
2. ``rotate`` — every key whose primary version is under the algorithm gets a new version of
   its purpose's default (:func:`qrc.monitor.migration.execute_migration`).
3. ``rewrap`` — the indexed objects under those keys move to the new primary versions
   (:func:`qrc.data.rewrap.rewrap_key`, for locations a target reaches).
4. ``disallow`` — once nothing indexed is left under the algorithm, the policy disallows it:
   no operation at all, old versions included. Not before: disallowing first would make the
   data still under it unreadable. ``force`` disallows at once, whatever is left.
5. ``tls`` — a broken classical key exchange (X25519, P-256...) sets the TLS mode to
   ``pq-only``.

Deprecating comes first rather than disallowing because data under the algorithm must still
be readable to be moved; from that moment no new key or version uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from qrc.crypto.registry import Family, Kind, Status, get_info
from qrc.data.rewrap import RewrapTarget, rewrap_key
from qrc.data.sdk import DataEncryptor
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import PolicyUpdate
from qrc.monitor.incident import IncidentReport, Notifier, PlaybookRun, Progress
from qrc.monitor.migration import execute_migration, plan_migration

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

    def _defaults_to_move(self) -> dict[str, str]:
        defaults = self.service.current_policy()["default_algorithms"]
        moving = [purpose for purpose, alg in defaults.items() if alg == self.algorithm]
        if moving and self.replacement is None:
            raise InvalidRequest(
                f"{self.algorithm} is the default for {', '.join(moving)}: give the algorithm "
                "to move to (--to ALGORITHM)"
            )
        return {purpose: str(self.replacement) for purpose in moving}

    # ------------------------------------------------------------------ plan
    def plan(self) -> None:
        defaults = self._defaults_to_move()
        status = self.service.policy.status(self.algorithm)
        restrict = self.add("restrict", f"policy: {self.algorithm} deprecated (no new keys)")
        restrict.detail.update(status=status.value, new_defaults=defaults)
        plan = plan_migration(self.service, self.algorithm)
        rotate = self.add(
            "rotate",
            f"rotate {len(plan.to_rotate)} keys to their purpose's default algorithm",
        )
        rotate.detail["keys"] = [
            {"name": k.name, "to": k.target or defaults.get(k.purpose), "action": k.action}
            for k in plan.keys
        ]
        self.add("rewrap", f"rewrap {plan.objects} indexed objects under the algorithm")
        self.add("disallow", f"policy: {self.algorithm} disallowed once no data is left under it")
        info = get_info(self.algorithm)
        if info.kind is Kind.KEM and info.family is Family.CLASSICAL:
            self.add("tls", "TLS mode pq-only: no classical-only key exchange")
        self.report.human_actions.insert(
            0,
            f"Reissue certificates whose signatures use {self.algorithm} (qrc inventory lists "
            "them) and tell the peers that pin them.",
        )

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        self._restrict()
        self._rotate()
        self._rewrap()
        self._disallow()
        if any(s.name == "tls" for s in self.report.steps):
            self._tls()

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
        self.finish_step(step, "done", new_defaults=defaults)

    def _rotate(self) -> None:
        step = self.report.step("rotate")
        report = execute_migration(
            self.service,
            self.algorithm,
            actor=self.actor,
            progress=lambda key, outcome: self.say(f"rotate {key.name}: {outcome}"),
        )
        status = "failed" if report.failed or report.remaining else "done"
        if status == "done" and not report.rotated:
            status = "already done"
        self.finish_step(
            step,
            status,
            rotated=[f"{n} -> {a} v{v}" for n, a, v in report.rotated],
            failed=[f"{n}: {why}" for n, why in report.failed],
        )

    def _rewrap(self) -> None:
        step = self.report.step("rewrap")
        plan = plan_migration(self.service, self.algorithm)
        keys = [k for k in plan.keys if k.objects]
        if not keys:
            self.finish_step(step, "already done", objects=0)
            return
        rewrapped = 0
        left: dict[str, int] = {}
        with DataEncryptor.local(self.service, actor=self.actor) as sdk:
            for planned in keys:
                name = planned.name

                def progress(done: int, total: int, name: str = name) -> None:
                    self.say(f"rewrap {name}: {done}/{total}")

                report = rewrap_key(sdk, planned.key_id, self.targets, progress=progress)
                rewrapped += report.rewrapped + report.already_current
                for scheme, n in report.no_target.items():
                    left[scheme] = left.get(scheme, 0) + n
        remaining = plan_migration(self.service, self.algorithm).objects
        self.finish_step(
            step,
            "done" if not remaining else "failed",
            rewrapped=rewrapped,
            remaining=remaining,
            no_target=left,
        )

    def _disallow(self) -> None:
        step = self.report.step("disallow")
        if self.service.policy.status(self.algorithm) is Status.DISALLOWED:
            self.finish_step(step, "already done")
            return
        plan = plan_migration(self.service, self.algorithm)
        if (plan.objects or plan.to_rotate) and not self.force:
            self.finish_step(
                step,
                "failed",
                reason="data or keys are still under the algorithm: disallowing now would "
                "make them unreadable; move them (targets for their locations) and run again, "
                "or --force",
                objects=plan.objects,
                keys=[k.name for k in plan.to_rotate],
            )
            return
        self._update(PolicyUpdate(algorithm_status={self.algorithm: "disallowed"}))
        self.finish_step(step, "done", objects_left=plan.objects)

    def _tls(self) -> None:
        step = self.report.step("tls")
        if self.service.current_policy()["tls_mode"] == "pq-only":
            self.finish_step(step, "already done")
            return
        self._update(PolicyUpdate(tls_mode="pq-only"))
        self.finish_step(step, "done")


def algorithm_break(
    service: KeyService,
    algorithm: str,
    *,
    actor: str,
    execute: bool = False,
    replacement: str | None = None,
    force: bool = False,
    targets: Mapping[str, RewrapTarget] | None = None,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
) -> IncidentReport:
    """Plan (``execute=False``) or run the algorithm-break playbook for ``algorithm``.

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
