"""The audit trail and security events: read, filter, verify."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from qrc.api.deps import require, state_of
from qrc.api.schemas import (
    AuditEventOut,
    AuditPage,
    AuditVerifyOut,
    SecurityEventOut,
    SecurityEventPage,
    Timestamp,
)
from qrc.keys.access.tokens import Client, Role
from qrc.keys.audit.log import InvalidAuditQuery
from qrc.keys.errors import InvalidRequest

__all__ = ["router"]

router = APIRouter()
Auditor = Annotated[Client, require(Role.AUDITOR)]


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
    order: Annotated[
        Literal["asc", "desc"],
        Query(description="asc: oldest first (the chain's order); desc: newest first"),
    ] = "asc",
) -> AuditPage:
    """Filtered, paginated events of the audit chain, oldest first (``order=desc``: newest
    first; a cursor continues in the order it was made in)."""
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
            descending=order == "desc",
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
            description=r.description,
            is_quantum_threat_related=bool(r.is_quantum_threat_related),
            action_taken=r.action_taken,
            source_component=r.source,
            qrc_algorithm_involved=r.algorithm,
        )
        for r in rows
    ]
    next_after = events[-1].id if len(events) == limit else None
    return SecurityEventPage(events=events, next_after=next_after)
