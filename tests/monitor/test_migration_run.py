"""The whole migration off an algorithm, as a library: the plan (keys, objects by type,
certificates, channels, work from benchmarks), the dry run, the run (rotate to the new
algorithm, rewrap the application's rows, reissue CA leaves, tighten TLS), its audit trail,
and a real process killed with SIGKILL mid-run whose rerun finishes the work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import select

from qrc.crypto.registry import Kind, Status, get_info
from qrc.data.format import from_text, parse, to_text
from qrc.data.rewrap import SqlTarget
from qrc.data.sdk import DataEncryptor, integrity_hash
from qrc.keys.audit.events import query_events
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import PolicyUpdate
from qrc.keys.service import KeyService
from qrc.keys.store.models import AuditEvent
from qrc.monitor.migration_plan import plan_algorithm_migration
from qrc.monitor.migration_run import run_algorithm_migration, update_qrc_algorithms_and_keys
from qrc.transit.authority import PrivateCA, ServiceCAKeys
from tests.monitor.conftest import PASSPHRASE

ACTOR = "test:migration"
OLD = "ML-KEM-768"
REPO = Path(__file__).resolve().parents[2]
ROWS = {"alpha": 4, "beta": 2}


def _restarted(store: KeyService, tmp_path: Path) -> KeyService:
    """The same store and policy as a freshly started process sees them (no snapshots)."""
    keyring = Keyring(LocalCustody.open(tmp_path / "kek.sealed", PASSPHRASE))
    return KeyService(store.db, keyring, min_destruction_delay=timedelta(0), policy=store.policy)


def _context(key: str, row: int) -> bytes:
    return f"{key}/{row}".encode()


def _populate(service: KeyService, app_db: Path) -> None:
    """Two keys under OLD with rows in an application database, one hybrid key, one signer."""
    keys = service.keys
    for name in ROWS:
        keys.create_key(name=name, purpose="encryption", algorithm=OLD, actor=ACTOR)
    keys.create_key(name="hybrid", purpose="encryption", algorithm="X25519MLKEM768", actor=ACTOR)
    keys.create_key(name="sig", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    with sqlite3.connect(app_db) as db:
        db.execute("CREATE TABLE secrets (id TEXT PRIMARY KEY, value TEXT)")
    entries = []
    with DataEncryptor.local(service) as sdk, sqlite3.connect(app_db) as db:
        for name, count in ROWS.items():
            for row in range(count):
                blob = sdk.encrypt(name, f"{name}-{row}".encode(), context=_context(name, row))
                db.execute("INSERT INTO secrets VALUES (?, ?)", (f"{name}-{row}", to_text(blob)))
                location = f"sql:secrets/value/{name}-{row}"
                data_type = "ledger" if row % 2 else "invoice"
                version = parse(blob).key_version
                entries.append(
                    IndexEntry(
                        f"secrets/{name}-{row}",
                        name,
                        version,
                        data_type,
                        location=location,
                        integrity_hash=integrity_hash(blob),
                    )
                )
    service.data.register(entries, actor=ACTOR)
    service.update_policy(PolicyUpdate(algorithm_status={OLD: "deprecated"}), actor=ACTOR)


def _values(service: KeyService, app_db: Path) -> dict[str, bytes]:
    with sqlite3.connect(app_db) as db:
        rows = db.execute("SELECT id, value FROM secrets ORDER BY id").fetchall()
    out = {}
    with DataEncryptor.local(service) as sdk:
        for ident, value in rows:
            name, row = ident.rsplit("-", 1)
            out[ident] = sdk.decrypt(from_text(value), context=_context(name, int(row)))
    return out


def _versions(service: KeyService, app_db: Path) -> dict[str, int]:
    with sqlite3.connect(app_db) as db:
        rows = db.execute("SELECT id, value FROM secrets").fetchall()
    return {ident: parse(from_text(value)).key_version for ident, value in rows}


def _audit_types(service: KeyService) -> list[str]:
    with service.db.read_session() as session:
        return list(session.scalars(select(AuditEvent.event_type).order_by(AuditEvent.seq)))


BENCH = {
    "ML-KEM-768": {"ops_per_second": {"keygen": 1000.0, "decapsulate": 2000.0}},
    "X25519MLKEM768": {"ops_per_second": {"keygen": 500.0, "encapsulate": 400.0}},
}


def test_plan_counts_objects_by_type_and_estimates_from_benchmarks(
    store: KeyService, tmp_path: Path
) -> None:
    _populate(store, tmp_path / "app.db")
    store.store_benchmarks(BENCH, actor=ACTOR)

    plan = plan_algorithm_migration(store, "ml-kem-768")

    assert (plan.algorithm, plan.status, plan.kind) == (OLD, "deprecated", "kem")
    assert [k.name for k in plan.keys.to_rotate] == ["alpha", "beta"]
    assert {k.target for k in plan.keys.to_rotate} == {"X25519MLKEM768"}
    groups = {(g.key_name, g.key_version, g.data_type): g.objects for g in plan.objects}
    assert groups == {
        ("alpha", 1, "invoice"): 2, ("alpha", 1, "ledger"): 2,
        ("beta", 1, "invoice"): 1, ("beta", 1, "ledger"): 1,
    }  # fmt: skip
    # Two rotations at 500 keygen/s; six objects: decapsulate under OLD, encapsulate under
    # the target, at the stored rates. Nothing unmeasured.
    assert plan.estimate.steps["rotate_keys"] == pytest.approx(2 / 500)
    assert plan.estimate.steps["rewrap_objects"] == pytest.approx(6 * (1 / 2000 + 1 / 400))
    assert plan.estimate.unmeasured == []
    # ML-KEM-768 is a TLS group every mode offers: a manual channel, not an automatic one.
    [channel] = plan.channels
    assert channel.setting == "groups" and channel.current == "MLKEM768" and not channel.automatic
    assert plan.counts["keys_to_rotate"] == 2 and plan.counts["objects"] == 6
    with pytest.raises(InvalidRequest):
        plan_algorithm_migration(store, "ROT13")


def test_dry_run_changes_nothing(store: KeyService, tmp_path: Path) -> None:
    app_db = tmp_path / "app.db"
    _populate(store, app_db)
    audit_before = _audit_types(store)

    run = run_algorithm_migration(
        store, OLD, actor=ACTOR, dry_run=True, rewrap_targets={"sql": SqlTarget(_engine(app_db))}
    )

    assert run.dry_run and not run.complete and not run.changed
    assert any(p.startswith("rotate key alpha to X25519MLKEM768") for p in run.pending)
    assert any("2 invoice object(s) of key alpha v1" in p for p in run.pending)
    assert _audit_types(store) == audit_before
    assert store.keys.get_key("alpha").version == 1
    assert set(_versions(store, app_db).values()) == {1}


def _engine(app_db: Path):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(f"sqlite:///{app_db}")


def test_run_moves_keys_to_the_new_algorithm_rewraps_rows_and_audits(
    store: KeyService, tmp_path: Path
) -> None:
    app_db = tmp_path / "app.db"
    _populate(store, app_db)
    before = _values(store, app_db)
    heard: list[tuple[str, int, int]] = []
    engine = _engine(app_db)

    run = run_algorithm_migration(
        store, OLD, actor=ACTOR, rewrap_targets={"sql": SqlTarget(engine)},
        progress=lambda step, done, total, what: heard.append((step, done, total)),
    )  # fmt: skip

    assert run.complete, (run.pending, run.failed)
    assert [(r["key"], r["algorithm"], r["version"]) for r in run.rotated] == [
        ("alpha", "X25519MLKEM768", 2), ("beta", "X25519MLKEM768", 2),
    ]  # fmt: skip
    assert sum(r["rewrapped"] for r in run.rewrapped) == 6
    assert ("keys", 2, 2) in heard and ("data", 2, 2) in heard
    # Every row now under version 2 (the new algorithm), the same plaintext, the index agrees.
    assert set(_versions(store, app_db).values()) == {2}
    assert _values(store, app_db) == before
    assert {r.key_version for r in store.data.under("alpha")} == {2}
    for name in ROWS:
        info = store.keys.get_key(name)
        assert info.algorithm == "X25519MLKEM768" and get_info(info.algorithm).kind is Kind.KEM
    # Audited: start, the rotations and rewraps, finish; one quantum-related security event.
    types = _audit_types(store)
    start, finish = types.index("migration.start"), types.index("migration.finish")
    assert start < types.index("key.rotate") < types.index("data.rewrap") < finish
    with store.db.read_session() as session:
        [event] = query_events(session, event_type="algorithm_migration")
        assert event.is_quantum_threat_related and event.algorithm == OLD
        assert event.action_taken is not None and "rotated 2" in event.action_taken
    assert store.audit.verify().valid
    # Run again: nothing is left, nothing is done twice.
    again = run_algorithm_migration(
        store, OLD, actor=ACTOR, rewrap_targets={"sql": SqlTarget(engine)}
    )
    assert again.complete and not again.changed
    assert store.keys.count_versions("alpha") == 2
    engine.dispose()


def test_without_targets_the_rewrap_is_left_pending(store: KeyService, tmp_path: Path) -> None:
    _populate(store, tmp_path / "app.db")

    run = run_algorithm_migration(store, OLD, actor=ACTOR)

    assert len(run.rotated) == 2 and not run.complete
    assert any(
        p.startswith("rewrap 4 object(s) of key alpha: qrc data rewrap") for p in run.pending
    )


def test_a_classical_group_tightens_the_tls_mode(store: KeyService) -> None:
    store.update_policy(PolicyUpdate(tls_mode="hybrid-preferred"), actor=ACTOR)
    plan = plan_algorithm_migration(store, "X25519")
    [channel] = plan.channels
    assert channel.automatic and channel.proposed == "pq-only"

    run = run_algorithm_migration(store, "X25519", actor=ACTOR)

    assert run.tightened == ["tls_mode: hybrid-preferred -> pq-only"] and run.complete
    assert store.current_policy()["tls_mode"] == "pq-only"
    assert "policy.update" in _audit_types(store)[-4:]
    assert plan_algorithm_migration(store, "X25519").channels == []


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_ca_leaves_are_reissued_in_another_family_and_the_old_revoked(
    store: KeyService, tmp_path: Path
) -> None:
    ca = PrivateCA(tmp_path / "ca", ServiceCAKeys(store.keys, ACTOR))
    ca.init()
    _chain, _key, old = ca.issue("agent-7", family="ecdsa", kind="client", identity="c_1234")
    _chain, _key, kept = ca.issue("agent-8", family="ml-dsa", kind="client")
    out = tmp_path / "reissued"

    plan = plan_algorithm_migration(store, "ECDSA-P256", data_dir=tmp_path)  # deprecated built in
    [leaf] = [c for c in plan.certificates if c.role == "leaf"]
    assert (leaf.serial, leaf.replacement_family, leaf.automatic) == (old.serial, "ml-dsa", True)
    pending = run_algorithm_migration(store, "ECDSA-P256", actor=ACTOR, data_dir=tmp_path)
    assert any("--certificates-out" in p for p in pending.pending) and not pending.reissued

    run = run_algorithm_migration(
        store, "ECDSA-P256", actor=ACTOR, data_dir=tmp_path, certificates_out=out
    )

    [done] = run.reissued
    assert done["old_serial"] == old.serial and done["family"] == "ml-dsa"
    key_file, cert_file = Path(done["key"]), Path(done["certificate"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    new = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert "agent-7" in new.subject.rfc4514_string()
    assert type(new.public_key()).__name__.startswith("MLDSA65")
    records = {r.serial: r for r in ca.records()}
    assert records[old.serial].revoked_at is not None and records[old.serial].reason == "superseded"
    assert records[done["new_serial"]].identity == "c_1234"  # mutual TLS still maps it
    assert records[kept.serial].revoked_at is None
    crl = x509.load_pem_x509_crl(ca.crl_file("ecdsa").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(old.serial, 16)) is not None
    # Again: nothing left to reissue.
    again = run_algorithm_migration(
        store, "ECDSA-P256", actor=ACTOR, data_dir=tmp_path, certificates_out=out
    )
    assert again.reissued == [] and len(ca.records()) == 3
    assert json.loads((out / f"{old.serial}.json").read_text())["new_serial"] == done["new_serial"]

    # The CA's own keys are reserved: never rotated by a migration, listed with why, and the
    # CA certificates they sign are manual work.
    p384 = plan_algorithm_migration(store, "ECDSA-P384", data_dir=tmp_path)
    reserved = {k.name: k.action for k in p384.keys.keys}
    assert set(reserved) == {"qrc-ca-ecdsa-root", "qrc-ca-ecdsa-intermediate"}
    assert all(a.startswith("skip: reserved for the service (ca)") for a in reserved.values())
    assert p384.keys.to_rotate == []
    assert {(c.role, c.automatic) for c in p384.certificates if c.source == "ca"} >= {
        ("root", False), ("intermediate", False),
    }  # fmt: skip
    moved = run_algorithm_migration(store, "ECDSA-P384", actor=ACTOR, data_dir=tmp_path)
    assert moved.rotated == [] and moved.failed == []
    assert store.keys.count_versions("qrc-ca-ecdsa-root") == 1


def test_update_qrc_algorithms_and_keys_disallows_only_once_the_data_moved(
    store: KeyService, tmp_path: Path
) -> None:
    app_db = tmp_path / "app.db"
    _populate(store, app_db)
    store.update_policy(PolicyUpdate(algorithm_status={OLD: "active"}), actor=ACTOR)

    # Without targets the rows cannot move: the algorithm stays deprecated (still readable).
    _plan, [run] = update_qrc_algorithms_and_keys(store, {OLD: "disallowed"}, actor=ACTOR)
    assert not run.complete and store.policy.status(OLD) is Status.DEPRECATED
    assert set(_versions(store, app_db).values()) == {1}

    engine = _engine(app_db)
    _plan, [run] = update_qrc_algorithms_and_keys(
        store, {OLD: "disallowed"}, actor=ACTOR, rewrap_targets={"sql": SqlTarget(engine)}
    )
    assert run.complete and store.policy.status(OLD) is Status.DISALLOWED
    assert set(_versions(store, app_db).values()) == {2}
    assert len(_values(store, app_db)) == 6
    engine.dispose()
    with pytest.raises(InvalidRequest):
        update_qrc_algorithms_and_keys(store, {OLD: "broken"}, actor=ACTOR)


# --------------------------------------------------------------------------- kill -9
# A real process runs the migration; its progress hook prints where it is and, at the
# chosen point, waits for the test, which then kills it with SIGKILL.
_WORKER = """
import sys
from qrc.data.rewrap import SqlTarget
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.monitor.migration_run import run_algorithm_migration
from sqlalchemy import create_engine

url, kek, passphrase, app_db, step, at = sys.argv[1:7]
service = KeyService(Database(url), Keyring(LocalCustody.open(kek, passphrase)))

def progress(name, done, total, what):
    if name == step and done == int(at):
        print("STOPPED", name, done, flush=True)
        sys.stdin.read()  # until killed

target = SqlTarget(create_engine("sqlite:///" + app_db))
run_algorithm_migration(service, "ML-KEM-768", actor="worker",
                        rewrap_targets={"sql": target}, progress=progress)
print("FINISHED", flush=True)
"""


@pytest.mark.parametrize(("step", "at"), [("keys", 1), ("data", 1)])
def test_a_run_killed_mid_migration_loses_nothing_and_the_rerun_finishes(
    store: KeyService, tmp_path: Path, step: str, at: int
) -> None:
    app_db = tmp_path / "app.db"
    _populate(store, app_db)
    before = _values(store, app_db)
    command = [sys.executable, "-c", _WORKER, store.db.url, str(tmp_path / "kek.sealed"),
               PASSPHRASE, str(app_db), step, str(at)]  # fmt: skip
    worker = subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line.split() == ["STOPPED", step, str(at)], line
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(60) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)

    # Killed where it stood: the work done so far is kept, nothing is half done. The store
    # is read as a new process reads it: this one's key snapshots (up to a second old, see
    # qrc.keys.context) predate what the killed process rotated.
    store = _restarted(store, tmp_path)
    types = _audit_types(store)
    assert "migration.start" in types and "migration.finish" not in types
    rotated = [n for n in ROWS if store.keys.get_key(n).version == 2]
    versions = _versions(store, app_db)
    if step == "keys":
        assert rotated == ["alpha"] and set(versions.values()) == {1}
    else:  # alpha's rows moved, beta's not yet
        assert rotated == ["alpha", "beta"]
        assert {v for k, v in versions.items() if k.startswith("alpha")} == {2}
        assert {v for k, v in versions.items() if k.startswith("beta")} == {1}
    assert _values(store, app_db) == before
    assert store.audit.verify().valid

    engine = _engine(app_db)
    targets = {"sql": SqlTarget(engine)}
    rerun = run_algorithm_migration(store, OLD, actor=ACTOR, rewrap_targets=targets)
    engine.dispose()

    assert rerun.complete, (rerun.pending, rerun.failed)
    assert set(_versions(store, app_db).values()) == {2}
    assert _values(store, app_db) == before
    for name in ROWS:
        assert store.keys.count_versions(name) == 2  # never rotated twice
        assert store.keys.get_key(name).algorithm == "X25519MLKEM768"
    assert {r.key_version for n in ROWS for r in store.data.under(n)} == {2}
    assert store.audit.verify().valid
