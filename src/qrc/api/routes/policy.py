"""Algorithms and cryptographic policy: the registry as policy has it, and changing it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request

from qrc.api.deps import require, state_of
from qrc.api.routes.migration import plan_links
from qrc.api.schemas import (
    AffectedKeyOut,
    AlgorithmList,
    AlgorithmStatus,
    ProtocolPlan,
    ProtocolUpdate,
)
from qrc.crypto.registry import Kind, all_algorithms
from qrc.keys.access.tokens import Client, Role
from qrc.keys.policy import PolicyUpdate

__all__ = ["router"]

router = APIRouter()
Admin = Annotated[Client, require()]
Anyone = Annotated[Client, require(*Role)]


_TYPES: dict[Kind, Literal["key_exchange", "digital_signature", "encryption"]] = {
    Kind.KEM: "key_exchange",
    Kind.SIGNATURE: "digital_signature",
    Kind.AEAD: "encryption",
}


@router.get(
    "/algorithms/status",
    response_model=AlgorithmList,
    tags=["algorithms"],
    summary="Every algorithm, its status and latest benchmark",
)
def algorithm_status(client: Anyone, request: Request) -> AlgorithmList:
    """The registry as policy has it now, with the latest stored benchmark of each."""
    benchmarks: dict[str, Any] = state_of(request).service.benchmarks()
    items = []
    for info in all_algorithms():
        sizes = {
            k: v
            for k, v in {
                "public_key": info.public_key_size,
                "private_key": info.private_key_size,
                "ciphertext": info.ciphertext_size,
                "signature": info.signature_size,
            }.items()
            if v
        }
        items.append(
            AlgorithmStatus(
                id=info.id,
                type=_TYPES[info.kind],
                family=info.family.value,
                nist_level=info.nist_level,
                status=info.status.value,
                standard=info.standard,
                provider=info.provider,
                quantum_safe=info.quantum_safe,
                sizes=sizes,
                benchmark=benchmarks.get(info.id),
            )
        )
    return AlgorithmList(algorithms=items)


@router.post(
    "/protocols/update",
    response_model=ProtocolPlan,
    tags=["policy"],
    summary="Change cryptographic policy",
)
def protocols_update(body: ProtocolUpdate, client: Admin, request: Request) -> ProtocolPlan:
    """Plan (``dry_run``) or apply a policy change: defaults, algorithm status, TLS mode."""
    update = PolicyUpdate(
        {str(k): v for k, v in body.default_algorithms.items()},
        dict(body.algorithm_status),
        body.tls_mode,
    )
    plan = state_of(request).service.update_policy(update, actor=client.actor, dry_run=body.dry_run)
    affected = [AffectedKeyOut(**vars(k)) for k in plan.affected_keys]
    return ProtocolPlan(
        applied=not body.dry_run, changes=plan.changes, affected_keys=affected, policy=plan.policy,
        migration_plans=plan_links(dict(body.algorithm_status)),
    )  # fmt: skip
