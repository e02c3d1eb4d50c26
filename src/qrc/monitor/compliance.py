"""Compliance reports: every control of the catalogue evaluated from the service's live state.

:func:`build_report` gathers the facts once (:mod:`qrc.monitor.compliance_facts`), runs each
control's check (:mod:`qrc.monitor.compliance_catalogue`) and returns a
:class:`ComplianceReport`: per control an outcome (``pass``, ``fail``, ``not_applicable``,
``manual``), a one-line finding, the evidence judged and a remediation hint. The renderers
(:mod:`qrc.monitor.compliance_render`) turn it into JSON, HTML and PDF.

:func:`compliance_summary` is the dashboard's ``complianceReport`` (the story's
``QRCComplianceReport``); its shape is stable::

    {
      "generatedAt": "2026-01-31T12:00:00+00:00",
      "overallStatus": "pass" | "fail" | "manual" | "not_applicable",
      "counts": {"pass": int, "fail": int, "notApplicable": int, "manual": int},
      "frameworks": [{"id": "pci-dss-4.0", "name": "PCI DSS v4.0", "status": "fail",
                      "pass": int, "fail": int, "notApplicable": int, "manual": int}, ...],
      "topFailing": [{"id": "pci-dss-4.0/3.7.4", "framework": "pci-dss-4.0",
                      "reference": "Requirement 3.7.4", "title": str, "finding": str,
                      "remediation": str}, ...]
    }
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrc import __version__
from qrc.monitor.compliance_catalogue import CONTROLS, FRAMEWORKS, Control
from qrc.monitor.compliance_checks import Finding, Outcome
from qrc.monitor.compliance_facts import Facts, gather_facts
from qrc.monitor.inventory import Inventory

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = [
    "FRAMEWORKS",
    "SUMMARY_AUDIT_MAX_AGE",
    "ComplianceReport",
    "ControlResult",
    "Outcome",
    "UnknownFramework",
    "build_report",
    "compliance_summary",
    "evaluate",
    "parse_frameworks",
]

_TOP_FAILING = 5
SUMMARY_AUDIT_MAX_AGE = 300.0
"""Seconds the dashboard's summary may reuse an audit verification (the report: never)."""


class UnknownFramework(ValueError):
    """A framework ID the catalogue does not have."""


@dataclass(frozen=True)
class ControlResult:
    """One control, evaluated."""

    control: Control
    finding: Finding

    @property
    def outcome(self) -> Outcome:
        return self.finding.outcome

    def as_dict(self) -> dict[str, Any]:
        c = self.control
        return {
            "id": c.id,
            "framework": c.framework,
            "reference": c.reference,
            "title": c.title,
            "outcome": self.outcome.value,
            "automatic": c.check is not None,
            "finding": self.finding.summary,
            "evidence": self.finding.evidence,
            "remediation": c.remediation if self.outcome is not Outcome.PASS else None,
            "limits": c.limits,
        }


def _status(counts: Counter[Outcome]) -> str:
    """The first outcome some control has, in the order fail, pass, manual, not applicable."""
    for outcome in (Outcome.FAIL, Outcome.PASS, Outcome.MANUAL):
        if counts[outcome]:
            return outcome.value
    return Outcome.NOT_APPLICABLE.value


def _counts(counts: Counter[Outcome]) -> dict[str, int]:
    return {
        "pass": counts[Outcome.PASS],
        "fail": counts[Outcome.FAIL],
        "notApplicable": counts[Outcome.NOT_APPLICABLE],
        "manual": counts[Outcome.MANUAL],
    }


@dataclass(frozen=True)
class ComplianceReport:
    """Every selected control with its outcome and evidence, at one moment."""

    generated_at: datetime.datetime
    frameworks: list[str]
    results: list[ControlResult]
    context: dict[str, Any]
    """What the report was evaluated against: custody, TLS mode, key and event counts."""

    def by_framework(self) -> dict[str, list[ControlResult]]:
        out: dict[str, list[ControlResult]] = {f: [] for f in self.frameworks}
        for result in self.results:
            out[result.control.framework].append(result)
        return out

    def framework_summaries(self) -> list[dict[str, Any]]:
        rows = []
        for framework, results in self.by_framework().items():
            counts = Counter(r.outcome for r in results)
            row: dict[str, Any] = {"id": framework, "name": FRAMEWORKS[framework]}
            row["status"] = _status(counts)
            row.update(_counts(counts))
            rows.append(row)
        return rows

    @property
    def overall_status(self) -> str:
        return _status(Counter(r.outcome for r in self.results))

    def counts(self) -> dict[str, int]:
        return _counts(Counter(r.outcome for r in self.results))

    def failing(self) -> list[ControlResult]:
        return [r for r in self.results if r.outcome is Outcome.FAIL]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the ``json`` format)."""
        return {
            "generated_at": self.generated_at.isoformat(),
            "generator": f"qrc {__version__}",
            "overall_status": self.overall_status,
            "counts": self.counts(),
            "context": self.context,
            "frameworks": self.framework_summaries(),
            "controls": [r.as_dict() for r in self.results],
        }


def parse_frameworks(names: Iterable[str] | None) -> list[str]:
    """Framework IDs (comma-separated values allowed), checked; all of them when empty.

    Raises:
        UnknownFramework: a name the catalogue does not have.
    """
    wanted: list[str] = []
    for name in names or ():
        for raw in name.split(","):
            part = raw.strip().lower()
            if not part:
                continue
            if part not in FRAMEWORKS:
                raise UnknownFramework(
                    f"unknown framework {part!r}; expected one of {', '.join(FRAMEWORKS)}"
                )
            if part not in wanted:
                wanted.append(part)
    return wanted or list(FRAMEWORKS)


def _run(control: Control, facts: Facts) -> Finding:
    if control.check is None:
        return Finding(Outcome.MANUAL, control.limits)
    return control.check(facts)


def evaluate(facts: Facts, frameworks: Sequence[str] | None = None) -> ComplianceReport:
    """Evaluate the controls of ``frameworks`` (default: all) against ``facts``."""
    selected = parse_frameworks(frameworks)
    results = [ControlResult(c, _run(c, facts)) for c in CONTROLS if c.framework in selected]
    inv = facts.inventory.summary()
    context = {
        "custody": facts.custody,
        "custody_state": facts.custody_state,
        "tls_mode": facts.tls_mode,
        "keys": len(facts.keys),
        "live_keys": len(facts.live_keys),
        "encrypted_objects": inv["encrypted_objects"],
        "certificates": inv["certificates"],
        "audit_events_verified": facts.audit.events,
        "audit_chain_valid": facts.audit.valid,
    }
    return ComplianceReport(facts.now, selected, results, context)


def build_report(
    service: KeyService,
    *,
    frameworks: Sequence[str] | None = None,
    tls_dir: Path | None = None,
    scan: Iterable[str | Path] = (),
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    now: datetime.datetime | None = None,
    audit_max_age: float = 0.0,
    inventory: Inventory | None = None,
) -> ComplianceReport:
    """Gather the live state of ``service`` and evaluate the controls of ``frameworks``.

    ``tls_dir``, ``scan``, ``counters`` and ``tls_mode`` are passed to the inventory
    (:func:`qrc.monitor.inventory.build_inventory`). Frameworks are checked first, so a
    typo costs no audit verification. The audit chain is verified in full, unless a
    verification at most ``audit_max_age`` seconds old is at hand.

    Raises:
        UnknownFramework: a framework the catalogue does not have.
    """
    selected = parse_frameworks(frameworks)
    facts = gather_facts(
        service,
        tls_dir=tls_dir,
        scan=scan,
        counters=counters,
        tls_mode=tls_mode,
        now=now,
        audit_max_age=audit_max_age,
        inventory=inventory,
    )
    return evaluate(facts, selected)


def compliance_summary(
    service: KeyService,
    *,
    report: ComplianceReport | None = None,
    frameworks: Sequence[str] | None = None,
    top: int = _TOP_FAILING,
    **state: Any,
) -> dict[str, Any]:
    """The dashboard's ``complianceReport``: the shape in this module's docstring.

    Pass ``report`` to summarise one already built; otherwise one is built for
    ``frameworks`` with the other arguments of :func:`build_report` (``inventory`` among
    them: one built already). Polled, it reuses an audit verification up to
    :data:`SUMMARY_AUDIT_MAX_AGE` seconds old (unless ``audit_max_age`` is given): a full
    verification reads the whole chain.
    """
    if report is None:
        state.setdefault("audit_max_age", SUMMARY_AUDIT_MAX_AGE)
        report = build_report(service, frameworks=frameworks, **state)
    return {
        "generatedAt": report.generated_at.isoformat(),
        "overallStatus": report.overall_status,
        "counts": report.counts(),
        "frameworks": report.framework_summaries(),
        "topFailing": [
            {
                "id": r.control.id,
                "framework": r.control.framework,
                "reference": r.control.reference,
                "title": r.control.title,
                "finding": r.finding.summary,
                "remediation": r.control.remediation,
            }
            for r in report.failing()[: max(0, top)]
        ],
    }
