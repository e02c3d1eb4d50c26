"""Compliance controls evaluated from a real store (SQLite and PostgreSQL): each control that
passes on a healthy store fails when its evidence is broken."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from qrc.crypto.registry import BUILT_IN_STATUS, Status, set_status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.policy import AlgorithmPolicy
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.monitor.compliance import (
    FRAMEWORKS,
    ComplianceReport,
    UnknownFramework,
    build_report,
    compliance_summary,
    evaluate,
)
from qrc.monitor.compliance_catalogue import CONTROLS
from qrc.monitor.compliance_facts import BackupFacts, gather_facts
from qrc.monitor.scan import FoundAsset
from qrc.transit.listener import HandshakeCounters, HandshakeRecord
from qrc.transit.pki import ensure_listener_tls
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

ACTOR = "test:compliance"
WEAK = "ML-KEM-512"


def _service(url: str, tmp_path: Path) -> Iterator[KeyService]:
    """A key service whose policy keeps its statuses to itself (the registry is the test's)."""
    custody = LocalCustody.create(tmp_path / "kek.sealed", "passphrase", params=FAST_ARGON2)
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)
    db = Database(url)
    db.upgrade()
    policy = AlgorithmPolicy(apply=statuses.__setitem__)
    service = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0), policy=policy)
    yield service
    service.close()
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyService]:
    """The service on SQLite, then on PostgreSQL (for the tests of what the store holds)."""
    if request.param == "sqlite":
        yield from _service(f"sqlite:///{tmp_path / 'qrc.db'}", tmp_path)
        return
    with fresh_database() as url:
        yield from _service(url, tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyService]:
    """The service on SQLite."""
    yield from _service(f"sqlite:///{tmp_path / 'qrc.db'}", tmp_path)


def healthy(service: KeyService) -> KeyService:
    """Keys with cryptoperiods, indexed data, a checkpoint and a 2-of-3 backup."""
    keys, year = service.keys, timedelta(days=365)
    keys.create_key(name="app", purpose="encryption", rotation_period=year, actor=ACTOR)
    keys.create_key(
        name="weak", purpose="encryption", algorithm=WEAK, rotation_period=year, actor=ACTOR
    )
    keys.create_key(
        name="sig", purpose="signing", algorithm="ML-DSA-87", rotation_period=year, actor=ACTOR
    )
    service.data.register(
        [IndexEntry(f"inv/{i}", "app", 1, "invoice") for i in range(3)]
        + [IndexEntry("ledger/0", "weak", 1, "ledger")],
        actor=ACTOR,
    )
    service.audit.checkpoint(actor=ACTOR)
    service.backups.create(threshold=2, shares=3, actor=ACTOR)
    return service


def outcomes(report: ComplianceReport) -> dict[str, str]:
    return {r.control.id: r.outcome.value for r in report.results}


def result(report: ComplianceReport, control: str) -> dict[str, object]:
    found = [r.as_dict() for r in report.results if r.control.id == control]
    assert found, control
    return found[0]


KEY_CONTROLS = (
    "sp800-57/cryptoperiod",
    "sp800-57/states",
    "sp800-57/backup",
    "sp800-57/destruction",
    "sp800-57/protection",
    "pci-dss-4.0/3.7.1",
    "pci-dss-4.0/3.7.3",
    "pci-dss-4.0/3.7.4",
    "pci-dss-4.0/3.7.5",
    "pci-dss-4.0/3.7.6",
    "pci-dss-4.0/10.3.4",
    "pci-dss-4.0/12.3.3",
    "pci-dss-4.0/4.2.1",
    "dora/rts-6.2",
    "dora/rts-6.4",
    "dora/rts-7.2",
    "dora/rts-7.3",
    "gdpr/32.1.a",
    "gdpr/32.1.b",
    "gdpr/32.1.c",
    "gdpr/32.1.d",
    "fips-203/params",
    "fips-204/params",
    "sp800-227/kems",
    "nistir-8547/transition",
    "etsi-ts-103-744/hybrid",
)


def test_a_healthy_store_passes_and_the_report_is_complete(both: KeyService) -> None:
    report = build_report(healthy(both))
    got = outcomes(report)
    assert {c: got[c] for c in KEY_CONTROLS} == dict.fromkeys(KEY_CONTROLS, "pass")
    assert got["fips-205/params"] == "not_applicable"  # no SLH-DSA in use
    assert got["sp800-208/stateful"] == "not_applicable"
    assert got["cnsa-2.0/algorithms"] == "fail"  # X-Wing and ML-KEM-512 are not CNSA 2.0
    assert {got[c.id] for c in CONTROLS if c.check is None} == {"manual"}
    assert [r.control.id for r in report.results] == [c.id for c in CONTROLS]
    assert report.frameworks == list(FRAMEWORKS)

    backup = result(report, "sp800-57/backup")["evidence"]
    assert isinstance(backup, dict) and backup["shamir_splits"] == ["2-of-3"]
    audit = result(report, "pci-dss-4.0/10.3.4")["evidence"]
    assert isinstance(audit, dict) and audit["valid"] and audit["checkpoints_verified"] >= 2
    fips = result(report, "fips-203/params")["evidence"]
    assert isinstance(fips, dict)
    assert set(fips["parameter_sets"]) == {"ML-KEM-512", "ML-KEM-768"}
    assert fips["known_answer_tests"]["ML-KEM-512"] == "ok"
    assert fips["known_answer_tests"]["ML-KEM-768"] == "ok"  # X-Wing's half, on its own
    objects = result(report, "gdpr/32.1.a")["evidence"]
    assert isinstance(objects, dict) and objects["by_data_type"] == {"invoice": 3, "ledger": 1}
    json.dumps(report.as_dict())  # JSON-ready throughout

    summary = compliance_summary(both, report=report)
    assert summary["overallStatus"] == "fail" and summary["generatedAt"]
    assert [f["id"] for f in summary["frameworks"]] == list(FRAMEWORKS)
    assert summary["counts"]["fail"] == len(summary["topFailing"]) == 1
    assert summary["topFailing"][0]["id"] == "cnsa-2.0/algorithms"
    pci = next(f for f in summary["frameworks"] if f["id"] == "pci-dss-4.0")
    assert (pci["status"], pci["fail"], pci["manual"]) == ("pass", 0, 3)


def test_a_tampered_audit_chain_fails_the_integrity_controls(both: KeyService) -> None:
    healthy(both)
    with both.db.session() as session:
        session.execute(text("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 2"))
    report = build_report(both, frameworks=["pci-dss-4.0", "gdpr"])
    got = outcomes(report)
    assert got["pci-dss-4.0/10.3.4"] == got["gdpr/32.1.b"] == "fail"
    evidence = result(report, "pci-dss-4.0/10.3.4")["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["valid"] is False and evidence["first_bad_event"] == 2
    assert report.frameworks == ["pci-dss-4.0", "gdpr"]
    assert {r.control.framework for r in report.results} == {"pci-dss-4.0", "gdpr"}


@contextlib.contextmanager
def disallowed(algorithm: str) -> Iterator[str]:
    """``algorithm`` disallowed in the registry, rebothd afterwards."""
    set_status(algorithm, Status.DISALLOWED)
    try:
        yield algorithm
    finally:
        set_status(algorithm, BUILT_IN_STATUS[algorithm])


def test_a_key_of_a_disallowed_algorithm_fails(both: KeyService) -> None:
    healthy(both)
    with disallowed(WEAK):
        report = build_report(both)
    got = outcomes(report)
    for control in ("pci-dss-4.0/3.7.1", "sp800-227/kems", "dora/rts-6.4", "gdpr/32.1.a"):
        assert got[control] == "fail", control
    weak_id = both.keys.get_key("weak").id
    evidence = result(report, "pci-dss-4.0/3.7.1")["evidence"]
    assert isinstance(evidence, dict)
    assert [k["id"] for k in evidence["disallowed_keys"]] == [weak_id]
    assert result(report, "gdpr/32.1.a")["evidence"]["unprotected_objects"] == {WEAK: 1}  # type: ignore[index]
    assert result(report, "pci-dss-4.0/3.7.1")["remediation"]


def test_classical_tls_fails_4_2_1_and_pq_tls_passes(store: KeyService) -> None:
    pq, classical = HandshakeCounters(), HandshakeCounters()
    pq.count(HandshakeRecord("X25519MLKEM768", "TLS_AES_256_GCM_SHA384", "mldsa65", "ML-DSA-65", 1))
    classical.count(
        HandshakeRecord(
            "X25519", "TLS_AES_128_GCM_SHA256", "ecdsa_secp256r1_sha256", "ECDSA-P256", 1
        )
    )
    good = build_report(store, counters=pq, tls_mode="pq-only")
    bad = build_report(store, counters=classical, tls_mode="hybrid-preferred")
    for control in ("pci-dss-4.0/4.2.1", "etsi-ts-103-744/hybrid", "dora/rts-6.2"):
        assert (outcomes(good)[control], outcomes(bad)[control]) == ("pass", "fail"), control
    evidence = result(bad, "pci-dss-4.0/4.2.1")["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["tls_mode"] == "hybrid-preferred" and evidence["classical_handshakes"] == 1
    # CNSA 2.0 wants ML-KEM-1024 groups; with no handshake seen it cannot tell.
    assert outcomes(good)["cnsa-2.0/tls"] == "fail"
    assert outcomes(build_report(store))["cnsa-2.0/tls"] == "manual"


def test_keys_past_their_cryptoperiod_and_destruction_date(store: KeyService) -> None:
    healthy(store)
    year = timedelta(days=365)
    store.keys.create_key(name="doomed", purpose="encryption", rotation_period=year, actor=ACTOR)
    store.keys.schedule_destruction("doomed", delay=timedelta(days=1), actor=ACTOR)
    now = store.clock()
    got = outcomes(build_report(store, now=now))
    assert got["sp800-57/destruction"] == got["pci-dss-4.0/3.7.4"] == "pass"
    store.keys.create_key(name="no-period", purpose="encryption", actor=ACTOR)
    got = outcomes(build_report(store, now=now))
    assert got["pci-dss-4.0/3.7.4"] == "fail"  # a key without a rotation period
    assert got["sp800-57/cryptoperiod"] == "pass"  # held to the default maximum: within it

    later = build_report(store, now=now + timedelta(days=400))
    got = outcomes(later)
    assert got["sp800-57/cryptoperiod"] == got["sp800-57/destruction"] == "fail"
    assert got["pci-dss-4.0/3.7.5"] == got["dora/rts-7.2"] == "fail"
    assert got["sp800-57/backup"] == "fail"  # 400 days since the backup
    overdue = result(later, "sp800-57/cryptoperiod")["evidence"]["overdue"]  # type: ignore[index]
    assert {k["name"] for k in overdue} == {"app", "weak", "sig"}  # not no-period: < 730 days


def test_a_compromised_key_that_still_protects_data_fails(store: KeyService) -> None:
    healthy(store)
    store.keys.revoke("weak", "key_compromise", actor=ACTOR)
    report = build_report(store, frameworks=["sp800-57", "pci-dss-4.0"])
    assert outcomes(report)["sp800-57/states"] == outcomes(report)["pci-dss-4.0/3.7.5"] == "fail"
    evidence = result(report, "sp800-57/states")["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["compromised_with_data"][0]["objects"] == 1
    assert evidence["key_compromise_events"] == 1


def test_no_backup_fails_recovery_controls(store: KeyService) -> None:
    store.keys.create_key(name="app", purpose="encryption", actor=ACTOR)
    got = outcomes(build_report(store))
    for control in ("sp800-57/backup", "dora/rts-7.3", "gdpr/32.1.c", "pci-dss-4.0/3.7.3"):
        assert got[control] == "fail", control
    assert got["pci-dss-4.0/3.7.6"] == "manual"  # no key component ever left the service
    assert got["gdpr/32.1.a"] == "manual"  # nothing indexed: the service cannot tell


def test_self_test_floor_fails_fips_and_testing_controls(tmp_path: Path) -> None:
    """An algorithm whose power-on self-test failed (the floor) fails FIPS 203 and 32(1)(d)."""
    db = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(tmp_path / "kek", "passphrase", params=FAST_ARGON2)
    policy = AlgorithmPolicy(apply=lambda _a, _s: None)  # this policy's floor only
    service = KeyService(db, Keyring(custody), policy=policy)
    try:
        service.keys.create_key(name="k", purpose="encryption", algorithm="ML-KEM-768", actor="t")
        assert outcomes(build_report(service))["fips-203/params"] == "pass"
        policy.disallow(["ML-KEM-768"], "known-answer test failed")
        got = outcomes(build_report(service))
        assert got["fips-203/params"] == got["gdpr/32.1.d"] == "fail"
    finally:
        service.close()


def test_transition_dates_certificates_and_stateful_signatures(
    store: KeyService, tmp_path: Path
) -> None:
    ensure_listener_tls(tmp_path, ["localhost"], certificates="dual")  # ML-DSA and ECDSA chains
    facts = gather_facts(store, tls_dir=tmp_path / "tls")
    got = outcomes(evaluate(facts))
    assert got["nistir-8547/transition"] == "pass" and got["dora/rts-7.4"] == "pass"
    assert got["sp800-208/stateful"] == "not_applicable"

    after_2035 = dataclasses.replace(facts, now=datetime.datetime(2036, 1, 1, tzinfo=datetime.UTC))
    got = outcomes(evaluate(after_2035))
    assert got["nistir-8547/transition"] == "fail"  # the ECDSA chain is quantum-vulnerable
    assert got["dora/rts-7.4"] == "fail"  # and every certificate has expired by then

    lms = FoundAsset("fw/signer.pem", "public-key", "LMS-SHA256-M32-H10", quantum_safe=True)
    inventory = dataclasses.replace(facts.inventory, found=[lms])
    got = outcomes(evaluate(dataclasses.replace(facts, inventory=inventory)))
    assert got["sp800-208/stateful"] == "fail"  # LMS without an HSM
    hsm = dataclasses.replace(facts, inventory=inventory, custody="pkcs11")
    assert outcomes(evaluate(hsm))["sp800-208/stateful"] == "pass"

    single = dataclasses.replace(facts, backups=BackupFacts(1, facts.now, "b1", [(1, 1)]))
    assert outcomes(evaluate(single))["pci-dss-4.0/3.7.6"] == "fail"


def test_unknown_frameworks_are_refused_before_any_work(store: KeyService) -> None:
    with pytest.raises(UnknownFramework, match="pci-dss-3"):
        build_report(store, frameworks=["pci-dss-3"])
    report = build_report(store, frameworks=["gdpr, DORA", "gdpr"])
    assert report.frameworks == ["gdpr", "dora"]


def test_the_dashboard_summary_reuses_a_recent_audit_verification(store: KeyService) -> None:
    healthy(store)

    def failing(**options: float) -> list[str]:
        summary = compliance_summary(store, frameworks=["pci-dss-4.0"], **options)
        return [c["id"] for c in summary["topFailing"]]

    def recorded() -> int:
        return len(store.audit.security_events(event_type="audit_verification_failure"))

    assert failing() == []  # verified now, and remembered
    with store.db.session() as session:
        session.execute(text("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 3"))
    assert failing() == []  # a poll within SUMMARY_AUDIT_MAX_AGE reuses that verification
    assert failing(audit_max_age=0) == ["pci-dss-4.0/10.3.4"]  # the report always verifies
    assert recorded() == 1
    assert failing() == ["pci-dss-4.0/10.3.4"]  # the failure is remembered: not re-recorded
    assert recorded() == 1
