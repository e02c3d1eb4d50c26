"""The anomaly detector on seeded synthetic traffic: scenarios found, few false alarms,
explanations an operator can check, and the rules' edges."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from qrc.keys.audit.events import EventType
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.monitor.anomaly import AnomalyModel, DetectorSettings, NotTrained
from qrc.monitor.anomaly_features import Entity, Event, event_from_notice, group_windows
from qrc.monitor.anomaly_observer import AnomalyObserver
from qrc.monitor.anomaly_scenarios import SCENARIOS, START, TOKENS, evaluate, inject, normal_traffic

TRAIN_DAYS = 3
SETTINGS = DetectorSettings()


@pytest.fixture(scope="module")
def history() -> list[Event]:
    return normal_traffic(TRAIN_DAYS + 2, seed=11)


@pytest.fixture(scope="module")
def model(history: list[Event]) -> AnomalyModel:
    split = START + timedelta(days=TRAIN_DAYS)
    return AnomalyModel.train([e for e in history if e.at < split], SETTINGS)


def _day(history: list[Event], n: int) -> tuple[datetime, list[Event]]:
    start = START + timedelta(days=TRAIN_DAYS + n)
    return start, [e for e in history if start <= e.at < start + timedelta(days=1)]


def test_every_scenario_is_found_with_few_false_alarms() -> None:
    report = evaluate(seed=3, train_days=TRAIN_DAYS, test_days=3)
    found = {name: s["found"] for name, s in report["scenarios"].items()}
    # The attacks the detector is built for are found every time...
    for name in ("oracle", "export", "downgrade", "new_source"):
        assert found[name] == 3, (name, report)
    # ...time of day alone is weaker (docs/anomaly-detection.md says so), but found.
    assert found["off_hours"] >= 1, report
    assert report["false_alarms_per_day"] <= 2, report["false_alarm_examples"]
    assert report["precision"] >= 0.8, report


def test_normal_days_raise_few_alarms(model: AnomalyModel, history: list[Event]) -> None:
    alarms = []
    for n in (0, 1):
        _, events = _day(history, n)
        assert len(events) > 3000  # a real day of traffic was scored
        alarms += model.score(events)
    assert len(alarms) <= 4, [a.explanation for a in alarms]


def test_oracle_probing_is_explained(model: AnomalyModel, history: list[Event]) -> None:
    start, normal = _day(history, 0)
    web = TOKENS[0]
    at = start + timedelta(hours=10, seconds=5)
    probe = [
        Event(at + timedelta(milliseconds=200 * i), web.actor, "decrypt", "failure", web.key_id,
              web.sources[0])
        for i in range(240)
    ]  # fmt: skip
    found = model.score(sorted(normal + probe, key=lambda e: e.at))
    token = [a for a in found if a.entity == Entity("actor", web.actor)]
    assert token, [a.explanation for a in found]
    first = token[0]
    assert first.severity == "high"
    assert "failures" in first.reasons
    assert first.explanation.startswith("token web-frontend: ")
    # All 240 probes fall in the 10:00 window (48 s from 10:00:05), beside normal uses.
    assert first.start == start + timedelta(hours=10)
    assert first.failures >= 240 and first.count >= first.failures
    assert re.search(r": \d+ decryptions(, \d+ \w+)* in 60 s, 9\d% failed; usual \d+ per 60 s, "
                     r"0% failed$", first.explanation), first.explanation  # fmt: skip
    # The key's window is flagged too, and names the key.
    assert any(a.entity == Entity("key", web.key_id) for a in found)
    details = first.details()
    assert details["entity"] == web.actor and details["reasons"] == list(first.reasons)


def test_a_new_source_is_reported_once(model: AnomalyModel, history: list[Event]) -> None:
    start, _ = _day(history, 1)
    billing = TOKENS[1]
    fresh = "192.0.2.77"
    uses = [
        Event(start + timedelta(hours=11, minutes=m), billing.actor, "sign", "success",
              billing.key_id, fresh)
        for m in (0, 5, 30)
    ]  # fmt: skip
    found = model.score(uses)
    assert [a.reasons for a in found] == [("new_source",)]
    assert f"new source address {fresh}" in found[0].explanation
    assert found[0].severity == "medium"
    # A known address at the usual volume is not news.
    usual = Event(start + timedelta(hours=11), billing.actor, "sign", "success",
                  billing.key_id, billing.sources[0])  # fmt: skip
    assert model.score([usual]) == []


def test_a_token_with_no_history_is_judged_by_the_service_wide_profile(
    model: AnomalyModel, history: list[Event]
) -> None:
    start, _ = _day(history, 1)
    quiet = [
        Event(start + timedelta(hours=12, seconds=s), "token:tx:new-app", "encrypt",
              "success", "k_new", "10.9.9.9")
        for s in range(3)
    ]  # fmt: skip
    assert model.score(quiet) == []  # few uses, nothing to say; its address is not "new"
    flood = [
        Event(start + timedelta(hours=12, seconds=s / 10), "token:tx:new-app", "datakey",
              "success", "k_new", "10.9.9.9")
        for s in range(400)
    ]  # fmt: skip
    found = model.score(flood)
    assert any(a.entity.name == "token:tx:new-app" and "exports" in a.reasons for a in found)
    assert "usual (service-wide)" in found[0].explanation


def test_injections_are_seeded() -> None:
    day = START + timedelta(days=1)
    for scenario in SCENARIOS:
        first = inject(scenario, np.random.default_rng(5), day)
        again = inject(scenario, np.random.default_rng(5), day)
        assert first == again and first
    with pytest.raises(ValueError, match="unknown scenario"):
        inject("nonsense", np.random.default_rng(5), day)
    assert normal_traffic(1, seed=2)[:50] == normal_traffic(1, seed=2)[:50]


def test_too_little_history_is_refused() -> None:
    events = normal_traffic(1, seed=1)[:50]
    with pytest.raises(NotTrained, match="active windows of history"):
        AnomalyModel.train(events, DetectorSettings(min_windows=1000))


def test_windows_count_per_token_and_per_key() -> None:
    at = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    events = [
        Event(at, "token:a:x", "decrypt", "failure", "k_1", "10.0.0.1"),
        Event(at + timedelta(seconds=10), "token:a:x", "datakey", "success", "k_2", "10.0.0.2"),
        Event(at + timedelta(seconds=40), "token:a:x", "sign", "invalid", "k_1"),  # next window
    ]
    windows = {(w.entity.kind, w.entity.name, w.start.minute): w for w in group_windows(events, 60)}
    token = windows[("actor", "token:a:x", 0)]
    assert (token.count, token.failures, token.exports) == (2, 1, 1)
    assert token.sources == {"10.0.0.1", "10.0.0.2"}
    assert windows[("key", "k_1", 1)].failed_operations == {"sign": 1}
    assert len(windows) == 5


def test_the_observer_buffers_what_the_service_reports() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    observer = AnomalyObserver(max_events=3, clock=lambda: now)
    observer.key_used(KeyUse("decrypt", "failure", "token:a:x", "k_1", "ML-KEM-768", 1, "1.2.3.4"))
    observer.security_event(SecurityNotice(EventType.TLS_HANDSHAKE_REFUSED.value, "medium", "tls"))
    observer.security_event(SecurityNotice(EventType.ANOMALY.value, "high", "token:a:x"))  # ours
    observer.security_event(
        SecurityNotice(EventType.AUTHENTICATION_FAILURE.value, "medium", "5.6.7.8")
    )
    assert len(observer) == 3
    observer.key_used(KeyUse("encrypt", "success", "token:a:x", "k_1"))
    assert len(observer) == 3 and observer.dropped == 1  # bounded: the oldest went
    assert observer.drain(now) == []  # the window under way stays
    taken = observer.drain(now + timedelta(seconds=1))
    assert [(e.actor, e.operation) for e in taken] == [
        ("tls", "tls.tls_handshake_refused"),
        ("anonymous@5.6.7.8", "auth.failure"),
        ("token:a:x", "encrypt"),
    ]
    assert len(observer) == 0


def test_notices_map_to_their_audit_twins() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    classical = SecurityNotice(EventType.CLASSICAL_TLS_HANDSHAKE.value, "medium", "tls")
    assert event_from_notice(classical, at) == Event(
        at, "tls", "tls.classical_tls_handshake", "failure"
    )
    burst = SecurityNotice(EventType.DECRYPTION_FAILURE_BURST.value, "high", "token:a:x")
    assert event_from_notice(burst, at) is None


def test_a_tls_event_that_stands_for_a_burst_counts_as_the_burst() -> None:
    """The TLS telemetry writes one event for a burst, with the rest in ``left_out``: the
    detector must see 41 refused handshakes, not 1, or a downgrade flood would look quiet."""
    at = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    notice = SecurityNotice(
        EventType.TLS_HANDSHAKE_REFUSED.value,
        "medium",
        "tls",
        details={"detail": "no_shared_group", "left_out": 40},
    )
    event = event_from_notice(notice, at)
    assert event is not None and event.weight == 41
    (window,) = [w for w in group_windows([event], 60) if w.entity.kind == "actor"]
    assert (window.count, window.failures) == (41, 41)
    assert window.operations == {"tls.tls_handshake_refused": 41}
    odd = SecurityNotice(
        EventType.TLS_HANDSHAKE_REFUSED.value, "medium", "tls", details={"left_out": "x"}
    )
    assert event_from_notice(odd, at) == Event(at, "tls", "tls.tls_handshake_refused", "failure")
