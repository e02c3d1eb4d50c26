"""Harvest-now-decrypt-later risk per key, per data type and for the TLS channel.

Mosca's inequality: data is exposed when **x + y > z**, with x the years the data must stay
secret, y the years until the platform has migrated off quantum-vulnerable cryptography, and
z the years until a cryptographically relevant quantum computer (CRQC) exists. z is not one
number: it is judged under three horizons (low, median, high; :mod:`.risk_config`), and each
result says under which of them the data is exposed and by how many years (the margin,
z - x - y; negative means exposed).

What counts as exposed:

- data under a **classical** key (X25519, ECDH, RSA...) or an unregistered algorithm: an
  adversary who records the ciphertext today decrypts it once a CRQC exists;
- objects still indexed under a classical algorithm although the key has moved on:
  rewrapping protects the copies taken after it, not those already taken;
- TLS traffic of **classical handshakes** the service recorded (``hybrid-preferred`` mode
  lets them happen; ``pq-only`` refuses them);
- **signatures** of classical signing keys are not harvested but forged: once a CRQC exists
  anyone can make them, so they are exposed when they must be trusted past z.

Post-quantum (ML-KEM, HQC, McEliece), hybrid (X25519 + ML-KEM: both would have to fall) and
256-bit symmetric keys (Grover leaves 128-bit security) are not exposed for new data.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import Family, all_algorithms, get_info
from qrc.monitor.inventory import Inventory, KeyAsset, build_inventory
from qrc.monitor.migration import MigrationPlan, plan_migration
from qrc.monitor.risk_config import RiskConfig, load_risk_config
from qrc.monitor.risk_migration import MigrationEstimate, estimate_migration
from qrc.transit.tls import is_pq_group

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = [
    "ChannelRisk",
    "DataTypeRisk",
    "KeyRisk",
    "RiskReport",
    "Verdict",
    "assess_risk",
    "protection_of",
]

_PAGE = 1000
HNDL = "harvest-now-decrypt-later"
FORGERY = "forgery"


@dataclass(frozen=True)
class Verdict:
    """x + y against one horizon's z."""

    horizon: str
    year: float
    z: float
    exposed: bool
    margin: float | None  # z - (x + y); None where the inequality does not apply

    def as_dict(self) -> dict[str, Any]:
        margin = None if self.margin is None else round(self.margin, 2)
        return {
            "horizon": self.horizon,
            "year": self.year,
            "z_years": round(self.z, 2),
            "exposed": self.exposed,
            "margin_years": margin,
        }


def protection_of(algorithm: str) -> tuple[str, bool, str]:
    """(protection, safe for new data, why) of ``algorithm``."""
    try:
        info = get_info(algorithm)
    except UnsupportedAlgorithm:
        return "unknown", False, f"{algorithm} is not in the registry: treated as classical"
    if info.family is Family.SYMMETRIC:
        return "symmetric", True, f"{info.id}: Grover's search leaves 128-bit security"
    if info.family is Family.HYBRID:
        return "hybrid", True, f"{info.id}: a CRQC would also have to break its ML-* half"
    if info.quantum_safe:
        return "post-quantum", True, f"{info.id} ({info.standard}) resists known quantum attacks"
    return "classical", False, f"{info.id} falls to Shor's algorithm on a CRQC"


def _verdicts(config: RiskConfig, now_year: float, x: float, y: float) -> list[Verdict]:
    out = []
    for horizon in config.horizons:
        z = horizon.years_from(now_year)
        out.append(Verdict(horizon.name, horizon.year, z, x + y > z, z - x - y))
    return out


def _safe_verdicts(config: RiskConfig, now_year: float) -> list[Verdict]:
    return [Verdict(h.name, h.year, h.years_from(now_year), False, None) for h in config.horizons]


def _exposed_under(verdicts: list[Verdict]) -> list[str]:
    return [v.horizon for v in verdicts if v.exposed]


def _years(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class KeyRisk:
    """One key: what protects it, what it protects, and whether x + y > z."""

    key_id: str
    name: str
    purpose: str
    state: str
    algorithm: str
    protection: str
    threat: str | None  # HNDL, FORGERY, or None (not exposed to either)
    objects: int
    classical_objects: int
    data_types: list[str]
    x: float
    x_from: str
    y: float
    verdicts: list[Verdict]
    reason: str

    @property
    def exposed_under(self) -> list[str]:
        return _exposed_under(self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "purpose": self.purpose,
            "state": self.state,
            "algorithm": self.algorithm,
            "protection": self.protection,
            "threat": self.threat,
            "objects": self.objects,
            "classical_objects": self.classical_objects,
            "data_types": self.data_types,
            "x_years": self.x,
            "x_from": self.x_from,
            "y_years": round(self.y, 4),
            "exposed_under": self.exposed_under,
            "verdicts": [v.as_dict() for v in self.verdicts],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class DataTypeRisk:
    """Every indexed object of one data type, across keys."""

    data_type: str
    objects: int
    classical_objects: int
    algorithms: dict[str, int]
    x: float
    y: float
    verdicts: list[Verdict]
    reason: str

    @property
    def exposed_under(self) -> list[str]:
        return _exposed_under(self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_type": self.data_type,
            "objects": self.objects,
            "classical_objects": self.classical_objects,
            "algorithms": self.algorithms,
            "x_years": self.x,
            "y_years": round(self.y, 4),
            "exposed_under": self.exposed_under,
            "verdicts": [v.as_dict() for v in self.verdicts],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ChannelRisk:
    """The API's TLS listener: its mode and the classical handshakes recorded."""

    tls_mode: str | None
    downgradable: bool
    classical_handshakes: int
    x: float
    y: float
    verdicts: list[Verdict]
    reason: str

    @property
    def exposed_under(self) -> list[str]:
        return _exposed_under(self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tls_mode": self.tls_mode,
            "downgradable": self.downgradable,
            "classical_handshakes": self.classical_handshakes,
            "x_years": self.x,
            "y_years": round(self.y, 4),
            "exposed_under": self.exposed_under,
            "verdicts": [v.as_dict() for v in self.verdicts],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RiskReport:
    """The assessment at one moment, with the inputs it used."""

    assessed_at: datetime.datetime
    config: RiskConfig
    migration: MigrationEstimate
    keys: list[KeyRisk]
    data_types: list[DataTypeRisk]
    channel: ChannelRisk
    inventory: Inventory = field(repr=False)

    @property
    def now_year(self) -> float:
        """The moment of the assessment as a fractional calendar year."""
        return _year_of(self.assessed_at)

    def exposed_keys(self, horizon: str | None = None) -> list[KeyRisk]:
        """Keys exposed under ``horizon`` (default: under any)."""
        return [
            k for k in self.keys if (horizon in k.exposed_under if horizon else k.exposed_under)
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``GET /risk``, ``qrc risk --json``)."""
        summary = self.inventory.summary()
        return {
            "assessed_at": self.assessed_at.isoformat(),
            "model": self.config.as_dict(),
            "migration": self.migration.as_dict(),
            "summary": {
                "keys": len(self.keys),
                "exposed_keys": {
                    h.name: len(self.exposed_keys(h.name)) for h in self.config.horizons
                },
                "exposed_objects": sum(
                    d.classical_objects for d in self.data_types if d.exposed_under
                ),
                "classical_certificates": summary["classical_assets_found"],
            },
            "keys": [k.as_dict() for k in self.keys],
            "data_types": [d.as_dict() for d in self.data_types],
            "channel": self.channel.as_dict(),
        }


@dataclass
class _Objects:
    total: int = 0
    classical: int = 0
    x: float = 0.0
    x_from: str = ""
    classical_x: float = 0.0
    types: Counter[str] = field(default_factory=Counter)


def _objects_of(
    service: KeyService, key: KeyAsset, config: RiskConfig, by_type: dict[str, Any]
) -> _Objects:
    seen = _Objects()
    after = 0
    while True:
        page = service.data.under(key.id, after=after, limit=_PAGE)
        for record in page:
            data_type = record.data_type or "unknown"
            x, named = config.lifetime(record.data_type, record.data_class)
            _, safe, _ = protection_of(record.algorithm)
            seen.total += 1
            seen.types[data_type] += 1
            if x > seen.x:
                seen.x, seen.x_from = x, named
            entry = by_type.setdefault(
                data_type, {"objects": 0, "classical": 0, "algorithms": Counter(), "x": 0.0}
            )
            entry["objects"] += 1
            entry["algorithms"][record.algorithm] += 1
            entry["x"] = max(entry["x"], x)
            if not safe:
                seen.classical += 1
                seen.classical_x = max(seen.classical_x, x)
                entry["classical"] += 1
        if len(page) < _PAGE:
            return seen
        after = page[-1].seq


def _key_risk(
    service: KeyService,
    key: KeyAsset,
    config: RiskConfig,
    now_year: float,
    y: float,
    by_type: dict[str, Any],
) -> KeyRisk:
    protection, safe, why = protection_of(key.algorithm)
    objects = _objects_of(service, key, config, by_type)
    signing = key.purpose == "signing"
    if signing:
        x, x_from = config.lifetime("signature")
    elif objects.total:
        x, x_from = objects.x, objects.x_from
    else:
        x, x_from = config.lifetime(None)
        x_from = "default (no indexed objects)"

    def risk(threat: str | None, x: float, verdicts: list[Verdict], reason: str) -> KeyRisk:
        return KeyRisk(
            key.id,
            key.name,
            key.purpose,
            key.state,
            key.algorithm,
            protection,
            threat,
            objects.total,
            objects.classical,
            sorted(objects.types),
            x,
            x_from,
            y,
            verdicts,
            reason,
        )

    if not safe:
        verdicts = _verdicts(config, now_year, x, y)
        if signing:
            threat = FORGERY
            reason = (
                f"{why}: signatures it makes until the migration (y = {_years(y)} years) "
                f"must be trusted x = {_years(x)} years ({x_from}); after a CRQC exists "
                "anyone can forge them"
            )
        else:
            threat = HNDL
            reason = (
                f"{why}: data encrypted under it can be recorded now and decrypted later; "
                f"it stays so until the migration (y = {_years(y)} years) and must stay "
                f"secret x = {_years(x)} years ({x_from})"
            )
        return risk(threat, x, verdicts, reason)
    if objects.classical:
        x = objects.classical_x
        verdicts = _verdicts(config, now_year, x, y)
        reason = (
            f"new data is safe ({why}), but {objects.classical} indexed object(s) are still "
            f"under a classical algorithm until rewrapped (y = {_years(y)} years) and must "
            f"stay secret x = {_years(x)} years; rewrapping protects copies taken after "
            "it, not those already taken"
        )
        return risk(HNDL, x, verdicts, reason)
    reason = f"not exposed: {why}"
    verdicts = _safe_verdicts(config, now_year)
    return risk(None, x, verdicts, reason)


def _data_type_risks(
    by_type: dict[str, Any], config: RiskConfig, now_year: float, y: float
) -> list[DataTypeRisk]:
    out = []
    for name, entry in sorted(by_type.items()):
        x, classical = float(entry["x"]), int(entry["classical"])
        if classical:
            verdicts = _verdicts(config, now_year, x, y)
            reason = (
                f"{classical} of {entry['objects']} object(s) under classical algorithms: "
                f"x = {_years(x)} + y = {_years(y)} years against each horizon"
            )
        else:
            verdicts = _safe_verdicts(config, now_year)
            reason = (
                f"all {entry['objects']} object(s) under post-quantum, hybrid or symmetric keys"
            )
        algorithms = dict(sorted(entry["algorithms"].items()))
        out.append(
            DataTypeRisk(name, int(entry["objects"]), classical, algorithms, x, y, verdicts, reason)
        )
    return out


def _channel(inv: Inventory, config: RiskConfig, now_year: float, y: float) -> ChannelRisk:
    shakes = inv.handshakes
    counted = sum(n for (group, _s, _c), n in shakes.completed.items() if not is_pq_group(group))
    # The listener's counters (this process) and the audit trail (every process) overlap:
    # take the larger rather than add them.
    classical = max(counted, shakes.classical_events)
    mode = shakes.tls_mode
    downgradable = mode not in (None, "pq-only")
    x, _ = config.lifetime("tls_traffic")
    if classical:
        reason = (
            f"{classical} classical TLS handshake(s) recorded: their traffic can be "
            f"recorded now and decrypted later (x = {_years(x)}, y = {_years(y)} years); "
            "set the TLS mode to pq-only once clients support ML-KEM"
        )
        return ChannelRisk(
            mode, downgradable, classical, x, y, _verdicts(config, now_year, x, y), reason
        )
    if downgradable:
        reason = (
            f"{mode} accepts classical key exchange: none recorded so far, but a client "
            "without ML-KEM would be exposed"
        )
    else:
        reason = "pq-only: every handshake uses a hybrid or ML-KEM group"
    return ChannelRisk(mode, downgradable, 0, x, y, _safe_verdicts(config, now_year), reason)


def _classical_plans(service: KeyService) -> list[MigrationPlan]:
    algorithms = [i.id for i in all_algorithms() if not protection_of(i.id)[1]]
    return [plan for plan in (plan_migration(service, a) for a in algorithms) if plan.keys]


def _year_of(moment: datetime.datetime) -> float:
    start = datetime.datetime(moment.year, 1, 1, tzinfo=moment.tzinfo)
    return moment.year + (moment - start).total_seconds() / (365.25 * 86400)


def assess_risk(
    service: KeyService,
    config: RiskConfig | None = None,
    *,
    tls_dir: Path | None = None,
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    now: datetime.datetime | None = None,
    inventory: Inventory | None = None,
) -> RiskReport:
    """Assess every live key, every indexed data type and the TLS channel.

    ``config`` defaults to the built-in estimates; ``tls_dir``, ``counters`` and ``tls_mode``
    are as for :func:`qrc.monitor.inventory.build_inventory`, or pass ``inventory`` built
    already (for ``now``).
    """
    config = config or load_risk_config()
    now = now or service.clock()
    now_year = _year_of(now)
    inv = inventory or build_inventory(
        service, tls_dir=tls_dir, counters=counters, tls_mode=tls_mode, now=now
    )
    estimate = estimate_migration(service, config, _classical_plans(service))
    y = estimate.years
    by_type: dict[str, Any] = {}
    keys = [
        _key_risk(service, key, config, now_year, y, by_type)
        for key in inv.keys
        if key.state != "destroyed"  # crypto-shredded: nothing left to decrypt
    ]
    return RiskReport(
        assessed_at=now,
        config=config,
        migration=estimate,
        keys=keys,
        data_types=_data_type_risks(by_type, config, now_year, y),
        channel=_channel(inv, config, now_year, y),
        inventory=inv,
    )
