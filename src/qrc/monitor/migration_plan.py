"""The whole plan for leaving an algorithm: keys, certificates, encrypted objects, channels.

:func:`plan_algorithm_migration` is a dry run: it reads the store, the data directory's
``ca/`` (the private CA: roots, intermediates, the leaves of ``issued.json``) and ``tls/``
(the listener's certificates), and the stored policy, and changes nothing. Each item says
what :func:`qrc.monitor.migration_run.run_algorithm_migration` will do about it
(``automatic``) or what an operator must do (``automatic`` false: a setting, a release).

The work is estimated from the benchmarks the service measured (``service.benchmarks()``):
one key generation of the target algorithm per key rotated; per indexed object one opening
under the old algorithm and one sealing under the new (the DEK's rewrap); per reissued leaf
one key generation and one signature. An operation never measured counts
:data:`qrc.monitor.risk_migration.UNMEASURED_SECONDS` and is named in ``unmeasured``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import func, select

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import Kind, Status, get_info
from qrc.keys.audit.events import EventType
from qrc.keys.store.models import EncryptedDataIndex, SecurityEvent
from qrc.monitor.inventory import tls_certificates
from qrc.monitor.migration import MigrationPlan, plan_migration
from qrc.monitor.risk_migration import op_seconds

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "CA_ALGORITHMS",
    "FullMigrationPlan",
    "ObjectGroup",
    "PlannedCertificate",
    "PlannedChannel",
    "WorkEstimate",
    "plan_algorithm_migration",
    "replacement_family",
]

# The private CA's algorithms (qrc.transit.authority): per family, the leaf key, the
# intermediate (which signs leaves) and the root (which signs the intermediate).
CA_ALGORITHMS: Final[dict[str, dict[str, str]]] = {
    "ml-dsa": {"leaf": "ML-DSA-65", "intermediate": "ML-DSA-65", "root": "ML-DSA-87"},
    "ecdsa": {"leaf": "ECDSA-P256", "intermediate": "ECDSA-P384", "root": "ECDSA-P384"},
}
# Registry ID of a classical key-exchange algorithm -> the TLS group hybrid-preferred offers.
_CLASSICAL_GROUPS: Final = {"X25519": "X25519", "P-256": "secp256r1", "P-384": "secp384r1"}
# Registry ID -> the post-quantum TLS group every mode offers (qrc.transit.tls.PQ_GROUPS).
_PQ_GROUPS: Final = {
    "X25519MLKEM768": "X25519MLKEM768",
    "P384MLKEM1024": "SecP384r1MLKEM1024",
    "ML-KEM-768": "MLKEM768",
    "ML-KEM-1024": "MLKEM1024",
}
_LISTENER_CHAIN: Final = {
    "ECDSA-P256": "ecdsa",
    "ECDSA-P384": "ecdsa",
    "ML-DSA-65": "ml-dsa",
    "ML-DSA-87": "ml-dsa",
}
_UNFIT: Final = (Status.DEPRECATED, Status.DISALLOWED)
_RECENT: Final = datetime.timedelta(days=30)


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _canonical(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return get_info(name).id
    except UnsupportedAlgorithm:
        return name


@dataclass(frozen=True)
class ObjectGroup:
    """Indexed objects under one key version of the algorithm, of one data type."""

    key_id: str
    key_name: str
    key_version: int
    data_type: str | None
    objects: int

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class PlannedCertificate:
    """A certificate whose key or signature uses the algorithm."""

    source: str  # "ca" (DATA_DIR/ca) or "listener" (DATA_DIR/tls)
    role: str  # "root", "intermediate", "leaf", "listener"
    family: str | None
    subject: str
    serial: str
    key_algorithm: str | None
    signature_algorithm: str | None
    not_after: datetime.datetime | None
    action: str
    automatic: bool
    replacement_family: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["not_after"] = _iso(self.not_after)
        return out


@dataclass(frozen=True)
class PlannedChannel:
    """A TLS setting that still offers the algorithm."""

    name: str
    setting: str
    current: str
    proposed: str | None
    action: str
    automatic: bool
    recent_classical_handshakes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class WorkEstimate:
    """Machine seconds per step, from the measured benchmarks."""

    steps: dict[str, float]
    unmeasured: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 6),
            "steps": {k: round(v, 6) for k, v in self.steps.items()},
            "unmeasured": self.unmeasured,
        }


@dataclass(frozen=True)
class FullMigrationPlan:
    """Everything that leaving ``algorithm`` involves (a dry run changes nothing)."""

    algorithm: str
    status: str
    kind: str
    keys: MigrationPlan
    objects: list[ObjectGroup]
    certificates: list[PlannedCertificate]
    channels: list[PlannedChannel]
    estimate: WorkEstimate
    planned_at: datetime.datetime

    @property
    def counts(self) -> dict[str, int]:
        """How much there is to do, automatically and by hand."""
        return {
            "keys": len(self.keys.keys),
            "keys_to_rotate": len(self.keys.to_rotate),
            "objects": sum(g.objects for g in self.objects),
            "certificates": len(self.certificates),
            "certificates_to_reissue": sum(c.automatic for c in self.certificates),
            "channels": len(self.channels),
            "channels_to_tighten": sum(c.automatic for c in self.channels),
            "manual": sum(not c.automatic for c in self.certificates)
            + sum(not c.automatic for c in self.channels),
        }

    @property
    def nothing_to_do(self) -> bool:
        """Whether nothing at all uses the algorithm any more."""
        return not (self.keys.keys or self.objects or self.certificates or self.channels)

    def as_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "status": self.status,
            "kind": self.kind,
            "planned_at": self.planned_at.isoformat(),
            "counts": self.counts,
            "keys": [
                {**vars(k), "rotates": k.rotates, "old_versions": list(k.old_versions)}
                for k in self.keys.keys
            ],
            "objects": [g.as_dict() for g in self.objects],
            "certificates": [c.as_dict() for c in self.certificates],
            "channels": [c.as_dict() for c in self.channels],
            "estimate": self.estimate.as_dict(),
        }


# --------------------------------------------------------------------------- objects
def _objects(service: KeyService, keys: MigrationPlan) -> list[ObjectGroup]:
    groups: list[ObjectGroup] = []
    with service.db.read_session() as session:
        for planned in keys.keys:
            if not planned.objects:
                continue
            rows = session.execute(
                select(
                    EncryptedDataIndex.key_version,
                    EncryptedDataIndex.data_type,
                    func.count(EncryptedDataIndex.id),
                )
                .where(
                    EncryptedDataIndex.key_id == planned.key_id,
                    EncryptedDataIndex.key_version.in_(planned.old_versions),
                )
                .group_by(EncryptedDataIndex.key_version, EncryptedDataIndex.data_type)
                .order_by(EncryptedDataIndex.key_version, EncryptedDataIndex.data_type)
            )
            for version, data_type, count in rows:
                groups.append(
                    ObjectGroup(planned.key_id, planned.name, version, data_type, int(count))
                )
    return groups


# --------------------------------------------------------------------------- certificates
def replacement_family(service: KeyService, algorithm: str) -> str | None:
    """The private CA family whose algorithms avoid ``algorithm`` and are all still fit."""
    for family, algorithms in CA_ALGORITHMS.items():
        used = set(algorithms.values())
        if algorithm in used:
            continue
        if all(service.policy.status(a) not in _UNFIT for a in used):
            return family
    return None


def _ca_records(ca_dir: Path) -> list[dict[str, Any]]:
    path = ca_dir / "issued.json"
    if not path.is_file():
        return []
    records = json.loads(path.read_text("utf-8"))
    return [r for r in records if isinstance(r, dict)]


def _ca_certificates(service: KeyService, algorithm: str, ca_dir: Path) -> list[PlannedCertificate]:
    now = datetime.datetime.now(datetime.UTC)
    target = replacement_family(service, algorithm)
    found: list[PlannedCertificate] = []
    for family, algorithms in CA_ALGORITHMS.items():
        for level, signer in (("root", "root"), ("intermediate", "root")):
            path = ca_dir / f"{level}-{family}.pem"
            key_algorithm, signed_by = algorithms[level], algorithms[signer]
            if not path.is_file() or algorithm not in (key_algorithm, signed_by):
                continue
            found.append(
                PlannedCertificate(
                    source="ca", role=level, family=family, subject=f"{level}-{family}",
                    serial="", key_algorithm=key_algorithm, signature_algorithm=signed_by,
                    not_after=None, automatic=False,
                    action=(
                        f"manual: the private CA's {family} family is fixed at these algorithms;"
                        f" issue from {target or 'another family'} and retire this one when no"
                        " leaf depends on it"
                    ),
                )
            )  # fmt: skip
    for record in _ca_records(ca_dir):
        family = str(record.get("family"))
        if family not in CA_ALGORITHMS or record.get("revoked_at"):
            continue
        algorithms = CA_ALGORITHMS[family]
        not_after = datetime.datetime.fromisoformat(str(record["not_after"]))
        if not_after <= now or algorithm not in (algorithms["leaf"], algorithms["intermediate"]):
            continue
        automatic = target is not None
        action = (
            f"reissue in the {target} family (new key and certificate written for its holder),"
            " then revoke this one (superseded)"
            if automatic
            else "manual: no CA family avoids the algorithm with fit algorithms"
        )
        found.append(
            PlannedCertificate(
                source="ca", role="leaf", family=family, subject=str(record.get("subject")),
                serial=str(record.get("serial")), key_algorithm=algorithms["leaf"],
                signature_algorithm=algorithms["intermediate"], not_after=not_after,
                action=action, automatic=automatic, replacement_family=target,
            )
        )  # fmt: skip
    return found


def _listener_certificates(algorithm: str, tls_dir: Path) -> list[PlannedCertificate]:
    found: list[PlannedCertificate] = []
    for asset in tls_certificates(tls_dir):
        key_algorithm = _canonical(asset.key_algorithm)
        signature = _canonical(asset.algorithm)
        if algorithm not in (key_algorithm, signature):
            continue
        chain = _LISTENER_CHAIN.get(algorithm)
        if chain == "ecdsa":
            action = (
                "manual: serve the ML-DSA chain only (QRC_TLS_CERTIFICATES=ml-dsa, restart); "
                "clients must then trust the ML-DSA root"
            )
        else:
            action = "manual: the listener's ML-DSA chain is fixed at ML-DSA-65/87 (a release)"
        found.append(
            PlannedCertificate(
                source="listener", role="listener", family=chain,
                subject=asset.subject or "", serial=asset.serial or "",
                key_algorithm=key_algorithm, signature_algorithm=signature,
                not_after=asset.not_after, action=action, automatic=False,
            )
        )  # fmt: skip
    return found


# --------------------------------------------------------------------------- channels
def _recent_classical(service: KeyService, group: str) -> int:
    since = service.clock() - _RECENT
    with service.db.read_session() as session:
        count = session.scalar(
            select(func.count(SecurityEvent.id)).where(
                SecurityEvent.event_type == EventType.CLASSICAL_TLS_HANDSHAKE.value,
                SecurityEvent.algorithm == group,
                SecurityEvent.at >= since,
            )
        )
    return int(count or 0)


def _channels(service: KeyService, algorithm: str) -> list[PlannedChannel]:
    mode = str(service.current_policy().get("tls_mode") or "pq-only")
    channels: list[PlannedChannel] = []
    group = _CLASSICAL_GROUPS.get(algorithm)
    if group is not None and mode == "hybrid-preferred":
        channels.append(
            PlannedChannel(
                name=f"TLS key exchange: classical group {group}",
                setting="tls_mode",
                current=mode,
                proposed="pq-only",
                action="tighten the stored TLS mode to pq-only (listeners that follow the "
                "policy reload it; classical-only clients are then refused)",
                automatic=True,
                recent_classical_handshakes=_recent_classical(service, group),
            )
        )
    pq_group = _PQ_GROUPS.get(algorithm)
    if pq_group is not None:
        channels.append(
            PlannedChannel(
                name=f"TLS key exchange: group {pq_group}",
                setting="groups",
                current=pq_group,
                proposed=None,
                action="manual: every mode offers it (qrc.transit.tls.PQ_GROUPS); removing it "
                "takes a release",
                automatic=False,
            )
        )
    chain = _LISTENER_CHAIN.get(algorithm)
    if chain is not None:
        channels.append(
            PlannedChannel(
                name=f"TLS server authentication: the {chain} chain",
                setting="QRC_TLS_CERTIFICATES",
                current="dual or " + chain,
                proposed="ml-dsa" if chain == "ecdsa" else None,
                action=(
                    "manual: set QRC_TLS_CERTIFICATES=ml-dsa and restart the listeners"
                    if chain == "ecdsa"
                    else "manual: the ML-DSA chain is fixed at ML-DSA-65/87 (a release)"
                ),
                automatic=False,
            )
        )
    return channels


# --------------------------------------------------------------------------- estimate
def _open_and_seal(kind: Kind) -> tuple[str, str]:
    return {
        Kind.KEM: ("decapsulate", "encapsulate"),
        Kind.SIGNATURE: ("verify", "sign"),
    }.get(kind, ("decrypt_1KiB", "encrypt_1KiB"))


def _estimate(
    benchmarks: Mapping[str, Any],
    plan: MigrationPlan,
    objects: list[ObjectGroup],
    certificates: list[PlannedCertificate],
) -> WorkEstimate:
    unmeasured: set[str] = set()
    rotate = rewrap = reissue = 0.0
    targets: dict[str, str] = {}
    for planned in plan.keys:
        target = planned.target or planned.primary_algorithm
        targets[planned.key_id] = target
        if planned.rotates:
            rotate += op_seconds(benchmarks, target, "keygen", unmeasured)
    for group in objects:
        target = targets.get(group.key_id, plan.algorithm)
        opening, _ = _open_and_seal(get_info(plan.algorithm).kind)
        _, sealing = _open_and_seal(_kind(target))
        per_object = op_seconds(benchmarks, plan.algorithm, opening, unmeasured) + op_seconds(
            benchmarks, target, sealing, unmeasured
        )
        rewrap += group.objects * per_object
    for certificate in certificates:
        if certificate.automatic and certificate.replacement_family is not None:
            family = CA_ALGORITHMS[certificate.replacement_family]
            reissue += op_seconds(benchmarks, family["leaf"], "keygen", unmeasured)
            reissue += op_seconds(benchmarks, family["intermediate"], "sign", unmeasured)
    steps = {"rotate_keys": rotate, "rewrap_objects": rewrap, "reissue_certificates": reissue}
    return WorkEstimate(steps, sorted(unmeasured))


def _kind(algorithm: str) -> Kind:
    try:
        return get_info(algorithm).kind
    except UnsupportedAlgorithm:
        return Kind.KEM


# --------------------------------------------------------------------------- the plan
def plan_algorithm_migration(
    service: KeyService,
    algorithm: str,
    *,
    data_dir: Path | None = None,
) -> FullMigrationPlan:
    """The whole dry run for leaving ``algorithm`` (module docstring).

    ``data_dir`` is the service's data directory: its ``ca/`` and ``tls/`` hold the
    certificates (None: certificates are not planned).

    Raises:
        KeyServiceError: ``algorithm`` is not a registry ID.
    """
    keys = plan_migration(service, algorithm)
    algorithm = keys.algorithm
    objects = _objects(service, keys)
    certificates: list[PlannedCertificate] = []
    if data_dir is not None:
        certificates = _ca_certificates(service, algorithm, data_dir / "ca")
        certificates += _listener_certificates(algorithm, data_dir / "tls")
    channels = _channels(service, algorithm)
    estimate = _estimate(service.benchmarks(), keys, objects, certificates)
    return FullMigrationPlan(
        algorithm=algorithm,
        status=service.policy.status(algorithm).value,
        kind=get_info(algorithm).kind.value,
        keys=keys,
        objects=objects,
        certificates=certificates,
        channels=channels,
        estimate=estimate,
        planned_at=service.clock(),
    )
