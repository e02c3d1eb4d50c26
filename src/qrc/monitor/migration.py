"""Algorithm migration: when an algorithm is deprecated, move everything off it.

The public Python API (stable: the incident-response playbooks build on it):

- :func:`plan_migration` (here): the keys with live material under an algorithm and what
  each will move to, with the indexed objects under them. A dry run.
- :func:`execute_migration` (here): rotate those keys to a new version of their purpose's
  default algorithm; conditional, resumable, audited per key.
- :func:`qrc.monitor.migration_plan.plan_algorithm_migration`: the whole plan: keys,
  certificates (the private CA's and the listener's), encrypted objects by key, version
  and data type, TLS channels, and the work estimated from the measured benchmarks.
- :func:`qrc.monitor.migration_run.run_algorithm_migration`: execute the whole plan (or
  dry-run it): rotate keys, rewrap indexed data, reissue the private CA's leaf
  certificates, tighten the TLS policy; audited (``migration.start``/``migration.finish``
  and each step's own events), with progress, resumable after a crash.
- :func:`qrc.monitor.migration_run.update_qrc_algorithms_and_keys`: the story's function:
  change algorithm statuses (``KeyService.update_policy``) and migrate off every algorithm
  the change deprecates or disallows.

:func:`plan_migration` is the keys' part: the keys that still have a live version under the
algorithm (their primary, or older versions not yet retired), what each will move to (the
policy's default for its purpose), and the indexed objects (``service.data``) still
encrypted under such versions. :func:`execute_migration` rotates each key whose primary
version is still under the algorithm to a new version of the target algorithm. The
service's own keys (audit, CA) are never rotated here: they are listed as skipped, and the
certificates the CA keys sign appear in the whole plan.

Progress lives in the store itself, so a crash loses nothing: each key moves in a
transaction of its own, conditional on the primary version the plan saw (a key another
caller rotated meanwhile is re-planned, never rotated twice), and every move is audited as
``key.rotate`` with ``from_algorithm``/``to_algorithm``. Running the execution again after a
crash plans again and finds only the keys not yet moved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import get_info
from qrc.keys.context import SYSTEM_LABEL, is_reserved
from qrc.keys.errors import InvalidRequest, KeyServiceError
from qrc.keys.lifecycle.rotation import ROTATABLE
from qrc.keys.states import KeyState, Purpose
from qrc.keys.store.models import EncryptedDataIndex, Key, KeyVersion

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "MigrationPlan",
    "MigrationReport",
    "PlannedKey",
    "execute_migration",
    "plan_migration",
]


@dataclass(frozen=True)
class PlannedKey:
    """One key with live material under the algorithm being left."""

    key_id: str
    name: str
    purpose: str
    status: str
    primary_version: int
    primary_algorithm: str
    target: str | None  # None: the primary has already moved (only old versions remain)
    old_versions: list[int]  # live versions (>= min_decryption_version) under the algorithm
    objects: int  # indexed objects encrypted under those versions
    action: str

    @property
    def rotates(self) -> bool:
        """Whether executing the plan rotates this key."""
        return self.action == "rotate"


@dataclass(frozen=True)
class MigrationPlan:
    """What leaving ``algorithm`` involves (a dry run changes nothing)."""

    algorithm: str
    keys: list[PlannedKey]

    @property
    def objects(self) -> int:
        """Indexed objects still encrypted under the algorithm (to rewrap afterwards)."""
        return sum(key.objects for key in self.keys)

    @property
    def to_rotate(self) -> list[PlannedKey]:
        """The keys executing the plan rotates."""
        return [key for key in self.keys if key.rotates]


@dataclass
class MigrationReport:
    """What an execution did; ``remaining`` is empty once every rotatable key moved."""

    algorithm: str
    rotated: list[tuple[str, str, int]] = field(default_factory=list)  # name, target, version
    failed: list[tuple[str, str]] = field(default_factory=list)  # name, reason
    remaining: list[str] = field(default_factory=list)


def _canonical(algorithm: str) -> str:
    try:
        return get_info(algorithm).id
    except UnsupportedAlgorithm as exc:
        raise InvalidRequest(str(exc)) from None


def _action(key: Key, moved: bool, target: str | None) -> str:
    if is_reserved(key):
        role = key.labels.get(SYSTEM_LABEL, "system")
        return f"skip: reserved for the service ({role}); see the certificates in the plan"
    if moved:
        return "rewrap data under the old versions, then raise min_decryption_version"
    if key.destruction_due_at is not None:
        return "skip: pending destruction"
    if KeyState(key.status) not in ROTATABLE:
        return f"skip: a {key.status} key cannot be rotated"
    if target == key.algorithm:
        return f"skip: the default for {key.purpose} is {target} itself; set another default"
    return "rotate"


def plan_migration(service: KeyService, algorithm: str) -> MigrationPlan:
    """The dry run: every key with live material under ``algorithm``, and its objects."""
    algorithm = _canonical(algorithm)
    planned: list[PlannedKey] = []
    with service.db.read_session() as session:
        live = (
            select(Key, KeyVersion.version)
            .join(KeyVersion, KeyVersion.key_id == Key.id)
            .where(
                KeyVersion.algorithm == algorithm,
                KeyVersion.version >= Key.min_decryption_version,
                Key.status != KeyState.DESTROYED.value,
            )
            .order_by(Key.name, KeyVersion.version)
        )
        by_key: dict[str, tuple[Key, list[int]]] = {}
        for key, version in session.execute(live):
            by_key.setdefault(key.id, (key, []))[1].append(version)
        for key, versions in by_key.values():
            objects = session.scalar(
                select(func.count(EncryptedDataIndex.id)).where(
                    EncryptedDataIndex.key_id == key.id,
                    EncryptedDataIndex.key_version.in_(versions),
                )
            )
            moved = key.algorithm != algorithm
            target = None
            if not moved:
                target = service.policy.default_algorithm(session, Purpose(key.purpose))
            planned.append(
                PlannedKey(
                    key_id=key.id,
                    name=key.name,
                    purpose=key.purpose,
                    status=key.status,
                    primary_version=key.primary_version,
                    primary_algorithm=key.algorithm,
                    target=target,
                    old_versions=versions,
                    objects=int(objects or 0),
                    action=_action(key, moved, target),
                )
            )
    return MigrationPlan(algorithm, planned)


def execute_migration(
    service: KeyService,
    algorithm: str,
    *,
    actor: str,
    limit: int | None = None,
    progress: Callable[[PlannedKey, str], None] | None = None,
) -> MigrationReport:
    """Rotate each key whose primary is under ``algorithm`` to its purpose's default.

    ``limit`` moves at most that many keys (a batch; run again to go on). A key that cannot
    move (the default is the algorithm itself, a policy refusal, a concurrent rotation) is
    reported in ``failed`` and the others go on. ``progress`` hears each key's outcome.
    """
    plan = plan_migration(service, algorithm)
    report = MigrationReport(plan.algorithm)
    for planned in plan.to_rotate:
        if limit is not None and len(report.rotated) >= limit:
            report.remaining.append(planned.name)
            continue
        try:
            info = service.keys.rotate(
                planned.key_id,
                actor=actor,
                expected_version=planned.primary_version,
                algorithm=planned.target,
            )
        except KeyServiceError as exc:
            report.failed.append((planned.name, str(exc)))
            if progress is not None:
                progress(planned, f"failed: {exc}")
            continue
        report.rotated.append((planned.name, info.algorithm, info.version))
        if progress is not None:
            progress(planned, f"rotated to {info.algorithm} v{info.version}")
    return report
