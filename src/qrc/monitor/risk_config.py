"""The risk model's inputs: data lifetimes (x), migration time (y), quantum-threat horizons (z).

Every number here is an estimate that an operator should replace with their own
(``QRC_RISK_FILE``, a TOML or JSON file; ``docs/risk.md`` explains each default and where it
comes from). :func:`load_risk_config` reads such a file over the defaults and says exactly
what is wrong with one it cannot use.

A file looks like this (every part optional)::

    default_lifetime_years = 10
    migration_lead_time_years = 1.5
    # migration_years = 3            # replaces the estimate of y altogether
    [lifetimes]
    database_record = 10
    payment_token = 2
    [horizons.median]
    year = 2036
    source = "our threat-intelligence team, 2026 review"
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "DEFAULT_HORIZONS",
    "DEFAULT_LIFETIMES",
    "HORIZON_NAMES",
    "Horizon",
    "RiskConfig",
    "RiskConfigError",
    "load_risk_config",
]

HORIZON_NAMES: Final = ("low", "median", "high")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")  # the index's data_type rule
_MAX_YEARS: Final = 200.0
_MAX_FILE: Final = 1 << 20


class RiskConfigError(ValueError):
    """The risk model's configuration cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Horizon:
    """One estimate of the year a cryptographically relevant quantum computer (CRQC) exists."""

    name: str
    year: float
    source: str

    def years_from(self, now_year: float) -> float:
        """z: the years from ``now_year`` to this horizon (negative once it has passed)."""
        return self.year - now_year


# The defaults, with why: docs/risk.md has the same table and the citations in full.
DEFAULT_HORIZONS: Final = (
    Horizon(
        "low",
        2030.0,
        "Early arrival. Global Risk Institute, Quantum Threat Timeline Report 2023 (Mosca and "
        "Piani, January 2024): the surveyed experts' average likelihood of a CRQC within 5 "
        "years was about 11%, within 10 years about 31%. NIST IR 8547 deprecates 112-bit "
        "classical public-key algorithms after 2030.",
    ),
    Horizon(
        "median",
        2035.0,
        "Central planning date. NIST IR 8547 and US NSM-10 disallow quantum-vulnerable "
        "public-key algorithms after 2035. This is a policy deadline, not the surveys' 50% "
        "point, which lies later: a cautious central estimate.",
    ),
    Horizon(
        "high",
        2050.0,
        "Late arrival. Slower forecasts, e.g. the Quantum Threat Tracker of Cambridge "
        "Consultants and the University of Edinburgh, put a break of RSA-2048 in the 2050s "
        "under their default assumptions.",
    ),
)

# Years a data type's content must stay secret (x), for a fintech platform. The keys are the
# encrypted-data index's data types (and data classes); `default` covers every other name.
DEFAULT_LIFETIMES: Final[Mapping[str, tuple[float, str]]] = MappingProxyType(
    {
        "database_record": (
            10.0,
            "customer and transaction records: kept 5-10 years by "
            "record-keeping rules, and their content outlives retention",
        ),
        "sql-column": (10.0, "what EncryptedText registers: database records"),
        "pii": (
            25.0,
            "personal data that does not change (names, national IDs, dates of "
            "birth): secret for a customer's lifetime",
        ),
        "cardholder_data": (5.0, "card numbers: cards are reissued every 3-5 years"),
        "payment_token": (2.0, "tokens and short-lived credentials: rotated within months"),
        "training_data": (10.0, "often personal or transaction data"),
        "model_file": (5.0, "model parameters: their value fades as models are retrained"),
        "log_archive": (
            7.0,
            "audit and log archives: seven-year retention is common in "
            "finance (e.g. SOX workpapers)",
        ),
        "backup": (10.0, "holds everything above: as long as the records it contains"),
        "redis-string": (1.0, "cache values: short-lived by design"),
        "redis-hash-field": (1.0, "cache values: short-lived by design"),
        "signature": (
            10.0,
            "how long a signature must be trusted (contracts, audit "
            "checkpoints); used for signing keys",
        ),
        "tls_traffic": (
            10.0,
            "what crosses the API: plaintexts sent to /encrypt and returned "
            "by /decrypt, as long-lived as the default",
        ),
        "default": (10.0, "anything not named: a cautious middle"),
    }
)


@dataclass(frozen=True)
class RiskConfig:
    """The inputs of the risk model (defaults: :data:`DEFAULT_LIFETIMES`, ``DEFAULT_HORIZONS``)."""

    lifetimes: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({k: v[0] for k, v in DEFAULT_LIFETIMES.items()})
    )
    horizons: tuple[Horizon, ...] = DEFAULT_HORIZONS
    migration_years: float | None = None
    """y when the operator sets it; ``None``: estimated (lead time plus measured work)."""
    migration_lead_time_years: float = 1.0
    """The organisational part of an estimated y: schedule, approve, deploy, verify."""
    source: str = "built-in defaults"

    def lifetime(self, *names: str | None) -> tuple[float, str]:
        """x for an object named by its data type and class: the longest configured, with
        the name it came from; the default when none of the names is configured."""
        found = [(self.lifetimes[n], n) for n in names if n and n in self.lifetimes]
        if not found:
            return self.lifetimes.get("default", 10.0), "default"
        return max(found)

    def horizon(self, name: str) -> Horizon:
        """The horizon called ``name`` (``low``, ``median`` or ``high``)."""
        return next(h for h in self.horizons if h.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "lifetimes_years": dict(sorted(self.lifetimes.items())),
            "horizons": [
                {"name": h.name, "year": h.year, "source": h.source} for h in self.horizons
            ],
            "migration_years": self.migration_years,
            "migration_lead_time_years": self.migration_lead_time_years,
        }


def _years(value: object, where: str, *, low: float = 0.0, high: float = _MAX_YEARS) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RiskConfigError(f"{where} must be a number of years, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise RiskConfigError(f"{where} must be between {low:g} and {high:g}")
    return number


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RiskConfigError(f"{where} must be a table (mapping)")
    return value


def _horizons(given: dict[str, Any]) -> tuple[Horizon, ...]:
    out = {h.name: h for h in DEFAULT_HORIZONS}
    for name, raw in given.items():
        if name not in out:
            raise RiskConfigError(f"horizons.{name}: unknown; use {', '.join(HORIZON_NAMES)}")
        entry = _table(raw, f"horizons.{name}")
        unknown = set(entry) - {"year", "source"}
        if unknown:
            raise RiskConfigError(f"horizons.{name}: unknown field(s) {', '.join(sorted(unknown))}")
        year = out[name].year
        if "year" in entry:
            year = _years(entry["year"], f"horizons.{name}.year", low=1900.0, high=2300.0)
        source = entry.get("source")
        if source is None:
            # A year without a source would present an unsourced guess as ours.
            raise RiskConfigError(f"horizons.{name}.source is required: say whose estimate it is")
        if not isinstance(source, str) or not source.strip() or len(source) > 1000:
            raise RiskConfigError(f"horizons.{name}.source must be 1-1000 characters of text")
        out[name] = Horizon(name, year, source.strip())
    low, median, high = (out[n] for n in HORIZON_NAMES)
    if not low.year <= median.year <= high.year:
        raise RiskConfigError(
            f"horizons must be in order: low ({low.year:g}) <= median ({median.year:g}) "
            f"<= high ({high.year:g})"
        )
    return (low, median, high)


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML (or name it .json)"
        raise RiskConfigError(f"{path}: not valid {kind}: {exc}") from None
    return _table(data, str(path))


def config_from_mapping(data: Mapping[str, Any], *, source: str) -> RiskConfig:
    """A :class:`RiskConfig` from parsed file contents over the defaults."""
    allowed = {
        "lifetimes",
        "horizons",
        "migration_years",
        "migration_lead_time_years",
        "default_lifetime_years",
    }
    unknown = set(data) - allowed
    if unknown:
        raise RiskConfigError(
            f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}"
        )
    config = RiskConfig(source=source)
    lifetimes = dict(config.lifetimes)
    for name, years in _table(data.get("lifetimes", {}), "lifetimes").items():
        if not _NAME.fullmatch(name):
            raise RiskConfigError(
                f"lifetimes: {name!r} is not a data type name (lower-case, 1-40 characters)"
            )
        lifetimes[name] = _years(years, f"lifetimes.{name}")
    if "default_lifetime_years" in data:
        lifetimes["default"] = _years(data["default_lifetime_years"], "default_lifetime_years")
    migration = data.get("migration_years")
    return replace(
        config,
        lifetimes=MappingProxyType(lifetimes),
        horizons=_horizons(_table(data.get("horizons", {}), "horizons")),
        migration_years=None if migration is None else _years(migration, "migration_years"),
        migration_lead_time_years=_years(
            data.get("migration_lead_time_years", config.migration_lead_time_years),
            "migration_lead_time_years",
        ),
    )


def load_risk_config(
    path: Path | None = None, *, migration_years: float | None = None
) -> RiskConfig:
    """The risk model's inputs: ``path`` (TOML, or JSON by its ``.json`` suffix) over the
    defaults, and ``migration_years`` (``QRC_RISK_MIGRATION_YEARS``) over both.

    Raises:
        RiskConfigError: the file is missing, unreadable, malformed or out of range.
    """
    config = RiskConfig()
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RiskConfigError(f"{path}: {exc.strerror or exc}") from None
        if len(raw) > _MAX_FILE:
            raise RiskConfigError(f"{path}: over {_MAX_FILE >> 20} MiB; this is not a risk file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RiskConfigError(f"{path}: not UTF-8 text") from None
        config = config_from_mapping(_parse(text, path), source=str(path))
    if migration_years is not None:
        config = replace(config, migration_years=_years(migration_years, "migration_years"))
    return config
