"""Migration off an algorithm: the plan (admins and auditors read it) and the run (admins).

Each route is one call into :mod:`qrc.monitor.migration_plan` or
:mod:`qrc.monitor.migration_run`. Over the API a run rotates keys and tightens the TLS
policy; rewrapping application data needs the application's database and reissued leaf
keys must reach their holders, so those steps come back as ``pending`` with the
``qrc migrate run`` options that do them (private keys never travel through the API).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictBool, StrictInt

from qrc.api.deps import require, state_of
from qrc.api.schemas import Strict
from qrc.keys.access.tokens import Client, Role
from qrc.monitor.migration_plan import FullMigrationPlan, plan_algorithm_migration
from qrc.monitor.migration_run import run_algorithm_migration

__all__ = ["plan_links", "router"]

router = APIRouter()
Admin = Annotated[Client, require()]
Auditor = Annotated[Client, require(Role.AUDITOR)]
AlgorithmId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class PlannedKeyOut(BaseModel):
    key_id: str
    name: str
    purpose: str
    status: str
    primary_version: int
    primary_algorithm: str
    target: str | None
    old_versions: list[int]
    objects: int
    action: str
    rotates: bool


class ObjectGroupOut(BaseModel):
    key_id: str
    key_name: str
    key_version: int
    data_type: str | None
    objects: int


class PlannedCertificateOut(BaseModel):
    source: str
    role: str
    family: str | None
    subject: str
    serial: str
    key_algorithm: str | None
    signature_algorithm: str | None
    not_after: datetime | None
    action: str
    automatic: bool
    replacement_family: str | None = None


class PlannedChannelOut(BaseModel):
    name: str
    setting: str
    current: str
    proposed: str | None
    action: str
    automatic: bool
    recent_classical_handshakes: int


class WorkEstimateOut(BaseModel):
    seconds: float
    steps: dict[str, float]
    unmeasured: list[str]


class MigrationPlanOut(BaseModel):
    algorithm: str
    status: str
    kind: str
    planned_at: datetime
    counts: dict[str, int]
    keys: list[PlannedKeyOut]
    objects: list[ObjectGroupOut]
    certificates: list[PlannedCertificateOut]
    channels: list[PlannedChannelOut]
    estimate: WorkEstimateOut


class MigrationRunIn(Strict):
    algorithm: AlgorithmId
    dry_run: StrictBool = True
    limit: Annotated[StrictInt | None, Field(ge=1, le=100_000)] = None


class MigrationRunOut(BaseModel):
    algorithm: str
    dry_run: bool
    complete: bool
    summary: dict[str, int]
    rotated: list[dict[str, Any]]
    rewrapped: list[dict[str, Any]]
    reissued: list[dict[str, Any]]
    tightened: list[str]
    failed: list[dict[str, str]]
    pending: list[str]
    manual: list[str]
    plan: MigrationPlanOut


def plan_links(statuses: dict[str, str]) -> list[str]:
    """Where the migration plan of each algorithm that ``statuses`` deprecates or disallows
    is read (the follow-up of ``POST /protocols/update``)."""
    flagged = sorted(a for a, s in statuses.items() if s in ("deprecated", "disallowed"))
    return [f"/api/v1/security/qrc/migration/plan?algorithm={quote(a)}" for a in flagged]


def _data_dir(ca_dir: Path | None) -> Path | None:
    """``DATA_DIR``: the parent of ``DATA_DIR/ca``, which is all the app state names."""
    return None if ca_dir is None else ca_dir.parent


def _plan_out(plan: FullMigrationPlan) -> MigrationPlanOut:
    return MigrationPlanOut.model_validate(plan.as_dict())


@router.get(
    "/migration/plan",
    response_model=MigrationPlanOut,
    tags=["policy"],
    summary="What leaving an algorithm involves (a dry run)",
)
def migration_plan(
    client: Auditor,
    request: Request,
    algorithm: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")],
) -> MigrationPlanOut:
    """Keys, certificates, encrypted objects and TLS channels under ``algorithm``, what the
    run does about each, and the work estimated from the measured benchmarks."""
    state = state_of(request)
    return _plan_out(
        plan_algorithm_migration(state.service, algorithm, data_dir=_data_dir(state.ca_dir))
    )


@router.post(
    "/migration/run",
    response_model=MigrationRunOut,
    tags=["policy"],
    summary="Migrate off an algorithm (dry run unless dry_run is false)",
)
def migration_run(body: MigrationRunIn, client: Admin, request: Request) -> MigrationRunOut:
    """Rotate keys to a new version of their purpose's default and tighten the TLS policy;
    rewraps and leaf reissues come back as ``pending`` (``qrc migrate run`` does them)."""
    state = state_of(request)
    run = run_algorithm_migration(
        state.service,
        body.algorithm,
        actor=client.actor,
        dry_run=body.dry_run,
        data_dir=_data_dir(state.ca_dir),
        limit=body.limit,
    )
    return MigrationRunOut.model_validate(run.as_dict())
