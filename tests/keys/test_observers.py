"""Observers hear of every audited use and security event, after commit, and cannot break it."""

from __future__ import annotations

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.keys.audit.events import DECRYPTION_BURST_THRESHOLD, EventType
from qrc.keys.audit.log import AuditWriteError
from qrc.keys.errors import KeyStateError
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.keys.service import KeyService
from tests.keys.conftest import refuse_audit_writes


class Recorder:
    def __init__(self) -> None:
        self.uses: list[KeyUse] = []
        self.notices: list[SecurityNotice] = []

    def key_used(self, use: KeyUse) -> None:
        self.uses.append(use)

    def security_event(self, notice: SecurityNotice) -> None:
        self.notices.append(notice)


class Broken:
    def key_used(self, use: KeyUse) -> None:
        raise RuntimeError("observer down")

    def security_event(self, notice: SecurityNotice) -> None:
        raise RuntimeError("observer down")


@pytest.fixture
def recorder(service: KeyService) -> Recorder:
    recorder = Recorder()
    service.observers.add(Broken())  # first, so that the recorder hears despite it
    service.observers.add(recorder)
    return recorder


def test_uses_successes_failures_and_refusals(service: KeyService, recorder: Recorder) -> None:
    info = service.keys.create_key(name="k", purpose="encryption", actor="alice")
    sealed = service.crypto.encrypt("k", b"x", actor="bob", context=b"c")
    with pytest.raises(DecryptionError):
        service.crypto.decrypt("k", sealed.ciphertext, actor="eve", context=b"other")
    service.keys.suspend("k", actor="alice")
    with pytest.raises(KeyStateError):
        service.keys.suspend("k", actor="alice")
    seen = [(u.operation, u.result, u.actor) for u in recorder.uses]
    assert seen == [
        ("create", "success", "alice"),
        ("encrypt", "success", "bob"),
        ("decrypt", "failure", "eve"),
        ("suspend", "success", "alice"),
        ("suspend", "denied", "alice"),
    ]
    assert {u.key_id for u in recorder.uses} == {info.id}
    assert {u.algorithm for u in recorder.uses} == {info.algorithm}


def test_nothing_is_reported_for_what_did_not_commit(
    service: KeyService, recorder: Recorder
) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    recorder.uses.clear()
    refuse_audit_writes(service.db)
    with pytest.raises(AuditWriteError):
        service.crypto.encrypt("k", b"x", actor="t")
    assert recorder.uses == []


def test_the_burst_detector_is_an_observer(service: KeyService, recorder: Recorder) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    sealed = service.crypto.encrypt("k", b"x", actor="t", context=b"right")
    for _ in range(DECRYPTION_BURST_THRESHOLD):
        with pytest.raises(DecryptionError):
            service.crypto.decrypt("k", sealed.ciphertext, actor="mallory", context=b"wrong")
    bursts = [n for n in recorder.notices if n.event_type == EventType.DECRYPTION_FAILURE_BURST]
    assert len(bursts) == 1 and bursts[0].source == "mallory"
    stored = service.audit.security_events(event_type=EventType.DECRYPTION_FAILURE_BURST.value)
    assert len(stored) == 1


def test_security_events_reach_observers(service: KeyService, recorder: Recorder) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    service.keys.revoke("k", "key_compromise", actor="admin")
    service.audit.record_auth_failure("203.0.113.9", "invalid", "/api")
    kinds = [n.event_type for n in recorder.notices]
    assert kinds == [EventType.KEY_COMPROMISE.value, EventType.AUTHENTICATION_FAILURE.value]
