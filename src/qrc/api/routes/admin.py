"""Algorithms, policy, audit, security events and tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from qrc.api.deps import require, state_of
from qrc.api.schemas import (
    AffectedKeyOut,
    AlgorithmList,
    AlgorithmStatus,
    AuditEventOut,
    AuditPage,
    AuditVerifyOut,
    ProtocolPlan,
    ProtocolUpdate,
    SecurityEventOut,
    SecurityEventPage,
    Timestamp,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from qrc.crypto.registry import Kind, all_algorithms
from qrc.keys.access.tokens import Client, Role
from qrc.keys.audit.log import InvalidAuditQuery
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import PolicyUpdate

__all__ = ["router"]

router = APIRouter()
Admin = Annotated[Client, require()]
Auditor = Annotated[Client, require(Role.AUDITOR)]
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
        applied=not body.dry_run, changes=plan.changes, affected_keys=affected, policy=plan.policy
    )


@router.get(
    "/audit/logs",
    response_model=AuditPage,
    response_model_exclude_none=True,
    tags=["audit"],
    summary="Audit events",
)
def audit_logs(
    client: Auditor,
    request: Request,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    event_type: Annotated[str | None, Query(max_length=60)] = None,
    key: Annotated[str | None, Query(max_length=200, description="Key ID or name")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    result: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> AuditPage:
    """Filtered, paginated events of the audit chain, oldest first."""
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise InvalidRequest("give times with a time zone, e.g. 2026-11-29T12:00:00Z")
    try:
        events, next_cursor = state_of(request).service.audit.query(
            since=since,
            until=until,
            event_type=event_type,
            key=key,
            actor=actor,
            result=result,
            limit=limit,
            cursor=cursor,
        )
    except InvalidAuditQuery as exc:
        raise InvalidRequest(str(exc)) from None
    out = [
        AuditEventOut(
            seq=e.seq,
            at=e.at,
            event_type=e.event_type,
            actor=e.actor,
            result=e.result,
            key_id=e.key_id,
            key_version=e.key_version,
            algorithm=e.algorithm,
            details=e.details or {},
            hash=e.hash.hex(),
        )
        for e in events
    ]
    return AuditPage(events=out, next_cursor=next_cursor)


@router.get(
    "/audit/verify",
    response_model=AuditVerifyOut,
    response_model_exclude_none=True,
    tags=["audit"],
    summary="Verify the audit chain",
)
def audit_verify(client: Auditor, request: Request) -> AuditVerifyOut:
    """Recompute the hash chain and check every signed checkpoint."""
    report = state_of(request).service.audit.verify()
    return AuditVerifyOut(
        valid=report.valid,
        events=report.events,
        first_bad_event=report.first_bad_event,
        checkpoints_verified=report.checkpoints_verified,
        reason=report.reason,
    )


@router.get(
    "/security/events",
    response_model=SecurityEventPage,
    response_model_exclude_none=True,
    tags=["audit"],
    summary="Security events",
)
def security_events(
    client: Auditor,
    request: Request,
    event_type: Annotated[str | None, Query(max_length=60)] = None,
    severity: Annotated[str | None, Query(max_length=10)] = None,
    key: Annotated[str | None, Query(max_length=40)] = None,
    since: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> SecurityEventPage:
    """Authentication failures, decryption bursts, HSM outages, compromises..."""
    if since is not None and since.tzinfo is None:
        raise InvalidRequest("give times with a time zone, e.g. 2026-11-29T12:00:00Z")
    rows = state_of(request).service.audit.security_events(
        event_type=event_type, severity=severity, key=key, since=since, limit=limit, after_id=after
    )
    events = [
        SecurityEventOut(
            id=r.id,
            at=r.at,
            event_type=r.event_type,
            severity=r.severity,
            source=r.source,
            key_id=r.key_id,
            algorithm=r.algorithm,
            details=r.details or {},
        )
        for r in rows
    ]
    next_after = events[-1].id if len(events) == limit else None
    return SecurityEventPage(events=events, next_after=next_after)


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="Create an API token",
)
def create_token(body: TokenCreate, client: Admin, request: Request) -> TokenCreated:
    """A new token; the secret is in this answer only."""
    expires = timedelta(seconds=body.expires_in) if body.expires_in else None
    created, token = state_of(request).service.tokens.create(
        name=body.name, role=body.role, keys=body.keys, expires_in=expires, actor=client.actor
    )
    return TokenCreated(
        id=created.id,
        name=created.name,
        role=created.role.value,
        keys=list(created.allowed_keys) if created.allowed_keys is not None else None,
        expires_at=created.expires_at,
        token=token,
    )


@router.get(
    "/tokens",
    response_model=TokenList,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="List API tokens",
)
def list_tokens(client: Admin, request: Request) -> TokenList:
    """Every token's metadata (never the secret)."""
    out = [
        TokenOut(
            id=c.id,
            name=c.name,
            role=c.role.value,
            keys=list(c.allowed_keys) if c.allowed_keys is not None else None,
            expires_at=c.expires_at,
            revoked_at=revoked,
        )
        for c, revoked in state_of(request).service.tokens.list()
    ]
    return TokenList(tokens=out)


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenOut,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="Revoke an API token",
)
def revoke_token(token_id: str, client: Admin, request: Request) -> TokenOut:
    """Revoke at once in this process (other processes within seconds)."""
    revoked, revoked_at = state_of(request).service.tokens.revoke(token_id, actor=client.actor)
    return TokenOut(
        id=revoked.id, name=revoked.name, role=revoked.role.value, revoked_at=revoked_at
    )
