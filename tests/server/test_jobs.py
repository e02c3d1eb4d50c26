"""The scheduler pass: key jobs, and a checkpoint only when the audit chain moved."""

from __future__ import annotations

from qrc.keys.service import KeyService
from qrc.server.selftests import run_selftests


def test_checkpoints_only_when_the_chain_moved(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    first = service.run_jobs()
    assert first["checkpoint_seq"] is not None
    assert service.run_jobs()["checkpoint_seq"] is None  # idle: no new signature
    assert service.run_jobs()["checkpoint_seq"] is None
    service.crypto.encrypt("k", b"x", actor="t")
    moved = service.run_jobs()
    assert moved["checkpoint_seq"] is not None and moved["checkpoint_seq"] > first["checkpoint_seq"]
    assert service.audit.verify().valid


def test_selftests_pass_and_leave_every_algorithm_allowed(service: KeyService) -> None:
    assert run_selftests(service.policy) == []
    assert service.policy.floor == {}
