"""Policy: plan, apply, persist; other processes pick up algorithm status changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qrc.crypto.errors import AlgorithmNotAllowed
from qrc.crypto.registry import REGISTRY, Status
from qrc.keys import policy
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import PolicyUpdate, apply_update, plan_update
from qrc.keys.service import KeyService


@pytest.fixture(autouse=True)
def restore_registry() -> Iterator[None]:
    yield
    policy._apply_statuses({})
    policy._applied_at = None


def test_plan_lists_affected_keys_and_apply_changes_defaults(service: KeyService) -> None:
    service.create_key(name="old", purpose="encryption", algorithm="ML-KEM-512", actor="t")
    service.create_key(name="new", purpose="encryption", actor="t")
    update = PolicyUpdate(
        default_algorithms={"encryption": "ML-KEM-1024"},
        algorithm_status={"ML-KEM-512": "deprecated"},
        tls_mode="pq-only",
    )
    with service.db.session() as session:
        plan = plan_update(session, update)
    assert [k.name for k in plan.affected_keys] == ["old"]
    assert REGISTRY["ML-KEM-512"].status is Status.ACTIVE  # a plan changes nothing
    with service.db.session() as session:
        apply_update(session, update, actor="admin")
    assert REGISTRY["ML-KEM-512"].status is Status.DEPRECATED
    assert (
        service.create_key(name="next", purpose="encryption", actor="t").algorithm == "ML-KEM-1024"
    )
    with pytest.raises(InvalidRequest, match="deprecated"):
        service.create_key(name="x", purpose="encryption", algorithm="ML-KEM-512", actor="t")
    sealed = service.encrypt("old", b"still usable", actor="t")  # deprecated: existing keys work
    assert service.decrypt("old", sealed.ciphertext, actor="t") == b"still usable"


def test_disallowed_stops_every_use_and_reaches_other_processes(service: KeyService) -> None:
    service.create_key(name="k", purpose="encryption", algorithm="HQC-128", actor="t")
    sealed = service.encrypt("k", b"data", actor="t")
    with service.db.session() as session:
        apply_update(session, PolicyUpdate(algorithm_status={"HQC-128": "disallowed"}), "admin")
    policy._apply_statuses({})  # as if this were another process, which has not seen it yet
    policy._applied_at, policy._checked = None, 0.0
    with pytest.raises(AlgorithmNotAllowed):
        service.decrypt("k", sealed.ciphertext, actor="t")  # refresh() picked it up


@pytest.mark.parametrize(
    "update",
    [
        PolicyUpdate(default_algorithms={"signing": "ML-KEM-768"}),
        PolicyUpdate(default_algorithms={"storage": "ML-KEM-768"}),
        PolicyUpdate(algorithm_status={"ML-KEM-768": "retired"}),
        PolicyUpdate(algorithm_status={"NOPE": "active"}),
        PolicyUpdate(tls_mode="anything-goes"),
        PolicyUpdate(
            default_algorithms={"encryption": "HQC-128"}, algorithm_status={"HQC-128": "disallowed"}
        ),
    ],
)
def test_invalid_updates(service: KeyService, update: PolicyUpdate) -> None:
    with service.db.session() as session, pytest.raises(InvalidRequest):
        plan_update(session, update)
