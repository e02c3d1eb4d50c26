"""The security dashboard: the story's ``QRCSecurityDashboard``, computed from live state.

One snapshot of where the platform stands, for the web dashboard's overview:

- algorithm status: every registered algorithm with its policy status, NIST category, the
  benchmark measured at first start and the latest audited use of a key under it;
- key management: keys by state, rotations and creations in the last 30 days, the root KEK's
  custody health, key-compromise alerts (security events);
- data at rest: encrypted objects of the encrypted-data index by data type, key and
  algorithm, sorted into databases, file stores and backups, with the coverage;
- data in transit: handshakes by key-exchange group, the classical share, the TLS mode and
  the service's certificates that expire soon;
- the quantum threat level (:func:`qrc.monitor.risk_indicator.quantum_threat_indicator`)
  and the compliance summary (:func:`qrc.monitor.compliance.compliance_summary`).

Built from the inventory (:func:`qrc.monitor.inventory.build_inventory`) and the key
service's public collaborators only; nothing here opens a database session.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import AlgorithmInfo, Kind, Status, all_algorithms, get_info
from qrc.keys.audit.events import EventType
from qrc.monitor.compliance import compliance_summary
from qrc.monitor.inventory import Inventory, ObjectCount, build_inventory
from qrc.monitor.risk_config import RiskConfig
from qrc.monitor.risk_indicator import quantum_threat_indicator
from qrc.transit.tls import is_pq_group

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = [
    "WINDOW",
    "AlgorithmStatusInfo",
    "Benchmark",
    "CertificateStatus",
    "DataEncryptionStatus",
    "EncryptionDetails",
    "GroupCount",
    "KeyManagementStats",
    "NetworkSecurityStatus",
    "SecurityDashboard",
    "build_dashboard",
    "storage_class",
]

logger = logging.getLogger(__name__)

WINDOW = datetime.timedelta(days=30)
"""The window of "last 30 days" counts and of "certificates expiring soon"."""

_PAGE = 1000
_TYPES = {Kind.KEM: "key_exchange", Kind.SIGNATURE: "digital_signature", Kind.AEAD: "encryption"}
# The story's statuses are active, deprecated and experimental; ours add disallowed (no
# operation at all), shown as deprecated with the policy's own status beside it.
_STATUS = {
    Status.ACTIVE: "active",
    Status.EXPERIMENTAL: "experimental",
    Status.DEPRECATED: "deprecated",
    Status.DISALLOWED: "deprecated",
}
_COMPROMISE_EVENTS = (EventType.KEY_COMPROMISE, EventType.COMPROMISED_KEY_RECOVERY_USE)
# Data types (free-form names in the index) by where the data lives.
_DATABASE_PREFIXES = ("sql", "db", "database", "postgres", "redis", "cache", "vector", "column")
_BACKUP_PREFIXES = ("backup",)


@dataclass(frozen=True)
class Benchmark:
    """Operations per second measured at the first start (``service.benchmarks()``)."""

    ops_per_second: dict[str, float]
    measured_at: datetime.datetime | None


@dataclass(frozen=True)
class AlgorithmStatusInfo:
    """The story's ``QRCAlgorithmInfo`` for one registered algorithm."""

    algorithm_name: str
    type: str
    strength: int | None
    status: str
    policy_status: str
    family: str
    standard: str
    quantum_safe: bool
    keys: int
    performance_benchmark: Benchmark | None
    last_audit_date: datetime.datetime | None


@dataclass(frozen=True)
class KeyManagementStats:
    """The story's ``QRCKeyManagementStats``."""

    total_keys: int
    system_keys: int
    keys_by_state: dict[str, int]
    keys_on_deprecated_algorithms: int
    keys_rotated_last_30_days: int
    keys_created_last_30_days: int
    key_generation_rate: float
    key_compromise_alerts: int
    hsm_status: str
    custody: str
    hsm_detail: str


@dataclass(frozen=True)
class EncryptionDetails:
    """Indexed encrypted objects of one data type under one key and algorithm."""

    data_type: str
    key_id: str
    key_name: str
    algorithm: str
    algorithm_status: str
    quantum_safe: bool
    protected: bool
    objects: int


@dataclass(frozen=True)
class DataEncryptionStatus:
    """The story's ``DataEncryptionStatus``: what the encrypted-data index holds."""

    database_encryption: list[EncryptionDetails]
    file_storage_encryption: list[EncryptionDetails]
    backup_encryption: list[EncryptionDetails]
    total_objects: int
    protected_objects: int
    overall_coverage_percentage: float | None


@dataclass(frozen=True)
class GroupCount:
    """Completed TLS handshakes with one key-exchange group."""

    group: str
    post_quantum: bool
    count: int


@dataclass(frozen=True)
class CertificateStatus:
    """One of the service's own certificates (``DATA_DIR/tls``)."""

    subject: str | None
    algorithm: str
    quantum_safe: bool
    not_after: datetime.datetime | None
    days_left: float | None
    expiring: bool


@dataclass(frozen=True)
class NetworkSecurityStatus:
    """Data in transit: the listener's mode, handshakes by group, certificates."""

    tls_mode: str | None
    handshakes_by_group: list[GroupCount]
    total_handshakes: int
    classical_share: float | None
    audited_classical_handshakes: int
    audited_refused_handshakes: int
    certificates: list[CertificateStatus]
    certificates_expiring_within_30_days: int


@dataclass(frozen=True)
class SecurityDashboard:
    """The story's ``QRCSecurityDashboard``: one snapshot."""

    id: str
    generated_at: datetime.datetime
    qrc_algorithm_status: list[AlgorithmStatusInfo]
    key_management_stats: KeyManagementStats
    data_at_rest_encryption: DataEncryptionStatus
    data_in_transit_protection: NetworkSecurityStatus
    quantum_threat_level: dict[str, Any] | None = None
    """:func:`~qrc.monitor.risk_indicator.quantum_threat_indicator` (camelCase keys)."""
    compliance_report: dict[str, Any] | None = None
    """:func:`~qrc.monitor.compliance.compliance_summary` (camelCase keys)."""
    unavailable: list[str] = field(default_factory=list)
    """Parts this build cannot compute yet, each with why."""


def storage_class(data_type: str) -> str:
    """``database``, ``file`` or ``backup``: where data of ``data_type`` lives.

    Index data types are free-form short names (``sql-column``, ``redis-value``, ``file``,
    ``backup``...): names that start with a database word count as databases, ``backup*``
    as backups, everything else (files, age files, model weights, logs) as file storage.
    """
    name = data_type.lower()
    if name.startswith(_BACKUP_PREFIXES):
        return "backup"
    if name.startswith(_DATABASE_PREFIXES):
        return "database"
    return "file"


def _benchmark(stored: Any) -> Benchmark | None:
    if not isinstance(stored, dict):
        return None
    ops = stored.get("ops_per_second")
    if not isinstance(ops, dict):
        return None
    measured = stored.get("measured_at")
    try:
        at = datetime.datetime.fromisoformat(measured) if isinstance(measured, str) else None
    except ValueError:
        at = None
    numbers = {str(k): float(v) for k, v in ops.items() if isinstance(v, int | float)}
    return Benchmark(ops_per_second=numbers, measured_at=at)


def _algorithms(service: KeyService, inventory: Inventory) -> list[AlgorithmStatusInfo]:
    benchmarks = service.benchmarks()
    keys: Counter[str] = Counter(k.algorithm for k in inventory.keys if k.state != "destroyed")
    last: dict[str, datetime.datetime] = {}
    for key in inventory.keys:
        if key.last_activity_at is not None:
            seen = last.get(key.algorithm)
            last[key.algorithm] = max(seen, key.last_activity_at) if seen else key.last_activity_at
    return [_algorithm(service, info, benchmarks, keys, last) for info in all_algorithms()]


def _algorithm(
    service: KeyService,
    info: AlgorithmInfo,
    benchmarks: dict[str, Any],
    keys: Counter[str],
    last: dict[str, datetime.datetime],
) -> AlgorithmStatusInfo:
    status = service.policy.status(info.id)
    return AlgorithmStatusInfo(
        algorithm_name=info.id,
        type=_TYPES[info.kind],
        strength=info.nist_level,
        status=_STATUS[status],
        policy_status=status.value,
        family=info.family.value,
        standard=info.standard,
        quantum_safe=info.quantum_safe,
        keys=keys[info.id],
        performance_benchmark=_benchmark(benchmarks.get(info.id)),
        last_audit_date=last.get(info.id),
    )


def _rotated_keys(service: KeyService, since: datetime.datetime) -> int:
    """Distinct keys with a successful rotation audited since ``since``."""
    keys: set[str] = set()
    cursor = None
    while True:
        events, cursor = service.audit.query(
            event_type="key.rotate", result="success", since=since, limit=_PAGE, cursor=cursor
        )
        keys.update(e.key_id for e in events if e.key_id is not None)
        if cursor is None:
            return len(keys)


def _compromise_alerts(service: KeyService, since: datetime.datetime) -> int:
    total = 0
    for event_type in _COMPROMISE_EVENTS:
        after = None
        while True:
            page = service.audit.security_events(
                event_type=event_type.value, since=since, limit=_PAGE, after_id=after
            )
            total += len(page)
            if len(page) < _PAGE:
                break
            after = page[-1].id
    return total


def _retiring(service: KeyService, algorithm: str) -> bool:
    return service.policy.status(algorithm) in (Status.DEPRECATED, Status.DISALLOWED)


def _key_stats(
    service: KeyService, inventory: Inventory, now: datetime.datetime
) -> KeyManagementStats:
    live = [k for k in inventory.keys if k.state != "destroyed"]
    since = now - WINDOW
    created = sum(k.created_at >= since for k in inventory.keys)
    health = service.custody_health()
    return KeyManagementStats(
        total_keys=len(live),
        system_keys=sum(k.system for k in live),
        keys_by_state=dict(sorted(Counter(k.state for k in inventory.keys).items())),
        keys_on_deprecated_algorithms=sum(_retiring(service, k.algorithm) for k in live),
        keys_rotated_last_30_days=_rotated_keys(service, since),
        keys_created_last_30_days=created,
        key_generation_rate=round(created / WINDOW.days, 3),
        key_compromise_alerts=_compromise_alerts(service, since),
        hsm_status=health.state.value,
        custody=health.custody,
        hsm_detail=health.detail,
    )


def _protected(service: KeyService, obj: ObjectCount) -> tuple[str, bool, bool]:
    """(policy status, quantum safe, counts as protected) of an object's algorithm."""
    try:
        info = get_info(obj.algorithm)
    except UnsupportedAlgorithm:
        return "unregistered", False, False
    status = service.policy.status(info.id)
    protected = info.quantum_safe and status in (Status.ACTIVE, Status.EXPERIMENTAL)
    return status.value, info.quantum_safe, protected


def _at_rest(service: KeyService, inventory: Inventory) -> DataEncryptionStatus:
    where: dict[str, list[EncryptionDetails]] = {"database": [], "file": [], "backup": []}
    total = protected_total = 0
    for obj in inventory.objects:
        status, quantum_safe, protected = _protected(service, obj)
        where[storage_class(obj.data_type)].append(
            EncryptionDetails(
                data_type=obj.data_type,
                key_id=obj.key_id,
                key_name=obj.key_name,
                algorithm=obj.algorithm,
                algorithm_status=status,
                quantum_safe=quantum_safe,
                protected=protected,
                objects=obj.count,
            )
        )
        total += obj.count
        protected_total += obj.count if protected else 0
    return DataEncryptionStatus(
        database_encryption=where["database"],
        file_storage_encryption=where["file"],
        backup_encryption=where["backup"],
        total_objects=total,
        protected_objects=protected_total,
        overall_coverage_percentage=round(100 * protected_total / total, 2) if total else None,
    )


def _in_transit(inventory: Inventory, now: datetime.datetime) -> NetworkSecurityStatus:
    handshakes = inventory.handshakes
    groups: Counter[str] = Counter()
    for (group, _signature, _certificate), n in handshakes.completed.items():
        groups[group] += n
    certificates = []
    for cert in inventory.certificates:
        days = None if cert.not_after is None else (cert.not_after - now).total_seconds() / 86400
        certificates.append(
            CertificateStatus(
                subject=cert.subject,
                algorithm=cert.algorithm,
                quantum_safe=cert.quantum_safe,
                not_after=cert.not_after,
                days_left=None if days is None else round(days, 2),
                expiring=days is not None and days <= WINDOW.days,
            )
        )
    return NetworkSecurityStatus(
        tls_mode=handshakes.tls_mode,
        handshakes_by_group=[
            GroupCount(group, is_pq_group(group), n) for group, n in sorted(groups.items())
        ],
        total_handshakes=sum(groups.values()),
        classical_share=handshakes.classical_share,
        audited_classical_handshakes=handshakes.classical_events,
        audited_refused_handshakes=handshakes.refused_events,
        certificates=certificates,
        certificates_expiring_within_30_days=sum(c.expiring for c in certificates),
    )


def _part(
    name: str, compute: Callable[[], dict[str, Any]], unavailable: list[str]
) -> dict[str, Any] | None:
    """One optional part: its value, or ``None`` and why (one failing panel must not take
    the whole overview down)."""
    try:
        return compute()
    except Exception:
        logger.exception("dashboard: %s could not be computed", name)
        unavailable.append(f"{name}: could not be computed (see the server's log)")
        return None


def build_dashboard(
    service: KeyService,
    *,
    tls_dir: Path | None = None,
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    risk_config: RiskConfig | None = None,
    now: datetime.datetime | None = None,
) -> SecurityDashboard:
    """The dashboard now.

    ``tls_dir``, ``counters`` and ``tls_mode`` are as for the inventory; ``risk_config`` is
    the server's risk model (``QRC_RISK_FILE``; the built-in estimates if ``None``).
    """
    now = now or service.clock()
    inventory = build_inventory(
        service, tls_dir=tls_dir, counters=counters, tls_mode=tls_mode, now=now
    )
    unavailable: list[str] = []
    threat = _part(
        "quantumThreatLevel",
        lambda: quantum_threat_indicator(service, risk_config, now=now, inventory=inventory),
        unavailable,
    )
    compliance = _part(
        "complianceReport",
        lambda: compliance_summary(service, now=now, inventory=inventory),
        unavailable,
    )
    return SecurityDashboard(
        id=str(uuid.uuid4()),
        generated_at=now,
        qrc_algorithm_status=_algorithms(service, inventory),
        key_management_stats=_key_stats(service, inventory, now),
        data_at_rest_encryption=_at_rest(service, inventory),
        data_in_transit_protection=_in_transit(inventory, now),
        quantum_threat_level=threat,
        compliance_report=compliance,
        unavailable=unavailable,
    )
