"""Policy: plan, apply, persist; other processes pick up algorithm status changes."""

from __future__ import annotations

import pytest

from qrc.crypto.errors import AlgorithmNotAllowed
from qrc.crypto.registry import BUILT_IN_STATUS, Status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import AlgorithmPolicy, PolicyUpdate
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database


class Statuses(dict[str, Status]):
    """Where a test's policy writes statuses: its own, not the process-wide registry."""


@pytest.fixture
def statuses() -> Statuses:
    return Statuses(BUILT_IN_STATUS)


@pytest.fixture
def service(db: Database, custody: LocalCustody, statuses: Statuses) -> KeyService:
    return KeyService(db, Keyring(custody), policy=AlgorithmPolicy(apply=statuses.__setitem__))


def test_plan_lists_affected_keys_and_apply_changes_defaults(
    service: KeyService, statuses: Statuses
) -> None:
    service.keys.create_key(name="old", purpose="encryption", algorithm="ML-KEM-512", actor="t")
    service.keys.create_key(name="new", purpose="encryption", actor="t")
    update = PolicyUpdate(
        default_algorithms={"encryption": "ML-KEM-1024"},
        algorithm_status={"ML-KEM-512": "deprecated"},
        tls_mode="pq-only",
    )
    plan = service.update_policy(update, actor="admin", dry_run=True)
    assert [k.name for k in plan.affected_keys] == ["old"]
    assert statuses["ML-KEM-512"] is Status.ACTIVE  # a plan changes nothing
    service.update_policy(update, actor="admin")
    assert statuses["ML-KEM-512"] is Status.DEPRECATED
    assert (
        service.keys.create_key(name="next", purpose="encryption", actor="t").algorithm
        == "ML-KEM-1024"
    )
    with pytest.raises(InvalidRequest, match="deprecated"):
        service.keys.create_key(name="x", purpose="encryption", algorithm="ML-KEM-512", actor="t")
    sealed = service.crypto.encrypt(
        "old", b"still usable", actor="t"
    )  # deprecated: existing keys work
    assert service.crypto.decrypt("old", sealed.ciphertext, actor="t") == b"still usable"


def test_disallowed_stops_every_use_and_reaches_other_processes(
    service: KeyService, db: Database, custody: LocalCustody
) -> None:
    service.keys.create_key(name="k", purpose="encryption", algorithm="HQC-128", actor="t")
    sealed = service.crypto.encrypt("k", b"data", actor="t")
    # Another process, with its own policy, that has read the store before the change.
    other = KeyService(db, Keyring(custody), policy=AlgorithmPolicy(apply=Statuses().__setitem__))
    assert other.crypto.decrypt("k", sealed.ciphertext, actor="t") == b"data"
    service.update_policy(PolicyUpdate(algorithm_status={"HQC-128": "disallowed"}), actor="admin")
    with pytest.raises(AlgorithmNotAllowed):
        service.crypto.decrypt("k", sealed.ciphertext, actor="t")
    other.policy.refresh_seconds = 0.0  # its next look at the store is now, not in 5 s
    with pytest.raises(AlgorithmNotAllowed):
        other.crypto.decrypt("k", sealed.ciphertext, actor="t")  # refresh() picked it up


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
    with pytest.raises(InvalidRequest):
        service.update_policy(update, actor="admin", dry_run=True)


def test_a_failed_selftest_is_a_floor_no_policy_update_raises(
    service: KeyService, statuses: Statuses
) -> None:
    """An algorithm disallowed by its power-on self-test stays disallowed (security defect)."""
    service.keys.create_key(name="k", purpose="encryption", algorithm="HQC-128", actor="t")
    service.policy.disallow(["HQC-128"], "power-on self-test failed")
    assert statuses["HQC-128"] is Status.DISALLOWED
    # An unrelated policy update, then one that names the algorithm itself.
    service.update_policy(PolicyUpdate(algorithm_status={"ML-KEM-512": "deprecated"}), actor="a")
    assert statuses["HQC-128"] is Status.DISALLOWED
    service.update_policy(PolicyUpdate(algorithm_status={"HQC-128": "active"}), actor="admin")
    assert statuses["HQC-128"] is Status.DISALLOWED
    assert service.policy.status("HQC-128") is Status.DISALLOWED
    with pytest.raises(AlgorithmNotAllowed, match="self-test"):
        service.crypto.encrypt("k", b"data", actor="t")
    with pytest.raises(InvalidRequest):
        service.keys.create_key(name="new", purpose="encryption", algorithm="HQC-128", actor="t")
    with pytest.raises(InvalidRequest):
        service.update_policy(
            PolicyUpdate(default_algorithms={"encryption": "HQC-128"}), actor="admin"
        )
    # A refresh from the store (another process's update) cannot lift it either.
    service.policy.refresh_seconds = 0.0
    with service.db.session() as session:
        service.policy.refresh(session, force=True)
    assert statuses["HQC-128"] is Status.DISALLOWED


def test_policy_of_one_service_leaves_the_registry_alone(
    service: KeyService, statuses: Statuses
) -> None:
    from qrc.crypto.registry import REGISTRY

    service.update_policy(PolicyUpdate(algorithm_status={"HQC-128": "disallowed"}), actor="a")
    assert statuses["HQC-128"] is Status.DISALLOWED
    assert REGISTRY["HQC-128"].status is BUILT_IN_STATUS["HQC-128"]


def test_the_self_test_floor_holds_for_the_whole_process() -> None:
    """A second policy of the process (another service, a tool) cannot lift it either.

    Run in a child process: the floor is process-wide by design, and must not leak into the
    other tests of this one.
    """
    import subprocess
    import sys

    script = (
        "from qrc.crypto.registry import REGISTRY, Status\n"
        "from qrc.keys.policy import AlgorithmPolicy\n"
        "AlgorithmPolicy().disallow(['HQC-128'], 'power-on self-test failed')\n"
        "other = AlgorithmPolicy()\n"
        "assert other.status('HQC-128') is Status.DISALLOWED, 'before any refresh'\n"
        "other._set_overrides({'HQC-128': 'active'})\n"
        "assert other.status('HQC-128') is Status.DISALLOWED, 'after an override'\n"
        "assert REGISTRY['HQC-128'].status is Status.DISALLOWED, 'in the registry'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
