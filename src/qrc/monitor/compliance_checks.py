"""The automatic checks behind the compliance controls: live facts in, a finding out.

Each check reads :class:`~qrc.monitor.compliance_facts.Facts` and answers with an
:class:`Outcome` (pass, fail, not applicable), a one-line summary and the evidence it
judged (values, counts, key IDs). The catalogue (:mod:`qrc.monitor.compliance_catalogue`)
maps them to the frameworks' controls; ``docs/compliance.md`` says what each can and cannot
establish.
"""

from __future__ import annotations

import datetime
import enum
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from qrc.monitor.compliance_facts import NOT_RUN, Facts, KeyFacts, parameter_set

__all__ = [
    "CERT_RENEWAL_DAYS",
    "IR8547_DEPRECATED_AFTER",
    "IR8547_DISALLOWED_AFTER",
    "LIST_LIMIT",
    "MAX_BACKUP_AGE_DAYS",
    "MAX_CRYPTOPERIOD_DAYS",
    "Check",
    "Finding",
    "Outcome",
    "parameter_set",
    "refs",
    "user_keys",
    "verdict",
]

# Upper ends of the cryptoperiods suggested in SP 800-57 Part 1 Rev. 5, §5.3.6, used for a
# key that states none of its own (an operator sets a shorter one with rotation_period).
MAX_CRYPTOPERIOD_DAYS = {"encryption": 730.0, "key_wrapping": 730.0, "signing": 1095.0}
MAX_BACKUP_AGE_DAYS = 30.0
CERT_RENEWAL_DAYS = 30.0
# NIST IR 8547 (initial public draft, Nov 2024): quantum-vulnerable public-key algorithms
# at 112-bit strength are deprecated after 2030; all of them are disallowed after 2035.
IR8547_DEPRECATED_AFTER = datetime.datetime(2030, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
IR8547_DISALLOWED_AFTER = datetime.datetime(2035, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
_UNFIT = ("deprecated", "disallowed", "unregistered")
LIST_LIMIT = 20  # at most this many IDs in one evidence list


class Outcome(enum.StrEnum):
    """How a control stands."""

    PASS = "pass"  # noqa: S105  # nosec B105 - an outcome, not a password
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    MANUAL = "manual"


@dataclass(frozen=True)
class Finding:
    """A check's answer: outcome, one line, and the evidence it judged."""

    outcome: Outcome
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Facts], Finding]


def refs(keys: Iterable[KeyFacts]) -> list[dict[str, Any]]:
    return [k.ref() for k in list(keys)[:LIST_LIMIT]]


def verdict(failed: bool, bad: str, good: str, evidence: dict[str, Any]) -> Finding:
    if failed:
        return Finding(Outcome.FAIL, bad, evidence)
    return Finding(Outcome.PASS, good, evidence)


def user_keys(facts: Facts) -> list[KeyFacts]:
    return [k for k in facts.live_keys if not k.system]


# ---------------------------------------------------------------- FIPS 203/204/205
def _passed(selftest: str) -> bool:
    """A known-answer test that passed, or one not run (disallowed or unregistered)."""
    return selftest == "ok" or selftest.startswith(NOT_RUN)


def fips_check(standard: str) -> Check:
    """Keys, defaults and TLS groups using ``standard``'s parameter sets pass their KATs."""

    def check(facts: Facts) -> Finding:
        used: dict[str, set[str]] = {}
        handshake_groups = {g for (g, _s, _c) in facts.inventory.handshakes.completed}
        for algorithm in facts.algorithms_in_use() | handshake_groups:
            pset = parameter_set(algorithm, standard)
            if pset is not None:
                used.setdefault(pset, set()).add(algorithm)
        if not used:
            return Finding(Outcome.NOT_APPLICABLE, f"no {standard} parameter set is in use")
        keys = Counter(
            pset for k in facts.live_keys if (pset := parameter_set(k.algorithm, standard))
        )
        problems = {}
        for pset, via in sorted(used.items()):
            for algorithm in sorted(via | {pset}):
                result = facts.selftests.get(algorithm)
                if algorithm in facts.floor:
                    problems[algorithm] = f"disallowed: {facts.floor[algorithm]}"
                elif result is not None and not _passed(result):
                    problems[algorithm] = result
        evidence = {
            "parameter_sets": {
                p: {"keys": keys.get(p, 0), "via": sorted(v)} for p, v in sorted(used.items())
            },
            "known_answer_tests": {
                a: r for a, r in sorted(facts.selftests.items()) if parameter_set(a, standard)
            },
            "failures": problems,
        }
        return verdict(
            bool(problems),
            f"{len(problems)} {standard} algorithm(s) failed a self-test: "
            + ", ".join(sorted(problems)),
            f"{', '.join(sorted(used))} in use; every known-answer test passed",
            evidence,
        )

    return check


# ---------------------------------------------------------------- key management
def _max_period(key: KeyFacts) -> float:
    if key.rotation_period_days is not None:
        return key.rotation_period_days
    return MAX_CRYPTOPERIOD_DAYS.get(key.purpose, 730.0)


def _overdue_rotation(facts: Facts) -> list[KeyFacts]:
    return [k for k in facts.live_keys if k.primary_age_days > _max_period(k)]


def _overdue_destruction(facts: Facts) -> list[KeyFacts]:
    return [
        k
        for k in facts.keys
        if k.destruction_due_at is not None
        and k.state != "destroyed"
        and k.destruction_due_at < facts.now
    ]


def cryptoperiods(facts: Facts) -> Finding:
    """SP 800-57 §5.3: no live key's primary version is older than its cryptoperiod."""
    overdue = _overdue_rotation(facts)
    undefined = [k for k in user_keys(facts) if k.rotation_period_days is None]
    evidence = {
        "live_keys": len(facts.live_keys),
        "overdue": [
            dict(k.ref(), age_days=k.primary_age_days, cryptoperiod_days=_max_period(k))
            for k in overdue[:LIST_LIMIT]
        ],
        "without_rotation_period": len(undefined),
        "default_max_cryptoperiod_days": MAX_CRYPTOPERIOD_DAYS,
    }
    return verdict(
        bool(overdue),
        f"{len(overdue)} key(s) used past their cryptoperiod",
        f"every live key is within its cryptoperiod ({len(undefined)} without a rotation "
        "period of their own are held to the default maximum)",
        evidence,
    )


def defined_cryptoperiods(facts: Facts) -> Finding:
    """PCI DSS 3.7.4: every key has a defined cryptoperiod and is changed at its end."""
    overdue = _overdue_rotation(facts)
    undefined = [k for k in user_keys(facts) if k.rotation_period_days is None]
    evidence = {
        "without_rotation_period": refs(undefined),
        "overdue": refs(overdue),
        "live_keys": len(facts.live_keys),
    }
    return verdict(
        bool(overdue or undefined),
        f"{len(undefined)} key(s) without a rotation period, {len(overdue)} past their "
        "cryptoperiod",
        "every live key has a rotation period and none is past it",
        evidence,
    )


def key_states(facts: Facts) -> Finding:
    """SP 800-57 §7: compromised keys protect no indexed data; expired keys are not active."""
    states = Counter(k.state for k in facts.keys)
    compromised = [k for k in facts.keys if k.state == "compromised" and k.objects]
    expired = [
        k
        for k in facts.keys
        if k.state == "active" and k.expires_at is not None and k.expires_at < facts.now
    ]
    evidence = {
        "states": dict(sorted(states.items())),
        "compromised_with_data": [dict(k.ref(), objects=k.objects) for k in compromised],
        "active_past_expiry": refs(expired),
        "key_compromise_events": facts.security_events.get("key_compromise", 0),
    }
    return verdict(
        bool(compromised or expired),
        f"{len(compromised)} compromised key(s) still protect indexed data, {len(expired)} "
        "active key(s) are past their expiry",
        "no compromised key protects indexed data; no active key is past its expiry",
        evidence,
    )


def retirement(facts: Facts) -> Finding:
    """PCI DSS 3.7.5: retired, compromised and expired keys are out of use; destruction runs."""
    states = key_states(facts)
    late = _overdue_destruction(facts)
    evidence = dict(states.evidence)
    evidence["destruction_overdue"] = refs(late)
    evidence["destroyed"] = sum(k.state == "destroyed" for k in facts.keys)
    if states.outcome is Outcome.FAIL or late:
        why = states.summary if states.outcome is Outcome.FAIL else ""
        if late:
            why = (why + "; " if why else "") + f"{len(late)} destruction(s) overdue"
        return Finding(Outcome.FAIL, why, evidence)
    return Finding(
        Outcome.PASS, "retired keys are out of use; scheduled destruction is on time", evidence
    )


def destruction(facts: Facts) -> Finding:
    """Scheduled destructions happen when due (the scheduler runs)."""
    late = _overdue_destruction(facts)
    pending = [k for k in facts.keys if k.destruction_due_at is not None and k.state != "destroyed"]
    evidence = {
        "destroyed": sum(k.state == "destroyed" for k in facts.keys),
        "pending": len(pending),
        "overdue": refs(late),
    }
    return verdict(
        bool(late),
        f"{len(late)} key(s) past their destruction date are not destroyed (is the scheduler "
        "running?)",
        f"{evidence['destroyed']} destroyed, {len(pending)} pending, none overdue",
        evidence,
    )


def custody(facts: Facts) -> Finding:
    """Key material is wrapped under a root KEK that is reachable and healthy."""
    evidence = {
        "custody": facts.custody,
        "state": facts.custody_state,
        "kek_id": facts.kek_id,
        "detail": facts.custody_detail,
        "hsm": facts.custody == "pkcs11",
    }
    return verdict(
        facts.custody_state == "offline",
        f"the root KEK ({facts.custody}) is offline: {facts.custody_detail}",
        f"private keys are stored wrapped under the root KEK ({facts.custody}, "
        f"{facts.custody_state})",
        evidence,
    )


def _backup_age(facts: Facts) -> float | None:
    latest = facts.backups.latest_at
    return None if latest is None else (facts.now - latest).total_seconds() / 86400


def backups(facts: Facts) -> Finding:
    """A backup of the key store is recorded, recent, and split k-of-n with k >= 2."""
    age = _backup_age(facts)
    evidence = {
        "backups": facts.backups.count,
        "latest_at": facts.backups.latest_at.isoformat() if facts.backups.latest_at else None,
        "latest_id": facts.backups.latest_id,
        "latest_age_days": None if age is None else round(age, 2),
        "max_age_days": MAX_BACKUP_AGE_DAYS,
        "shamir_splits": [f"{k}-of-{n}" for k, n in facts.backups.thresholds[:LIST_LIMIT]],
    }
    if age is None:
        return Finding(Outcome.FAIL, "no backup of the key store is recorded", evidence)
    return verdict(
        age > MAX_BACKUP_AGE_DAYS,
        f"the latest backup is {age:.0f} days old (more than {MAX_BACKUP_AGE_DAYS:.0f})",
        f"{facts.backups.count} backup(s); the latest is {age:.1f} days old",
        evidence,
    )


def storage(facts: Facts) -> Finding:
    """PCI DSS 3.7.3: keys stored wrapped under the KEK, and backed up encrypted."""
    held, copy = custody(facts), backups(facts)
    evidence = {"custody": held.evidence, "backups": copy.evidence}
    failed = [f.summary for f in (held, copy) if f.outcome is Outcome.FAIL]
    return verdict(bool(failed), "; ".join(failed), held.summary + "; " + copy.summary, evidence)


def split_knowledge(facts: Facts) -> Finding:
    """PCI DSS 3.7.6: the one manual key component (backup shares) is split k >= 2."""
    splits = facts.backups.thresholds
    evidence = {"shamir_splits": [f"{k}-of-{n}" for k, n in splits[:LIST_LIMIT]]}
    if not splits:
        return Finding(
            Outcome.MANUAL,
            "no backup recorded: no key component leaves the service; custodians' "
            "procedures need an attestation",
            evidence,
        )
    single = [s for s in splits if s[0] < 2]
    return verdict(
        bool(single),
        f"{len(single)} backup(s) open with a single share (no split knowledge)",
        "every backup needs at least two custodians' shares to open",
        evidence,
    )


def disallowed_keys(facts: Facts) -> Finding:
    """PCI DSS 3.7.1: live keys use registered algorithms that policy allows."""
    bad = [k for k in facts.live_keys if k.status in ("disallowed", "unregistered")]
    statuses = Counter(f"{k.algorithm} ({k.status})" for k in facts.live_keys)
    evidence = {"algorithms": dict(sorted(statuses.items())), "disallowed_keys": refs(bad)}
    return verdict(
        bool(bad),
        f"{len(bad)} live key(s) use a disallowed or unregistered algorithm",
        "every live key was generated with an allowed algorithm (pairwise-tested at creation)",
        evidence,
    )


def outdated_keys(facts: Facts) -> Finding:
    """DORA RTS Art. 6(4): no live key still uses an algorithm policy has deprecated."""
    bad = [k for k in user_keys(facts) if k.status in _UNFIT]
    evidence = {
        "keys_to_migrate": refs(bad),
        "policy_status_overrides": dict(facts.policy.get("algorithm_status") or {}),
        "default_algorithms": dict(facts.policy.get("default_algorithms") or {}),
    }
    return verdict(
        bool(bad),
        f"{len(bad)} live key(s) use a deprecated, disallowed or unregistered algorithm",
        "no live key uses an algorithm that policy has deprecated or disallowed",
        evidence,
    )


def lifecycle(facts: Facts) -> Finding:
    """DORA RTS Art. 7(2): renewal, backup, retirement and destruction all run."""
    parts = [cryptoperiods(facts), destruction(facts), backups(facts), key_states(facts)]
    failed = [p.summary for p in parts if p.outcome is Outcome.FAIL]
    evidence = {
        "renewal": parts[0].evidence["overdue"],
        "destruction": parts[1].evidence,
        "backup": parts[2].evidence,
        "states": parts[3].evidence["states"],
    }
    return verdict(
        bool(failed),
        "; ".join(failed),
        "keys are renewed, backed up, retired and destroyed on time",
        evidence,
    )


def audit_integrity(facts: Facts) -> Finding:
    """The audit chain, its signed checkpoints and the witness's copy all verify."""
    audit = facts.audit
    evidence = {
        "valid": audit.valid,
        "events_verified": audit.events,
        "checkpoints_verified": audit.checkpoints_verified,
        "last_checkpoint_seq": audit.last_checkpoint_seq,
        "witnessed_seq": audit.witnessed_seq,
        "witness_configured": audit.witness_configured,
        "events_since_checkpoint": audit.uncheckpointed_events,
        "first_bad_event": audit.first_bad_event,
        "anchor_fingerprint": audit.anchor_fingerprint,
        "reason": audit.reason[:300],
    }
    return verdict(
        not audit.valid,
        f"the audit chain does not verify: {audit.reason[:200]}",
        f"{audit.events} events and {audit.checkpoints_verified} signed checkpoint(s) verify"
        + (f"; the witness holds event {audit.witnessed_seq}" if audit.witnessed_seq else "")
        + (
            ""
            if audit.checkpoints_verified
            else " (no signed checkpoint yet: the scheduler makes them)"
        )
        + ("" if audit.witness_configured else " (no witness outside the database)"),
        evidence,
    )


def selftests(facts: Facts) -> Finding:
    """Known-answer tests of every algorithm in use pass; none is under the self-test floor."""
    failed = {a: r for a, r in facts.selftests.items() if not _passed(r)}
    failed.update({a: f"disallowed: {why}" for a, why in facts.floor.items()})
    evidence = {"known_answer_tests": dict(sorted(facts.selftests.items())), "failures": failed}
    return verdict(
        bool(failed),
        f"{len(failed)} algorithm(s) failed a self-test: {', '.join(sorted(failed))}",
        f"{len(facts.selftests)} algorithm(s) in use passed their known-answer tests",
        evidence,
    )
