"""The security dashboard: the story's ``QRCSecurityDashboard`` in one call (cached briefly).

Field names are the story's (camelCase), so the web dashboard's TypeScript client, which is
generated from this OpenAPI document, reads like the story. Admins, key managers, auditors
and viewers read it; crypto users (application identities whose view is limited to their
own keys) do not: the dashboard counts every key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from qrc.api.deps import AppState, require, state_of
from qrc.keys.access.tokens import Client, Role
from qrc.monitor.dashboard_cache import cached_dashboard
from qrc.monitor.risk_config import RiskConfig

__all__ = [
    "DataEncryptionStatus",
    "NetworkSecurityStatus",
    "QRCAlgorithmInfo",
    "QRCComplianceReport",
    "QRCKeyManagementStats",
    "QRCSecurityDashboard",
    "QuantumThreatIndicator",
    "router",
]

router = APIRouter(tags=["dashboard"])
Reader = Annotated[Client, require(Role.KEY_MANAGER, Role.AUDITOR, Role.VIEWER)]


class _Out(BaseModel):
    """camelCase on the wire, read from the monitor's dataclasses."""

    model_config = ConfigDict(alias_generator=to_camel, from_attributes=True, populate_by_name=True)


class PerformanceData(_Out):
    ops_per_second: dict[str, float] = Field(
        description="Operations per second by operation (keygen, encaps, sign...)"
    )
    measured_at: datetime | None


class QRCAlgorithmInfo(_Out):
    algorithm_name: str
    type: Literal["key_exchange", "digital_signature", "encryption"]
    strength: int | None = Field(description="NIST security category (1-5); null if none")
    status: Literal["active", "deprecated", "experimental"]
    policy_status: Literal["active", "experimental", "deprecated", "disallowed"] = Field(
        description="The policy's own status (disallowed is shown as deprecated in status)"
    )
    family: str
    standard: str
    quantum_safe: bool
    keys: int = Field(description="Keys (not destroyed) whose primary version uses it")
    performance_benchmark: PerformanceData | None = Field(
        description="Measured at the service's first start; null if not measured"
    )
    last_audit_date: datetime | None = Field(
        description="The latest audit event of a key under this algorithm"
    )


class QRCKeyManagementStats(_Out):
    total_keys: int = Field(description="Keys not destroyed (the service's own included)")
    system_keys: int = Field(description="Of which the service's own (audit, CA) keys")
    keys_by_state: dict[str, int]
    keys_on_deprecated_algorithms: int
    keys_rotated_last_30_days: int = Field(description="Distinct keys rotated in 30 days")
    keys_created_last_30_days: int
    key_generation_rate: float = Field(description="Keys created per day, over 30 days")
    key_compromise_alerts: int = Field(
        description="Key-compromise security events (compromise, recovery use) in 30 days"
    )
    hsm_status: Literal["online", "degraded", "offline"]
    custody: str = Field(description="Root KEK custody: pkcs11 (an HSM) or local")
    hsm_detail: str


class QRCEncryptionDetails(_Out):
    data_type: str
    key_id: str
    key_name: str
    algorithm: str
    algorithm_status: str
    quantum_safe: bool
    protected: bool = Field(description="Counts as covered: quantum-safe and not deprecated")
    objects: int


class DataEncryptionStatus(_Out):
    database_encryption: list[QRCEncryptionDetails]
    file_storage_encryption: list[QRCEncryptionDetails]
    backup_encryption: list[QRCEncryptionDetails]
    total_objects: int
    protected_objects: int
    overall_coverage_percentage: float | None = Field(
        description="protectedObjects / totalObjects x 100 over the encrypted-data index; "
        "null when the index holds no objects"
    )


class GroupCount(_Out):
    group: str
    post_quantum: bool
    count: int


class CertificateStatus(_Out):
    subject: str | None
    algorithm: str
    quantum_safe: bool
    not_after: datetime | None
    days_left: float | None
    expiring: bool = Field(description="Expires within 30 days (or has expired)")


class NetworkSecurityStatus(_Out):
    tls_mode: str | None
    handshakes_by_group: list[GroupCount]
    total_handshakes: int
    classical_share: float | None = Field(description="0..1; null before any handshake")
    audited_classical_handshakes: int
    audited_refused_handshakes: int
    certificates: list[CertificateStatus]
    certificates_expiring_within_30_days: int


class ThreatHorizon(_Out):
    name: str = Field(description="low, median or high estimate")
    year: float = Field(description="When a cryptographically relevant quantum computer may exist")
    years_away: float
    source: str


class QuantumThreatIndicator(_Out):
    """The quantum threat level (``qrc.monitor.risk_indicator``; ``docs/risk.md``)."""

    level: Literal["low", "moderate", "elevated", "high", "critical"]
    score: int = Field(ge=0, le=100, description="A sum of named points, each in reasons")
    reasons: list[str]
    horizons: list[ThreatHorizon]
    exposed_keys: int
    exposed_data_types: int
    exposed_objects: int
    classical_keys: int
    classical_handshakes: int
    classical_certificates: int
    deprecated_algorithms_in_use: list[str]
    migration_years: float
    tls_mode: str | None
    last_assessed: datetime


Outcome = Literal["pass", "fail", "manual", "not_applicable"]


class ComplianceCounts(_Out):
    pass_: int = Field(alias="pass")
    fail: int
    not_applicable: int
    manual: int


class FrameworkSummary(ComplianceCounts):
    id: str
    name: str
    status: Outcome


class FailingControl(_Out):
    id: str
    framework: str
    reference: str
    title: str
    finding: str
    remediation: str


class QRCComplianceReport(_Out):
    """The compliance summary (``qrc.monitor.compliance``; the full report: /compliance)."""

    generated_at: datetime
    overall_status: Outcome
    counts: ComplianceCounts
    frameworks: list[FrameworkSummary]
    top_failing: list[FailingControl]


class QRCSecurityDashboard(_Out):
    id: str = Field(description="This snapshot's ID (a new one each time it is computed)")
    generated_at: datetime
    qrc_algorithm_status: list[QRCAlgorithmInfo]
    key_management_stats: QRCKeyManagementStats
    data_at_rest_encryption: DataEncryptionStatus
    data_in_transit_protection: NetworkSecurityStatus
    quantum_threat_level: QuantumThreatIndicator | None = Field(
        description="null if it could not be computed (see unavailable)"
    )
    compliance_report: QRCComplianceReport | None = Field(
        description="null if it could not be computed (see unavailable)"
    )
    unavailable: list[str] = Field(description="Parts not computed, each with why")


def _risk_config(state: AppState) -> RiskConfig | None:
    """The server's risk model (``QRC_RISK_FILE``), where the server put one on the state."""
    config = getattr(state, "risk_config", None)
    return config if isinstance(config, RiskConfig) else None


def _tls_dir(ca_dir: Path | None) -> Path | None:
    """``DATA_DIR/tls``: beside ``DATA_DIR/ca``, which is all the app state names."""
    return None if ca_dir is None else ca_dir.parent / "tls"


@router.get(
    "/dashboard",
    response_model=QRCSecurityDashboard,
    summary="The security dashboard (algorithms, keys, data at rest and in transit)",
)
def dashboard(client: Reader, request: Request) -> QRCSecurityDashboard:
    """Where the platform stands, at most a few seconds old (a key change refreshes it)."""
    state = state_of(request)
    snapshot = cached_dashboard(
        state.service,
        tls_dir=_tls_dir(state.ca_dir),
        counters=state.tls_counters,
        tls_mode=state.settings.tls_mode if state.tls_counters is not None else None,
        risk_config=_risk_config(state),
    )
    return QRCSecurityDashboard.model_validate(snapshot)
