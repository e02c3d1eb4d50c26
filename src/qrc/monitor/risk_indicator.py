"""The quantum threat level: the story's ``QuantumThreatIndicator``, derived from the risk.

:func:`quantum_threat_indicator` is what ``GET /dashboard`` shows as ``quantumThreatLevel``;
its name and the shape of what it returns are stable (``docs/risk.md``)::

    {
      "level": "low" | "moderate" | "elevated" | "high" | "critical",
      "score": 0..100,
      "reasons": ["+30: 2 key(s) exposed under the median horizon (2035) ...", ...],
      "horizons": [{"name": "low", "year": 2030, "yearsAway": 3.1, "source": "..."}, ...],
      "exposedKeys": 2, "exposedDataTypes": 1, "exposedObjects": 40,
      "classicalKeys": 3, "classicalHandshakes": 0, "classicalCertificates": 1,
      "deprecatedAlgorithmsInUse": ["X25519"],
      "migrationYears": 1.0, "tlsMode": "pq-only",
      "lastAssessed": "2026-12-07T18:00:00+00:00"
    }

The score is a sum of named, fixed points, each listed in ``reasons``: no weights are
learned, so an operator can check every point against the risk report.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from qrc.monitor.inventory import Inventory
from qrc.monitor.risk import RiskReport, assess_risk
from qrc.monitor.risk_config import RiskConfig

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = [
    "LEVELS",
    "indicator_from_report",
    "level_of",
    "quantum_threat_indicator",
    "risk_document",
]

# (lowest score, level), highest first.
LEVELS: Final = ((75, "critical"), (55, "high"), (35, "elevated"), (15, "moderate"), (0, "low"))


def level_of(score: int) -> str:
    """The level a score falls in."""
    return next(name for floor, name in LEVELS if score >= floor)


def _exposure_points(report: RiskReport) -> tuple[int, list[str]]:
    """Points for the worst horizon under which anything is exposed."""
    config = report.config
    worst = {"high": 45, "median": 30, "low": 15}
    for name in ("high", "median", "low"):
        keys = report.exposed_keys(name)
        types = [d.data_type for d in report.data_types if name in d.exposed_under]
        channel = name in report.channel.exposed_under
        if keys or types or channel:
            year = config.horizon(name).year
            what = []
            if keys:
                what.append(f"{len(keys)} key(s) ({', '.join(k.name for k in keys[:5])})")
            if types:
                what.append(f"data type(s) {', '.join(types[:5])}")
            if channel:
                what.append("TLS traffic of classical handshakes")
            hint = {
                "high": "even the late estimate",
                "median": "the central estimate",
                "low": "only the early estimate",
            }[name]
            return worst[name], [
                f"+{worst[name]}: exposed under the {name} horizon ({year:g}, {hint}): "
                + "; ".join(what)
            ]
    return 0, []


def indicator_from_report(report: RiskReport) -> dict[str, Any]:
    """The indicator for an existing risk report (see the module's docstring)."""
    score, reasons = _exposure_points(report)
    summary = report.inventory.summary()
    inv = report.inventory

    def add(points: int, reason: str) -> None:
        nonlocal score
        score += points
        reasons.append(f"+{points}: {reason}")

    classical_keys = [k for k in report.keys if k.protection in ("classical", "unknown")]
    if classical_keys:
        add(10, f"{len(classical_keys)} live key(s) use classical algorithms")
    deprecated = sorted(
        {
            a.id
            for a in inv.algorithms()
            if a.info is not None
            and a.info.status.value in ("deprecated", "disallowed")
            and (a.keys or a.objects)
        }
    )
    if deprecated:
        add(10, f"deprecated or disallowed algorithms in use: {', '.join(deprecated)}")
    channel = report.channel
    if channel.classical_handshakes:
        add(15, f"{channel.classical_handshakes} classical TLS handshake(s) recorded")
    elif channel.downgradable:
        add(5, f"TLS mode {channel.tls_mode} accepts classical key exchange")
    classical_certs = int(summary["classical_assets_found"])
    if classical_certs:
        add(
            5,
            f"{classical_certs} classical certificate(s) or key file(s): authentication "
            "falls once a CRQC exists",
        )
    low = report.config.horizon("low")
    y = report.migration.years
    if (classical_keys or channel.classical_handshakes) and y >= low.years_from(report.now_year):
        add(
            10,
            f"migration (y = {y:.1f} years) would not finish before the low horizon ({low.year:g})",
        )
    score = min(score, 100)
    if not reasons:
        reasons.append("no key, data type or channel is exposed under any horizon")
    return {
        "level": level_of(score),
        "score": score,
        "reasons": reasons,
        "horizons": [
            {
                "name": h.name,
                "year": h.year,
                "yearsAway": round(h.years_from(report.now_year), 2),
                "source": h.source,
            }
            for h in report.config.horizons
        ],
        "exposedKeys": len(report.exposed_keys()),
        "exposedDataTypes": sum(1 for d in report.data_types if d.exposed_under),
        "exposedObjects": sum(d.classical_objects for d in report.data_types if d.exposed_under),
        "classicalKeys": len(classical_keys),
        "classicalHandshakes": channel.classical_handshakes,
        "classicalCertificates": classical_certs,
        "deprecatedAlgorithmsInUse": deprecated,
        "migrationYears": round(y, 4),
        "tlsMode": channel.tls_mode,
        "lastAssessed": report.assessed_at.isoformat(),
    }


def quantum_threat_indicator(
    service: KeyService,
    config: RiskConfig | None = None,
    *,
    tls_dir: Path | None = None,
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    now: datetime.datetime | None = None,
    inventory: Inventory | None = None,
) -> dict[str, Any]:
    """The story's ``QuantumThreatIndicator`` (camelCase keys) for ``service`` now.

    Arguments are those of :func:`qrc.monitor.risk.assess_risk`; ``config`` defaults to the
    built-in estimates (pass the server's, from ``QRC_RISK_FILE``, where there is one).
    """
    report = assess_risk(
        service,
        config,
        tls_dir=tls_dir,
        counters=counters,
        tls_mode=tls_mode,
        now=now,
        inventory=inventory,
    )
    return indicator_from_report(report)


def risk_document(
    service: KeyService,
    config: RiskConfig | None = None,
    *,
    tls_dir: Path | None = None,
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The risk report as JSON (``GET /risk``, ``qrc risk --json``), with the indicator
    under ``quantum_threat_indicator``."""
    report = assess_risk(
        service, config, tls_dir=tls_dir, counters=counters, tls_mode=tls_mode, now=now
    )
    return {**report.as_dict(), "quantum_threat_indicator": indicator_from_report(report)}
