"""Harvest-now-decrypt-later risk (auditors and admins) and the parameter advisor (any role)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from qrc.api.deps import AppState, require, state_of
from qrc.api.problems import Problem
from qrc.keys.access.tokens import Client, Role
from qrc.monitor.advisor import Purpose, advise
from qrc.monitor.risk_config import RiskConfig
from qrc.monitor.risk_indicator import risk_document

__all__ = ["AdvisorIn", "router"]

router = APIRouter()
Auditor = Annotated[Client, require(Role.AUDITOR)]
Anyone = Annotated[Client, require(*Role)]


class AdvisorIn(BaseModel):
    """What the algorithm is for, how long it must hold, and the budgets it must fit."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    purpose: Purpose
    lifetime_years: float = Field(ge=0, le=200, description="Years the protection must hold.")
    max_latency_ms: float | None = Field(
        None, gt=0, le=1e6, description="Per handshake, decryption, signature or verification."
    )
    max_bytes: int | None = Field(
        None, ge=1, le=1 << 31, description="Ciphertext or signature bytes (key exchange: "
        "public key plus ciphertext)."
    )  # fmt: skip
    max_public_key_bytes: int | None = Field(None, ge=1, le=1 << 31)


def _config(state: AppState) -> RiskConfig | None:
    """The server's risk model (``QRC_RISK_FILE``), where the server put one on the state."""
    config = getattr(state, "risk_config", None)
    return config if isinstance(config, RiskConfig) else None


def _tls_dir(ca_dir: Path | None) -> Path | None:
    return None if ca_dir is None else ca_dir.parent / "tls"


@router.get(
    "/risk",
    tags=["monitoring"],
    summary="Harvest-now-decrypt-later risk per key, data type and TLS channel; threat level",
)
def risk(client: Auditor, request: Request) -> dict[str, Any]:
    """Mosca's x + y > z for every live key, indexed data type and the TLS listener, under
    the low, median and high quantum-threat horizons, with the quantum threat indicator."""
    state = state_of(request)
    return risk_document(
        state.service,
        _config(state),
        tls_dir=_tls_dir(state.ca_dir),
        counters=state.tls_counters,
        tls_mode=state.settings.tls_mode if state.tls_counters is not None else None,
    )


@router.post(
    "/advisor",
    tags=["monitoring"],
    summary="Recommend an algorithm and parameter set for a purpose, lifetime and budgets",
)
def advisor(client: Anyone, request: Request, body: AdvisorIn) -> dict[str, Any]:
    """Rule-based: the registry's sizes, categories and statuses and this service's measured
    benchmarks; says why the recommendation won and why every other algorithm did not."""
    service = state_of(request).service
    try:
        advice = advise(
            body.purpose,
            body.lifetime_years,
            max_latency_ms=body.max_latency_ms,
            max_bytes=body.max_bytes,
            max_public_key_bytes=body.max_public_key_bytes,
            benchmarks=service.benchmarks(),
            status_of=service.policy.status,
        )
    except ValueError as exc:
        raise Problem("invalid-request", str(exc)) from None
    return advice.as_dict()
