"""Harvest-now-decrypt-later risk on a real store (SQLite and PostgreSQL): Mosca's x + y > z
per key, data type and TLS channel, the migration estimate, and the threat indicator."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.crypto.registry import BUILT_IN_STATUS, Status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.policy import AlgorithmPolicy, PolicyUpdate
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.monitor.risk import RiskReport, assess_risk
from qrc.monitor.risk_config import RiskConfig, load_risk_config
from qrc.monitor.risk_indicator import (
    indicator_from_report,
    level_of,
    quantum_threat_indicator,
    risk_document,
)
from qrc.transit.listener import HandshakeCounters, HandshakeRecord
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

ACTOR = "test:risk"
# 1 January 2027: the default horizons (2030, 2035, 2050) are z = 3, 8 and 23 years away.
NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
CLASSICAL = ("X25519", "ECDSA-P256")


def _build(url: str, tmp_path: Path) -> Iterator[KeyService]:
    """A key service whose policy (its own status table) lets classical keys be created."""
    custody = LocalCustody.create(tmp_path / "kek.sealed", "risk passphrase", params=FAST_ARGON2)
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)
    db = Database(url)
    db.upgrade()
    policy = AlgorithmPolicy(apply=statuses.__setitem__)
    svc = KeyService(
        db, Keyring(custody), policy=policy, min_destruction_delay=datetime.timedelta(0)
    )
    svc.update_policy(
        PolicyUpdate(algorithm_status=dict.fromkeys(CLASSICAL, "active")), actor=ACTOR
    )
    yield svc
    svc.close()
    db.dispose()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    """On SQLite."""
    yield from _build(f"sqlite:///{tmp_path / 'qrc.db'}", tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyService]:
    """On SQLite and on PostgreSQL: for the tests whose queries span keys, versions, index."""
    if request.param == "sqlite":
        yield from _build(f"sqlite:///{tmp_path / 'qrc.db'}", tmp_path)
        return
    with fresh_database() as url:
        yield from _build(url, tmp_path)


def _populate(service: KeyService) -> None:
    keys = service.keys
    keys.create_key(name="legacy", purpose="encryption", algorithm="X25519", actor=ACTOR)
    keys.create_key(name="legacy-sig", purpose="signing", algorithm="ECDSA-P256", actor=ACTOR)
    keys.create_key(name="moved", purpose="encryption", algorithm="X25519", actor=ACTOR)
    keys.create_key(name="app", purpose="encryption", algorithm="X25519MLKEM768", actor=ACTOR)
    keys.create_key(name="wrap", purpose="key_wrapping", algorithm="AES-256-GCM", actor=ACTOR)
    keys.create_key(name="shredded", purpose="encryption", algorithm="X25519", actor=ACTOR)
    service.data.register(
        [
            IndexEntry(f"cust/{i}", "legacy", 1, "database_record", data_class="pii")
            for i in range(3)
        ]
        + [IndexEntry(f"logs/{i}", "moved", 1, "log_archive") for i in range(2)]
        + [
            IndexEntry("model/1", "app", 1, "model_file"),
            IndexEntry("cache/1", "legacy", 1, "redis-string"),
            IndexEntry("gone/1", "shredded", 1, "database_record"),
        ],
        actor=ACTOR,
    )
    # "moved" now encrypts under a hybrid; its two log archives are still under X25519.
    keys.rotate("moved", actor=ACTOR, algorithm="X25519MLKEM768")
    keys.schedule_destruction("shredded", actor=ACTOR, delay=datetime.timedelta(days=1))
    service.run_jobs()  # not due yet: "shredded" is still live, pending destruction


def _by_name(report: RiskReport) -> dict[str, dict[str, object]]:
    return {k.name: k.as_dict() for k in report.keys}


def test_each_key_and_data_type_against_each_horizon(store: KeyService) -> None:
    service = store
    _populate(service)
    config = load_risk_config(migration_years=1.0)
    report = assess_risk(service, config, now=NOW)
    keys = _by_name(report)

    # X25519 protecting personal data (x = 25 years, from the data class): exposed even
    # under the late horizon; the margin says by how much (z - x - y = 23 - 25 - 1).
    legacy = keys["legacy"]
    assert legacy["protection"] == "classical" and legacy["threat"] == "harvest-now-decrypt-later"
    assert (legacy["x_years"], legacy["x_from"], legacy["y_years"]) == (25.0, "pii", 1.0)
    assert legacy["exposed_under"] == ["low", "median", "high"]
    assert [v["margin_years"] for v in legacy["verdicts"]] == [-23.0, -18.0, -3.0]  # type: ignore[attr-defined]
    assert legacy["objects"] == 4 and legacy["classical_objects"] == 4

    # A classical signing key is forged, not harvested: x is the signatures' trust period.
    sig = keys["legacy-sig"]
    assert sig["threat"] == "forgery" and sig["x_years"] == 10.0
    assert sig["exposed_under"] == ["low", "median"]  # 10 + 1 > 8, but not > 23

    # Moved to a hybrid, but two log archives (x = 7) still sit under X25519.
    moved = keys["moved"]
    assert moved["protection"] == "hybrid" and moved["classical_objects"] == 2
    assert moved["exposed_under"] == ["low"] and "rewrap" in str(moved["reason"])  # 7 + 1 = 8

    for safe in ("app", "wrap"):
        assert keys[safe]["threat"] is None and keys[safe]["exposed_under"] == [], safe
    assert keys["wrap"]["protection"] == "symmetric"
    assert "shredded" in keys  # pending destruction is not destroyed yet

    types = {d.data_type: d for d in report.data_types}
    assert types["database_record"].x == 25.0 and types["database_record"].classical_objects == 4
    assert types["database_record"].exposed_under == ["low", "median", "high"]
    assert types["log_archive"].exposed_under == ["low"]
    assert types["redis-string"].exposed_under == []  # x = 1: 1 + 1 < 3
    assert types["model_file"].classical_objects == 0 and types["model_file"].exposed_under == []
    assert report.channel.tls_mode == "pq-only" and report.channel.exposed_under == []

    summary = report.as_dict()["summary"]
    assert summary["exposed_keys"] == {"low": 4, "median": 3, "high": 1}


def test_destroyed_keys_are_left_out(service: KeyService) -> None:
    service.keys.create_key(name="old", purpose="encryption", algorithm="X25519", actor=ACTOR)
    before = assess_risk(service, now=NOW)
    assert [k.name for k in before.exposed_keys()] == ["old"]
    service.keys.schedule_destruction("old", actor=ACTOR, delay=datetime.timedelta(0))
    service.run_jobs()
    after = assess_risk(service, now=NOW)
    assert "old" not in {k.name for k in after.keys} and after.exposed_keys() == []


def test_migration_time_is_lead_time_plus_measured_work(store: KeyService) -> None:
    service = store
    _populate(service)
    rates = {"keygen": 1.0, "encapsulate": 1.0, "decapsulate": 1.0, "sign": 1.0, "verify": 1.0}
    algorithms = ("X25519", "ECDSA-P256", "X25519MLKEM768", "MLDSA65-Ed25519-SHA512")
    service.store_benchmarks({a: {"ops_per_second": rates} for a in algorithms}, actor=ACTOR)
    config = RiskConfig(migration_lead_time_years=0.5)
    estimate = assess_risk(service, config, now=NOW).migration
    # Rotations: legacy and legacy-sig (1 s each); rewraps: 4 + 2 + 1 objects
    # under X25519, each one decapsulation and one encapsulation (2 s).
    # ("shredded" is pending destruction: not rotated, but its object counts.)
    assert (estimate.keys_to_rotate, estimate.objects_to_rewrap) == (2, 7)
    assert estimate.machine_seconds == 2 * 1 + 7 * 2
    assert estimate.unmeasured == [] and estimate.source == "estimated"
    assert estimate.years == pytest.approx(0.5 + estimate.machine_seconds / (365.25 * 86400))
    configured = assess_risk(service, load_risk_config(migration_years=4), now=NOW).migration
    assert (configured.years, configured.source) == (4.0, "configured")


def test_classical_handshakes_expose_the_channel(service: KeyService) -> None:
    counters = HandshakeCounters()
    counters.count(
        HandshakeRecord(
            "X25519", "TLS_AES_256_GCM_SHA384", "ecdsa_secp256r1_sha256", "ECDSA-P256", 1
        )
    )
    report = assess_risk(service, counters=counters, tls_mode="hybrid-preferred", now=NOW)
    channel = report.channel
    assert channel.downgradable and channel.classical_handshakes == 1
    assert channel.exposed_under == ["low", "median"]  # x = 10, y = 1: 11 > 8, not > 23
    indicator = indicator_from_report(report)
    assert "+15: 1 classical TLS handshake(s) recorded" in indicator["reasons"]
    assert indicator["classicalHandshakes"] == 1 and indicator["tlsMode"] == "hybrid-preferred"

    quiet = assess_risk(service, tls_mode="hybrid-preferred", now=NOW).channel
    assert quiet.downgradable and quiet.exposed_under == [] and "none recorded" in quiet.reason


def test_threat_indicator_shape_and_levels(service: KeyService) -> None:
    calm = quantum_threat_indicator(service, now=NOW)
    assert (calm["level"], calm["score"]) == ("low", 0)
    assert calm["reasons"] == ["no key, data type or channel is exposed under any horizon"]
    assert set(calm) == {
        "level",
        "score",
        "reasons",
        "horizons",
        "exposedKeys",
        "exposedDataTypes",
        "exposedObjects",
        "classicalKeys",
        "classicalHandshakes",
        "classicalCertificates",
        "deprecatedAlgorithmsInUse",
        "migrationYears",
        "tlsMode",
        "lastAssessed",
    }
    assert [(h["name"], h["year"], h["yearsAway"]) for h in calm["horizons"]] == [
        ("low", 2030.0, 3.0),
        ("median", 2035.0, 8.0),
        ("high", 2050.0, 23.0),
    ]
    assert all(
        "Quantum Threat" in h["source"] or "NIST" in h["source"] for h in calm["horizons"][:2]
    )
    assert calm["lastAssessed"] == NOW.isoformat()

    _populate(service)
    hot = quantum_threat_indicator(service, load_risk_config(migration_years=1.0), now=NOW)
    # 45 (exposed under the late horizon) + 10 (classical keys) + 10 (deprecated in use)
    assert hot["score"] == 65 and hot["level"] == "high"
    assert hot["reasons"][0].startswith("+45: exposed under the high horizon (2050")
    assert hot["exposedKeys"] == 4 and hot["classicalKeys"] == 3
    assert hot["exposedObjects"] == 6 and hot["deprecatedAlgorithmsInUse"] == list(CLASSICAL[::-1])
    assert [level_of(s) for s in (0, 14, 15, 35, 55, 75, 100)] == [
        "low",
        "low",
        "moderate",
        "elevated",
        "high",
        "critical",
        "critical",
    ]


def test_risk_document_carries_model_and_indicator(service: KeyService) -> None:
    _populate(service)
    doc = risk_document(service, now=NOW)
    assert doc["model"]["source"] == "built-in defaults"
    assert {h["name"] for h in doc["model"]["horizons"]} == {"low", "median", "high"}
    assert doc["quantum_threat_indicator"]["exposedKeys"] == len(
        [k for k in doc["keys"] if k["exposed_under"]]
    )
