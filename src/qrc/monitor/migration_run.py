"""Executing the plan for leaving an algorithm, and the story's ``update_qrc_algorithms_and_keys``.

:func:`run_algorithm_migration` plans (:mod:`qrc.monitor.migration_plan`), then, unless it
is a dry run, works through the plan in this order:

1. **keys**: each key whose primary version is under the algorithm is rotated to a new
   version of its purpose's default (:func:`qrc.monitor.migration.execute_migration`);
2. **data**: each key's indexed objects below its primary version are rewrapped
   (:func:`qrc.data.rewrap.rewrap_key`) where the caller gave targets (``sql:``/``redis:``)
   for their locations; the rest is left as pending work, with the command that does it;
3. **certificates**: each live leaf of the private CA under the algorithm is reissued in a
   family that avoids it; the new key and chain are written to ``certificates_out`` for
   the holder (mode 0600; private keys never go through the API), then the old leaf is
   revoked (``superseded``) and the CRLs republished;
4. **channels**: the stored TLS mode is tightened to ``pq-only`` when the algorithm is a
   classical group that ``hybrid-preferred`` still offers (``KeyService.update_policy``).

Every step is recorded where it happens (``key.rotate``, ``key.rewrap``/``data.rewrap``,
``ca.key_use``, ``policy.update``); the run adds ``migration.start`` and
``migration.finish`` audit events and, when it changed anything, an
``algorithm_migration`` security event. Nothing is kept in memory between steps: each
reads the state it changes, so a run killed at any point (``kill -9``) is finished by
running it again. A reissued leaf is the one step with two writes outside the store; its
marker file (``<old serial>.json`` beside the new files) is written before the old leaf
is revoked, so a rerun revokes without issuing twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import Status, get_info
from qrc.data.rewrap import RewrapTarget, rewrap_key
from qrc.data.sdk import DataEncryptor
from qrc.keys.audit.events import EventType, Severity
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import PolicyPlan, PolicyUpdate
from qrc.monitor.migration import PlannedKey, execute_migration, plan_migration
from qrc.monitor.migration_plan import (
    FullMigrationPlan,
    PlannedCertificate,
    plan_algorithm_migration,
)
from qrc.transit.authority import PrivateCA, ServiceCAKeys

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "MigrationRun",
    "Progress",
    "run_algorithm_migration",
    "update_qrc_algorithms_and_keys",
]

Progress = Callable[[str, int, int, str], None]
"""Called as ``progress(step, done, total, what)``; steps: keys, data, certificates, channels."""


@dataclass
class MigrationRun:
    """What one run did (or, in a dry run, would do)."""

    algorithm: str
    dry_run: bool
    plan: FullMigrationPlan
    rotated: list[dict[str, Any]] = field(default_factory=list)
    rewrapped: list[dict[str, Any]] = field(default_factory=list)
    reissued: list[dict[str, Any]] = field(default_factory=list)
    tightened: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # automatic work not done (yet)
    manual: list[str] = field(default_factory=list)  # what only an operator can do

    @property
    def complete(self) -> bool:
        """Whether all the automatic work is done (``manual`` may still list follow-ups)."""
        return not self.dry_run and not self.failed and not self.pending

    @property
    def changed(self) -> bool:
        return bool(self.rotated or self.rewrapped or self.reissued or self.tightened)

    def summary(self) -> dict[str, int]:
        return {
            "rotated": len(self.rotated),
            "rewrapped": sum(int(r.get("rewrapped", 0)) for r in self.rewrapped),
            "reissued": len(self.reissued),
            "tightened": len(self.tightened),
            "failed": len(self.failed),
            "pending": len(self.pending),
            "manual": len(self.manual),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "dry_run": self.dry_run,
            "complete": self.complete,
            "summary": self.summary(),
            "rotated": self.rotated,
            "rewrapped": self.rewrapped,
            "reissued": self.reissued,
            "tightened": self.tightened,
            "failed": self.failed,
            "pending": self.pending,
            "manual": self.manual,
            "plan": self.plan.as_dict(),
        }


def _tell(progress: Progress | None, step: str, done: int, total: int, what: str) -> None:
    if progress is not None:
        progress(step, done, total, what)


# --------------------------------------------------------------------------- dry run
def _would(plan: FullMigrationPlan, run: MigrationRun, targets: bool, out: bool) -> None:
    for key in plan.keys.to_rotate:
        run.pending.append(f"rotate key {key.name} to {key.target}")
    for group in plan.objects:
        how = "rewrap" if targets else "rewrap (give the data's location targets)"
        run.pending.append(
            f"{how} {group.objects} {group.data_type or 'untyped'} object(s) of key "
            f"{group.key_name} v{group.key_version}"
        )
    for key in plan.keys.keys:
        if not key.rotates and key.target is not None:
            run.manual.append(f"key {key.name}: {key.action}")
    for cert in plan.certificates:
        if cert.automatic:
            how = "reissue" if out else "reissue (give a directory for the new keys)"
            run.pending.append(
                f"{how} leaf {cert.serial} ({cert.subject}) in {cert.replacement_family}"
            )
        else:
            run.manual.append(f"{cert.role} certificate {cert.subject}: {cert.action}")
    for channel in plan.channels:
        (run.pending if channel.automatic else run.manual).append(
            f"{channel.name}: {channel.action}"
        )


# --------------------------------------------------------------------------- steps
def _rotate_keys(
    service: KeyService, run: MigrationRun, actor: str, limit: int | None, progress: Progress | None
) -> None:
    total = len(run.plan.keys.to_rotate)
    done = 0

    def heard(key: PlannedKey, what: str) -> None:
        nonlocal done
        done += 1
        _tell(progress, "keys", done, total, f"{key.name}: {what}")

    _tell(progress, "keys", 0, total, "rotating keys")
    for key in run.plan.keys.keys:
        if not key.rotates and key.target is not None:
            run.manual.append(f"key {key.name}: {key.action}")
    report = execute_migration(service, run.algorithm, actor=actor, limit=limit, progress=heard)
    run.rotated += [{"key": n, "algorithm": a, "version": v} for n, a, v in report.rotated]
    run.failed += [{"step": "keys", "item": n, "reason": r} for n, r in report.failed]
    run.pending += [f"rotate key {name} (batch limit reached)" for name in report.remaining]


def _rewrap_data(
    service: KeyService,
    run: MigrationRun,
    actor: str,
    targets: Mapping[str, RewrapTarget] | None,
    progress: Progress | None,
) -> None:
    # Planned again: the keys just rotated now have their objects under older versions.
    keys = [k for k in plan_migration(service, run.algorithm).keys if k.objects]
    keys = [k for k in keys if k.primary_algorithm != run.algorithm]
    for index, key in enumerate(keys):
        if not targets:
            run.pending.append(
                f"rewrap {key.objects} object(s) of key {key.name}: "
                f"qrc data rewrap {key.name} --sql-url URL / --redis-url URL"
            )
            continue
        _tell(progress, "data", index, len(keys), f"rewrapping {key.name}")
        with DataEncryptor.local(service, actor=actor) as sdk:
            report = rewrap_key(sdk, key.key_id, targets)
        run.rewrapped.append({"key": key.name, **report.as_dict()})
        left = plan_migration(service, run.algorithm)
        remaining = sum(k.objects for k in left.keys if k.key_id == key.key_id)
        if remaining:
            run.pending.append(
                f"{remaining} object(s) of key {key.name} are still under the algorithm "
                f"(missing {report.missing}, unreadable {report.unreadable}, no target "
                f"{sum(report.no_target.values())}, changed meanwhile {report.changed_meanwhile})"
            )
    _tell(progress, "data", len(keys), len(keys), "data rewrapped")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) whole or not at all (a temporary file, then a rename)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _reissue_one(ca: PrivateCA, cert: PlannedCertificate, out: Path) -> dict[str, Any]:
    marker = out / f"{cert.serial}.json"
    if marker.is_file():  # an earlier run issued and delivered the replacement
        done: dict[str, Any] = json.loads(marker.read_text("utf-8"))
    else:
        old = ca.find(cert.serial)
        family = cert.replacement_family
        chain, key_pem, record = ca.issue(
            old.subject,
            family=family,  # type: ignore[arg-type]
            kind=old.kind,  # type: ignore[arg-type]
            names=old.names,
            identity=old.identity,
        )
        stem = out / record.serial
        _write_private(stem.with_suffix(".key"), key_pem)
        _write_private(stem.with_suffix(".pem"), chain)
        done = {
            "old_serial": cert.serial,
            "new_serial": record.serial,
            "family": record.family,
            "subject": record.subject,
            "certificate": str(stem.with_suffix(".pem")),
            "key": str(stem.with_suffix(".key")),
        }
        _write_private(marker, json.dumps(done).encode())
    ca.revoke(cert.serial, "superseded")
    return done


def _reissue_certificates(
    service: KeyService,
    run: MigrationRun,
    actor: str,
    data_dir: Path | None,
    out: Path | None,
    progress: Progress | None,
) -> None:
    automatic = [c for c in run.plan.certificates if c.automatic]
    for cert in run.plan.certificates:
        if not cert.automatic:
            run.manual.append(f"{cert.role} certificate {cert.subject}: {cert.action}")
    if not automatic:
        return
    if data_dir is None or out is None:
        run.pending += [
            f"reissue leaf {c.serial} ({c.subject}) in {c.replacement_family}: "
            "qrc migrate run --certificates-out DIR"
            for c in automatic
        ]
        return
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = PrivateCA(data_dir / "ca", ServiceCAKeys(service.keys, actor))
    for index, cert in enumerate(automatic):
        _tell(progress, "certificates", index, len(automatic), f"reissuing {cert.subject}")
        try:
            run.reissued.append(_reissue_one(ca, cert, out))
        except (KeyError, ValueError, OSError) as exc:
            run.failed.append({"step": "certificates", "item": cert.serial, "reason": str(exc)})
    _tell(progress, "certificates", len(automatic), len(automatic), "certificates reissued")


def _tighten_channels(
    service: KeyService, run: MigrationRun, actor: str, progress: Progress | None
) -> None:
    for channel in run.plan.channels:
        if not channel.automatic:
            run.manual.append(f"{channel.name}: {channel.action}")
            continue
        _tell(progress, "channels", 0, 1, f"{channel.setting} -> {channel.proposed}")
        service.update_policy(PolicyUpdate(tls_mode=channel.proposed), actor=actor)
        run.tightened.append(f"{channel.setting}: {channel.current} -> {channel.proposed}")
        _tell(progress, "channels", 1, 1, f"{channel.setting} is {channel.proposed}")


def _record(service: KeyService, event: str, actor: str, details: dict[str, Any]) -> None:
    with service.db.session() as session:
        service.ctx.record(session, event, actor, details=details)


# --------------------------------------------------------------------------- the run
def run_algorithm_migration(
    service: KeyService,
    algorithm: str,
    *,
    actor: str,
    dry_run: bool = False,
    data_dir: Path | None = None,
    certificates_out: Path | None = None,
    rewrap_targets: Mapping[str, RewrapTarget] | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> MigrationRun:
    """Move keys, indexed data, certificates and TLS policy off ``algorithm`` (module doc).

    ``dry_run`` plans and says what would happen (``pending``), changing nothing.
    ``data_dir`` is the service's data directory (certificates: ``ca/``, ``tls/``);
    ``certificates_out`` where reissued leaves are written for their holders;
    ``rewrap_targets`` the places indexed objects live (``qrc.data.rewrap.open_targets``);
    ``limit`` rotates at most that many keys (a batch); ``progress`` hears each step.

    Raises:
        KeyServiceError: ``algorithm`` is not a registry ID.
    """
    plan = plan_algorithm_migration(service, algorithm, data_dir=data_dir)
    run = MigrationRun(plan.algorithm, dry_run, plan)
    if dry_run:
        _would(plan, run, bool(rewrap_targets), certificates_out is not None)
        return run
    start: dict[str, Any] = {"algorithm": plan.algorithm, "status": plan.status, **plan.counts}
    start["estimate_ms"] = round(plan.estimate.seconds * 1000)
    _record(service, "migration.start", actor, start)
    _rotate_keys(service, run, actor, limit, progress)
    _rewrap_data(service, run, actor, rewrap_targets, progress)
    _reissue_certificates(service, run, actor, data_dir, certificates_out, progress)
    _tighten_channels(service, run, actor, progress)
    summary = {"algorithm": plan.algorithm, "complete": run.complete, **run.summary()}
    with service.db.session() as session:
        service.ctx.record(session, "migration.finish", actor, details=summary)
        if run.changed:
            service.ctx.security_event(
                session,
                EventType.ALGORITHM_MIGRATION,
                Severity.MEDIUM,
                "qrc.monitor.migration",
                algorithm=plan.algorithm,
                description=f"migration off {plan.algorithm} ({plan.status})",
                action_taken=", ".join(f"{k} {v}" for k, v in run.summary().items()),
                details=summary,
            )
    return run


def update_qrc_algorithms_and_keys(
    service: KeyService,
    statuses: Mapping[str, str],
    *,
    actor: str,
    dry_run: bool = False,
    data_dir: Path | None = None,
    certificates_out: Path | None = None,
    rewrap_targets: Mapping[str, RewrapTarget] | None = None,
    progress: Progress | None = None,
) -> tuple[PolicyPlan, list[MigrationRun]]:
    """The story's ``update_qrc_algorithms_and_keys``: new statuses, then the migrations.

    ``statuses`` maps algorithm IDs to ``active``, ``experimental``, ``deprecated`` or
    ``disallowed``. Every algorithm made deprecated or disallowed is migrated off
    (:func:`run_algorithm_migration`). A disallowed algorithm no longer decrypts, so its data
    could not be rewrapped: such an algorithm is first deprecated, migrated, and disallowed
    only once its run is complete; otherwise it stays deprecated and its run's ``pending``
    says what is left. ``dry_run`` changes nothing and returns the plans.
    """
    wanted: dict[str, Status] = {}
    for name, status in statuses.items():
        try:
            wanted[get_info(name).id] = Status(status)
        except (UnsupportedAlgorithm, ValueError) as exc:
            raise InvalidRequest(f"algorithm_status: {exc}") from None
    first = {
        a: (Status.DEPRECATED if s is Status.DISALLOWED else s).value for a, s in wanted.items()
    }
    plan = service.update_policy(PolicyUpdate(algorithm_status=first), actor=actor, dry_run=dry_run)
    runs: list[MigrationRun] = []
    for algorithm, status in wanted.items():
        if status not in (Status.DEPRECATED, Status.DISALLOWED):
            continue
        run = run_algorithm_migration(
            service, algorithm, actor=actor, dry_run=dry_run, data_dir=data_dir,
            certificates_out=certificates_out, rewrap_targets=rewrap_targets, progress=progress,
        )  # fmt: skip
        runs.append(run)
        if status is Status.DISALLOWED and not dry_run:
            if run.complete:
                plan = service.update_policy(
                    PolicyUpdate(algorithm_status={algorithm: Status.DISALLOWED.value}),
                    actor=actor,
                )
            else:
                run.manual.append(
                    f"{algorithm} stays deprecated until the pending work is done; then disallow it"
                )
    return plan, runs
