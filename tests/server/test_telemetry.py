"""Classical and refused handshakes in the audit trail (``qrc.server.telemetry``), with a
real key service: a burst is one event at once and one with its count when the window
closes (even if nothing follows), or one event per handshake with a window of 0."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qrc.api.metrics import Metrics
from qrc.keys.service import KeyService
from qrc.server.telemetry import HandshakeTelemetry
from tests.data.conftest import make_service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    svc = make_service(tmp_path / "svc")
    yield svc
    svc.close()


def _events(service: KeyService, kind: str) -> list[dict[str, object]]:
    return [e.details for e in service.audit.security_events(event_type=kind, limit=1000)]


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def test_a_burst_is_one_event_then_its_count_when_the_window_closes(
    service: KeyService,
) -> None:
    telemetry = HandshakeTelemetry(service, Metrics(), window=0.5)
    for _ in range(5):
        telemetry.handshake("X25519", "TLS_AES_256_GCM_SHA384")
    telemetry.failure("no_shared_group")
    _until(lambda: len(_events(service, "classical_tls_handshake")) == 2)
    first, summary = sorted(
        _events(service, "classical_tls_handshake"), key=lambda d: int(d.get("left_out", 0))
    )
    assert first == {"detail": "X25519"}
    assert summary == {"detail": "X25519", "left_out": 4}  # 1 + 4: every handshake counted
    assert _events(service, "tls_handshake_refused") == [{"detail": "no_shared_group"}]
    time.sleep(0.7)  # another window passes with nothing in it: nothing more is written
    assert len(_events(service, "classical_tls_handshake")) == 2


def test_a_window_of_zero_writes_every_handshake(service: KeyService) -> None:
    telemetry = HandshakeTelemetry(service, Metrics(), window=0)
    for _ in range(3):
        telemetry.handshake("X25519", "TLS_AES_256_GCM_SHA384")
    _until(lambda: len(_events(service, "classical_tls_handshake")) == 3)
    assert all("left_out" not in d for d in _events(service, "classical_tls_handshake"))
