"""y, the migration time of Mosca's inequality: configured, or estimated.

The estimate has two parts, reported separately so that nobody mistakes one for the other:

- the **machine work**, measured: for every algorithm that is not quantum-safe, the migration
  plan (:func:`qrc.monitor.migration.plan_migration`) lists the keys to rotate and the indexed
  objects to rewrap; each rotation costs one key generation of the target algorithm and each
  rewrap one decapsulation under the old algorithm and one encapsulation under the new, at the
  rates the service measured (``service.benchmarks()``). It is seconds to hours.
- the **lead time**, configured (``migration_lead_time_years``): scheduling, approving,
  deploying and verifying the change, and waiting for clients that must upgrade. The code
  cannot measure it; it is nearly all of y.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import Kind, get_info
from qrc.monitor.migration import MigrationPlan
from qrc.monitor.risk_config import RiskConfig

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = ["MigrationEstimate", "estimate_migration", "op_seconds"]

SECONDS_PER_YEAR: Final = 365.25 * 86400
# What an unmeasured operation is taken to cost: slower than anything in the quick set, so
# that a missing benchmark makes the estimate longer, never shorter.
UNMEASURED_SECONDS: Final = 0.05


@dataclass(frozen=True)
class MigrationEstimate:
    """y in years, and what it is made of."""

    years: float
    source: str  # "configured" or "estimated"
    lead_time_years: float
    machine_seconds: float
    keys_to_rotate: int
    objects_to_rewrap: int
    unmeasured: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "years": round(self.years, 4),
            "source": self.source,
            "lead_time_years": self.lead_time_years,
            "machine_seconds": round(self.machine_seconds, 3),
            "keys_to_rotate": self.keys_to_rotate,
            "objects_to_rewrap": self.objects_to_rewrap,
            "unmeasured": self.unmeasured,
        }


def op_seconds(
    benchmarks: Mapping[str, Any], algorithm: str, operation: str, unmeasured: set[str]
) -> float:
    """Seconds one ``operation`` of ``algorithm`` takes, from the stored benchmarks; an
    unmeasured one costs :data:`UNMEASURED_SECONDS` and is added to ``unmeasured``."""
    entry = benchmarks.get(algorithm)
    rates = entry.get("ops_per_second") if isinstance(entry, Mapping) else None
    rate = rates.get(operation) if isinstance(rates, Mapping) else None
    if isinstance(rate, int | float) and rate > 0:
        return 1.0 / float(rate)
    unmeasured.add(algorithm)
    return UNMEASURED_SECONDS


def _open_op(algorithm: str) -> str:
    """The operation that reads data under ``algorithm`` (to rewrap it)."""
    try:
        kind = get_info(algorithm).kind
    except UnsupportedAlgorithm:
        return "decapsulate"
    return {Kind.KEM: "decapsulate", Kind.SIGNATURE: "verify"}.get(kind, "decrypt_1KiB")


def _seal_op(algorithm: str) -> str:
    try:
        kind = get_info(algorithm).kind
    except UnsupportedAlgorithm:
        return "encapsulate"
    return {Kind.KEM: "encapsulate", Kind.SIGNATURE: "sign"}.get(kind, "encrypt_1KiB")


def estimate_migration(
    service: KeyService, config: RiskConfig, plans: Iterable[MigrationPlan]
) -> MigrationEstimate:
    """y for moving every key and indexed object off the algorithms ``plans`` cover."""
    benchmarks = service.benchmarks()
    unmeasured: set[str] = set()
    seconds, keys, objects = 0.0, 0, 0
    for plan in plans:
        for planned in plan.keys:
            target = planned.target or planned.primary_algorithm
            if planned.rotates:
                keys += 1
                seconds += op_seconds(benchmarks, target, "keygen", unmeasured)
            if planned.objects:
                objects += planned.objects
                per_object = op_seconds(
                    benchmarks, plan.algorithm, _open_op(plan.algorithm), unmeasured
                ) + op_seconds(benchmarks, target, _seal_op(target), unmeasured)
                seconds += planned.objects * per_object
    lead = config.migration_lead_time_years
    if config.migration_years is not None:
        years, source = config.migration_years, "configured"
    else:
        years, source = lead + seconds / SECONDS_PER_YEAR, "estimated"
    return MigrationEstimate(years, source, lead, seconds, keys, objects, sorted(unmeasured))
