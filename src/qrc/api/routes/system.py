"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from qrc.api.deps import require, state_of
from qrc.api.schemas import Health
from qrc.keys.access.tokens import Client, Role
from qrc.keys.custody.base import HealthState

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="Liveness")
def health() -> Health:
    """The process is up (no authentication: for load balancers)."""
    return Health(status="ok")


@router.get(
    "/ready", response_model=Health, summary="Readiness", responses={503: {"model": Health}}
)
def ready(request: Request) -> Response:
    """Store reachable, root KEK usable and power-on self-tests passed (503 otherwise)."""
    state = state_of(request)
    checks = dict(state.ready_checks)
    checks["store"] = "ok" if state.service.store_reachable() else "unreachable"
    custody = state.service.custody_health()
    checks["custody"] = custody.state.value
    ok = checks["store"] == "ok" and custody.state is not HealthState.OFFLINE
    ok = ok and checks.get("selftests", "ok") == "ok"
    body = Health(status="ready" if ok else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(client: Annotated[Client, require(*Role)], request: Request) -> PlainTextResponse:
    """Requests, latencies, crypto operations by algorithm, errors, TLS handshakes (by group;
    by group, signature scheme and certificate; refused ones by alert)."""
    state = state_of(request)
    text = state.metrics.render()
    if state.tls_counters is not None:
        text += state.tls_counters.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
