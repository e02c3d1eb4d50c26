"""Synthetic traffic and injected attacks, to measure the anomaly detector.

:func:`normal_traffic` makes days of seeded, varied use: tokens with day/night rhythms,
hours of triple traffic, a job that moves to a new address, a nightly backup burst, a CI
deployer's bursts of data keys, a few failed decryptions and invalid signatures, classical
TLS handshakes from old clients and stray failed logins.
:func:`evaluate` trains on the first days, injects attacks into the following days and reports
precision (the flagged windows that hold attack events), recall (the attacks found) and false
alarms per day; each test day gets one attack of every scenario:

- ``oracle``: decryption-oracle probing, many failing decryptions with a real token;
- ``export``: bulk export, many data-key requests;
- ``downgrade``: a burst of classical and refused TLS handshakes;
- ``new_source``: a token used, at its usual volume, from an address it never used;
- ``off_hours``: a daytime-only token used at night, at its usual volume.

Everything is made with ``numpy.random.default_rng(seed)``: one seed, one result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from qrc.monitor.anomaly import Anomaly, AnomalyModel, DetectorSettings
from qrc.monitor.anomaly_features import Event

__all__ = ["SCENARIOS", "evaluate", "inject", "normal_traffic"]

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
SCENARIOS = ("oracle", "export", "downgrade", "new_source", "off_hours")
_Rng = np.random.Generator


@dataclass(frozen=True)
class _Token:
    actor: str
    key_id: str
    day_rate: float  # events per minute, 08:00-20:00 UTC
    night_rate: float
    operations: tuple[tuple[str, float], ...]  # operation, share
    failure_share: float
    sources: tuple[str, ...]


TOKENS = (
    _Token("token:t1:web-frontend", "k_web", 4.0, 0.4, (("encrypt", 0.6), ("decrypt", 0.4)),
           0.005, ("10.0.1.10", "10.0.1.11")),
    _Token("token:t2:billing", "k_billing", 2.0, 0.0, (("sign", 0.7), ("verify", 0.3)),
           0.01, ("10.0.2.5",)),
    _Token("token:t5:reports", "k_reports", 0.3, 0.2, (("decrypt", 1.0),),
           0.0, ("10.0.5.1", "10.0.5.2", "10.0.5.3")),
    _Token("token:t6:ledger", "k_ledger", 1.0, 0.5, (("encrypt", 0.5), ("decrypt", 0.5)),
           0.002, ("10.0.6.9",)),
)  # fmt: skip
CI = _Token("token:t3:ci-deployer", "k_ci", 0.0, 0.0, (("datakey", 0.8), ("encrypt", 0.2)),
            0.0, ("10.0.3.7",))  # fmt: skip
BACKUP = _Token("token:t4:nightly-backup", "k_backup", 0.0, 0.0, (("encrypt", 1.0),),
                0.0, ("10.0.4.2",))  # fmt: skip


def _emit(rng: _Rng, token: _Token, minute: datetime, n: int, out: list[Event]) -> None:
    ops = [op for op, _ in token.operations]
    shares = [share for _, share in token.operations]
    for _ in range(n):
        op = str(rng.choice(ops, p=shares))
        failed = rng.random() < token.failure_share and op in ("decrypt", "verify")
        result = ("failure" if op == "decrypt" else "invalid") if failed else "success"
        at = minute + timedelta(seconds=float(rng.uniform(0, 60)))
        source = str(rng.choice(token.sources))
        out.append(Event(at, token.actor, op, result, token.key_id, source))


def normal_traffic(days: int, seed: int, start: datetime = START) -> list[Event]:
    """``days`` of ordinary use from ``start``, sorted by time."""
    rng = np.random.default_rng(seed)
    out: list[Event] = []
    for day in range(days):
        base = start + timedelta(days=day)
        ci_minutes = set(rng.choice(np.arange(9 * 60, 18 * 60), size=4, replace=False).tolist())
        # Honest trouble: some days the web front end has an hour of triple traffic, and
        # the reports job moves to an address it never used (DHCP, a redeploy).
        spike_hour = int(rng.integers(9, 19)) if rng.random() < 0.5 else None
        moved = rng.random() < 0.3
        reports = TOKENS[2]
        if moved:
            fresh = f"10.0.5.{int(rng.integers(10, 250))}"
            reports = _Token(reports.actor, reports.key_id, reports.day_rate, reports.night_rate,
                             reports.operations, reports.failure_share, (fresh,))  # fmt: skip
        for m in range(24 * 60):
            minute = base + timedelta(minutes=m)
            daytime = 8 <= minute.hour < 20
            for token in TOKENS:
                rate = token.day_rate if daytime else token.night_rate
                if token is TOKENS[0] and minute.hour == spike_hour:
                    rate *= 3
                using = reports if token is TOKENS[2] and minute.hour >= 12 else token
                _emit(rng, using, minute, int(rng.poisson(rate)), out)
            if m in ci_minutes:  # a deployment: a burst of data keys
                _emit(rng, CI, minute, int(rng.integers(10, 30)), out)
            if 2 * 60 <= m < 2 * 60 + 10:  # the nightly backup
                _emit(rng, BACKUP, minute, int(rng.poisson(30)), out)
            for _ in range(int(rng.poisson(0.1))):  # an old client, a classical handshake
                at = minute + timedelta(seconds=float(rng.uniform(0, 60)))
                out.append(Event(at, "tls", "tls.classical_tls_handshake", "failure"))
            if rng.random() < 1 / 120:  # a stray failed login from somewhere
                at = minute + timedelta(seconds=float(rng.uniform(0, 60)))
                actor = f"anonymous@198.51.100.{int(rng.integers(1, 250))}"
                out.append(Event(at, actor, "auth.failure", "failure"))
    out.sort(key=lambda e: e.at)
    return out


def _burst(
    rng: _Rng, at: datetime, seconds: float, n: int, make: Callable[[datetime], Event]
) -> list[Event]:
    return [make(at + timedelta(seconds=float(rng.uniform(0, seconds)))) for _ in range(n)]


def inject(scenario: str, rng: _Rng, day: datetime) -> list[Event]:
    """One attack of ``scenario`` at a random time of ``day``."""
    if scenario == "off_hours":  # billing is never used at night
        at = day + timedelta(hours=float(rng.uniform(0, 6)))
    elif scenario == "new_source":  # in billing's hours: only the address is new
        at = day + timedelta(hours=float(rng.uniform(9, 19)))
    else:
        at = day + timedelta(hours=float(rng.uniform(0, 24)))
    seconds = float(rng.uniform(30, 150))
    web, billing, reports = TOKENS[0], TOKENS[1], TOKENS[2]
    if scenario == "oracle":
        n = int(rng.integers(40, 300))
        source = web.sources[0]

        def probe(t: datetime) -> Event:
            result = "failure" if rng.random() < 0.95 else "success"
            return Event(t, web.actor, "decrypt", result, web.key_id, source)

        return _burst(rng, at, seconds, n, probe)
    if scenario == "export":
        n = int(rng.integers(60, 400))
        source = reports.sources[0]
        return _burst(
            rng, at, seconds, n, lambda t: Event(t, reports.actor, "datakey", "success",
                                                 reports.key_id, source)
        )  # fmt: skip
    if scenario == "downgrade":
        n = int(rng.integers(20, 120))

        def handshake(t: datetime) -> Event:
            op = (
                "tls.classical_tls_handshake" if rng.random() < 0.5 else "tls.tls_handshake_refused"
            )
            return Event(t, "tls", op, "failure")

        return _burst(rng, at, seconds, n, handshake)
    if scenario == "new_source":
        n = int(rng.integers(2, 6))
        source = f"203.0.113.{int(rng.integers(1, 250))}"
        return _burst(
            rng, at, 50, n, lambda t: Event(t, billing.actor, "sign", "success", billing.key_id,
                                            source)
        )  # fmt: skip
    if scenario == "off_hours":
        n = int(rng.integers(4, 10))
        return _burst(
            rng, at, 50, n, lambda t: Event(t, billing.actor, "sign", "success", billing.key_id,
                                            billing.sources[0])
        )  # fmt: skip
    raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")


def evaluate(
    *,
    seed: int = 7,
    train_days: int = 7,
    test_days: int = 10,
    settings: DetectorSettings | None = None,
) -> dict[str, Any]:
    """Train on ``train_days`` of normal traffic, then score ``test_days`` more, each with one
    attack of every scenario injected at a random time.

    Precision is the share of flagged windows that hold attack events; recall the share of
    attacks with at least one flagged window; false alarms are the flagged windows without
    attack events, per test day.
    """
    settings = settings or DetectorSettings()
    history = normal_traffic(train_days + test_days, seed)
    first_test = START + timedelta(days=train_days)
    model = AnomalyModel.train([e for e in history if e.at < first_test], settings)
    rng = np.random.default_rng(seed + 1)
    found = dict.fromkeys(SCENARIOS, 0)
    true_positive = false_positive = 0
    examples: list[str] = []
    false_reasons: Counter[str] = Counter()
    for day in range(test_days):
        start = first_test + timedelta(days=day)
        normal = [e for e in history if start <= e.at < start + timedelta(days=1)]
        attacks = {scenario: inject(scenario, rng, start) for scenario in SCENARIOS}
        flagged = model.score(sorted(normal + [e for a in attacks.values() for e in a],
                                     key=lambda e: e.at))  # fmt: skip
        hit: set[str] = set()
        for anomaly in flagged:
            holds = [name for name, events in attacks.items() if _holds(anomaly, events, model)]
            hit.update(holds)
            if holds:
                true_positive += 1
            else:
                false_positive += 1
                examples.append(anomaly.explanation)
                false_reasons.update(anomaly.reasons)
        for name in hit:
            found[name] += 1
    flagged_total = true_positive + false_positive
    return {
        "seed": seed,
        "train_days": train_days,
        "test_days": test_days,
        "window_seconds": settings.window_seconds,
        "contamination": settings.contamination,
        "trained_windows": model.trained_windows,
        "trained_events": model.trained_events,
        "scenarios": {
            name: {"instances": test_days, "found": n, "recall": n / test_days}
            for name, n in found.items()
        },
        "recall": sum(found.values()) / (test_days * len(SCENARIOS)),
        "precision": true_positive / flagged_total if flagged_total else 1.0,
        "flagged_windows": flagged_total,
        "false_alarms": false_positive,
        "false_alarms_per_day": false_positive / test_days,
        "false_alarm_examples": examples[:5],
        "false_alarm_reasons": dict(false_reasons),
    }


def _holds(anomaly: Anomaly, events: list[Event], model: AnomalyModel) -> bool:
    """Whether the flagged window holds at least one of ``events``."""
    end = anomaly.start + timedelta(seconds=model.settings.window_seconds)
    entity = anomaly.entity
    for event in events:
        if not anomaly.start <= event.at < end:
            continue
        if (entity.kind == "actor" and event.actor == entity.name) or (
            entity.kind == "key" and event.key_id == entity.name
        ):
            return True
    return False
