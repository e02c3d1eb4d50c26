"""Incident playbooks: what the service does, step by step, when a key is compromised or an
algorithm is broken (``docs/incident-response.md``).

A playbook is a list of steps. Planned (the dry run) each step says what it would do; run,
it does it and says what it did. Every step first looks at the store and does only what is
left, so a run that was interrupted (a crash, a lost connection, a killed process) is
finished by running it again; nothing is done twice. Each run is audited (``incident.start``
and ``incident.finish`` audit events, each step's own audited operations in between) and
told to the event sinks (an ``incident`` notice when it starts and when it ends).

- :func:`key_compromise` (:mod:`.incident_key`): revoke (or suspend) the key, make a
  replacement, move its indexed data to the replacement, list the tokens and certificates
  that still name it.
- :func:`algorithm_break` (:mod:`.incident_algorithm`): stop new use of the algorithm in the
  policy, rotate every key off it, rewrap the data, then disallow it.

What remains human (telling regulators and customers...) is listed in each report.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from qrc.keys.audit.events import EventType, Severity

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "IncidentReport",
    "Notifier",
    "PlaybookRun",
    "Progress",
    "Step",
]

Progress = Callable[[str], None]

# What no playbook can do for the operator (each report lists these).
HUMAN_ACTIONS = [
    "Decide whether this is a major ICT-related incident under DORA (Regulation (EU) "
    "2022/2554, Art. 19): if so, send the initial notification to the competent authority "
    "within 4 hours of classifying it (and at most 24 hours after becoming aware of it), "
    "an intermediate report within 72 hours of that, and the final report within a month "
    "of the latest intermediate one.",
    "If personal data may have been exposed, notify the supervisory authority within 72 "
    "hours of becoming aware (GDPR Art. 33), and the people concerned without undue delay "
    "when the risk to them is high (Art. 34).",
    "PCI DSS: follow the incident response plan (12.10) and tell the acquirer and the card "
    "brands if cardholder data is involved.",
    "Find out how it happened (logs, the audit chain, the SIEM's copy), and whether the "
    "ciphertexts themselves were taken (harvest-now-decrypt-later).",
    "Tell the owners of applications and agents that use the key or algorithm.",
]


class Notifier(Protocol):
    """Where incident notices go (the event sinks' dispatcher)."""

    def event(self, kind: str, type_: str, severity: str, data: dict[str, Any]) -> object:
        """Publish one event."""


@dataclass
class Step:
    """One step of a playbook: ``status`` is planned, done, already done, skipped or failed."""

    name: str
    action: str
    status: str = "planned"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class IncidentReport:
    """What a playbook planned or did."""

    incident_id: str
    playbook: str
    subject: str
    dry_run: bool
    started_at: datetime
    steps: list[Step] = field(default_factory=list)
    finished_at: datetime | None = None
    human_actions: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every step is done (or was done already, or does not apply)."""
        return all(s.status in ("done", "already done", "skipped") for s in self.steps)

    @property
    def outcome(self) -> str:
        """``planned`` (a dry run), ``complete`` or ``incomplete`` (run again)."""
        if self.dry_run:
            return "planned"
        return "complete" if self.complete else "incomplete"

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        return next(s for s in self.steps if s.name == name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``, the sinks' notices)."""
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        out["outcome"] = self.outcome
        return out


class PlaybookRun:
    """The machinery every playbook shares: its report, audit events, notices, progress."""

    playbook = ""

    def __init__(
        self,
        service: KeyService,
        subject: str,
        *,
        actor: str,
        execute: bool,
        notifier: Notifier | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.service = service
        self.actor = actor
        self.execute = execute
        self.notifier = notifier
        self._progress = progress
        self.report = IncidentReport(
            incident_id="inc_" + secrets.token_hex(8),
            playbook=self.playbook,
            subject=subject,
            dry_run=not execute,
            started_at=datetime.now(UTC),
            human_actions=list(HUMAN_ACTIONS),
        )

    def say(self, line: str) -> None:
        """Progress for the operator."""
        if self._progress is not None:
            self._progress(line)

    def add(self, name: str, action: str) -> Step:
        """Add a planned step."""
        step = Step(name, action)
        self.report.steps.append(step)
        return step

    def finish_step(self, step: Step, outcome: str, **detail: Any) -> None:
        """Record a step's outcome and tell the operator."""
        step.status = status = outcome
        step.detail.update(detail)
        self.say(f"{step.name}: {status}" + (f" ({_brief(detail)})" if detail else ""))

    def audit(self, event_type: str, details: dict[str, Any]) -> None:
        """Append an audit event of this incident (in a transaction of its own)."""
        with self.service.db.session() as session:
            self.service.ctx.record(
                session,
                event_type,
                self.actor,
                details={
                    "incident_id": self.report.incident_id,
                    "playbook": self.playbook,
                    "subject": self.report.subject,
                    **details,
                },
            )

    def security_event(
        self, event_type: EventType, *, key_id: str | None = None, **fields: Any
    ) -> None:
        """Record a security event of this incident (observers, hence the sinks, hear it)."""
        ctx = self.service.ctx
        with self.service.db.session() as session:
            key = ctx.find(session, key_id) if key_id is not None else None
            details = {"incident_id": self.report.incident_id, "playbook": self.playbook}
            ctx.security_event(
                session, event_type, Severity.HIGH, self.actor, key=key, details=details, **fields
            )

    def notify(self, phase: str, severity: str = "critical") -> None:
        """Tell the sinks (if any) where the incident stands."""
        if self.notifier is None:
            return
        report = self.report
        data = {
            "incident_id": report.incident_id,
            "playbook": report.playbook,
            "subject": report.subject,
            "phase": phase,
            "outcome": report.outcome,
            "steps": [
                {"name": s.name, "status": s.status, "detail": s.detail} for s in report.steps
            ],
        }
        self.notifier.event("incident", report.playbook, severity, data)

    def begin(self) -> None:
        """Audit and announce the start of an executed run."""
        self.audit("incident.start", {"steps": [s.name for s in self.report.steps]})
        self.notify("started")

    def end(self) -> IncidentReport:
        """Audit and announce the end; the report."""
        self.report.finished_at = datetime.now(UTC)
        if self.execute:
            self.audit(
                "incident.finish",
                {
                    "outcome": self.report.outcome,
                    "steps": [f"{s.name}: {s.status}" for s in self.report.steps],
                },
            )
            self.notify("finished")
        return self.report


def _brief(detail: dict[str, Any]) -> str:
    parts = []
    for key, value in detail.items():
        shown = len(value) if isinstance(value, (list, dict)) else value
        parts.append(f"{key}={shown}")
    return ", ".join(parts)[:300]
