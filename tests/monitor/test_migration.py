"""Migration off a deprecated algorithm: the dry run, the execution, resuming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qrc.crypto.registry import Kind, get_info
from qrc.keys.data_index import IndexEntry
from qrc.keys.policy import PolicyUpdate
from qrc.keys.service import KeyService
from qrc.monitor.migration import execute_migration, plan_migration
from tests.monitor.conftest import PASSPHRASE

ACTOR = "test:migration"
OLD = "ML-KEM-768"
# Another process runs a migration (at most LIMIT keys), armed to die at FAULT if given.
_RUN = """
import sys
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.faults import arm
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.monitor.migration import execute_migration
url, kek, passphrase, limit, fault = sys.argv[1:6]
arm(fault or None)
service = KeyService(Database(url), Keyring(LocalCustody.open(kek, passphrase)))
report = execute_migration(service, "ML-KEM-768", actor="worker", limit=int(limit))
print(len(report.rotated))
"""


def _populate(service: KeyService) -> dict[str, bytes]:
    keys = service.keys
    for name in ("alpha", "beta", "gone"):
        keys.create_key(name=name, purpose="encryption", algorithm=OLD, actor=ACTOR)
    keys.create_key(name="hybrid", purpose="encryption", algorithm="X25519MLKEM768", actor=ACTOR)
    keys.create_key(name="sig", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    keys.revoke("gone", "superseded", actor=ACTOR)
    service.data.register(
        [IndexEntry(f"alpha/{i}", "alpha", 1, "ledger") for i in range(3)]
        + [IndexEntry("hybrid/0", "hybrid", 1, "ledger")],
        actor=ACTOR,
    )
    sealed = {
        n: service.crypto.encrypt(n, n.encode(), actor=ACTOR).ciphertext for n in ("alpha", "beta")
    }
    service.update_policy(PolicyUpdate(algorithm_status={OLD: "deprecated"}), actor=ACTOR)
    return sealed


def test_dry_run_lists_keys_and_objects_and_changes_nothing(store: KeyService) -> None:
    _populate(store)

    plan = plan_migration(store, "ml-kem-768")

    assert plan.algorithm == OLD
    by_name = {key.name: key for key in plan.keys}
    assert sorted(by_name) == ["alpha", "beta", "gone"]
    assert [k.name for k in plan.to_rotate] == ["alpha", "beta"]
    assert by_name["alpha"].objects == 3 and plan.objects == 3
    assert by_name["alpha"].old_versions == [1]
    assert by_name["gone"].action.startswith("skip: a deactivated key")
    target = by_name["alpha"].target
    assert target is not None and target != OLD
    assert get_info(target).kind in (Kind.KEM, Kind.AEAD)
    assert store.keys.get_key("alpha").version == 1  # a dry run rotates nothing


def test_execute_in_batches_resumes_and_old_data_still_decrypts(store: KeyService) -> None:
    sealed = _populate(store)
    heard: list[str] = []

    first = execute_migration(
        store, OLD, actor=ACTOR, limit=1, progress=lambda key, what: heard.append(key.name)
    )
    assert [name for name, _, _ in first.rotated] == ["alpha"] and first.remaining == ["beta"]
    assert heard == ["alpha"]
    # Interrupted here (a crash, or the batch's end): running again picks up what is left.
    second = execute_migration(store, OLD, actor=ACTOR)
    assert [name for name, _, _ in second.rotated] == ["beta"] and not second.failed
    third = execute_migration(store, OLD, actor=ACTOR)
    assert third.rotated == [] and third.remaining == [] and third.failed == []

    for name in ("alpha", "beta"):
        info = store.keys.get_key(name)
        assert info.version == 2 and info.algorithm != OLD
        assert store.crypto.decrypt(name, sealed[name], actor=ACTOR) == name.encode()
    # The old versions remain live: the plan now asks for a rewrap, then retirement.
    left = {key.name: key for key in plan_migration(store, OLD).keys}
    assert left["alpha"].target is None and left["alpha"].action.startswith("rewrap")
    assert left["alpha"].objects == 3
    store.keys.set_min_decryption_version("alpha", 2, actor=ACTOR)
    store.keys.set_min_decryption_version("beta", 2, actor=ACTOR)
    assert [key.name for key in plan_migration(store, OLD).keys] == ["gone"]


def test_signing_keys_move_to_the_signing_default(store: KeyService) -> None:
    store.keys.create_key(name="sig", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    old = store.crypto.sign("sig", b"m", actor=ACTOR).signature
    store.update_policy(PolicyUpdate(algorithm_status={"ML-DSA-65": "deprecated"}), actor=ACTOR)

    report = execute_migration(store, "ML-DSA-65", actor=ACTOR)

    [(name, algorithm, version)] = report.rotated
    assert name == "sig" and version == 2 and get_info(algorithm).kind is Kind.SIGNATURE
    assert store.crypto.verify("sig", b"m", old, actor=ACTOR) == 1


def test_a_default_equal_to_the_algorithm_is_skipped(store: KeyService) -> None:
    store.keys.create_key(name="k", purpose="encryption", algorithm=OLD, actor=ACTOR)
    store.update_policy(PolicyUpdate(default_algorithms={"encryption": OLD}), actor=ACTOR)

    plan = plan_migration(store, OLD)

    assert plan.to_rotate == [] and plan.keys[0].action.startswith("skip: the default")
    assert execute_migration(store, OLD, actor=ACTOR).rotated == []
    assert store.keys.get_key("k").version == 1


def _run(
    store: KeyService, kek: Path, limit: int, fault: str = ""
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _RUN, store.db.url, str(kek), PASSPHRASE, str(limit), fault]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_crash_mid_migration_loses_nothing_and_resumes(store: KeyService, tmp_path: Path) -> None:
    sealed = _populate(store)
    kek = tmp_path / "kek.sealed"

    done = _run(store, kek, limit=1)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    crashed = _run(store, kek, limit=5, fault="rotate-after-insert")
    assert crashed.returncode == 70, crashed.stderr  # died inside beta's rotation

    assert store.keys.count_versions("alpha") == 2 and store.keys.count_versions("beta") == 1
    resumed = execute_migration(store, OLD, actor=ACTOR)
    assert [name for name, _, _ in resumed.rotated] == ["beta"]
    for name in ("alpha", "beta"):
        assert store.keys.count_versions(name) == 2
        assert store.keys.get_key(name).algorithm != OLD
        assert store.crypto.decrypt(name, sealed[name], actor=ACTOR) == name.encode()
