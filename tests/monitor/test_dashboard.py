"""The dashboard computed from a real key service: keys, index, audit, TLS, cache."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qrc.crypto.registry import BUILT_IN_STATUS, Status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.errors import KeyStateError
from qrc.keys.policy import AlgorithmPolicy, PolicyUpdate
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.monitor import dashboard as dashboard_module
from qrc.monitor import dashboard_cache as dashboard_cache_module
from qrc.monitor.compliance import compliance_summary
from qrc.monitor.dashboard import build_dashboard, storage_class
from qrc.monitor.dashboard_cache import DashboardCache, cache_of
from qrc.monitor.risk_indicator import quantum_threat_indicator
from qrc.transit.listener import HandshakeCounters
from tests.keys.conftest import FAST_ARGON2


@pytest.fixture
def own_service(tmp_path: Path) -> Iterator[KeyService]:
    """A key service whose policy writes statuses to its own table, not the registry."""
    db = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)
    svc = KeyService(db, Keyring(custody), policy=AlgorithmPolicy(apply=statuses.__setitem__))
    yield svc
    svc.close()


def test_storage_classes() -> None:
    assert [storage_class(t) for t in ("sql-column", "redis-value", "Backup-full")] == [
        "database",
        "database",
        "backup",
    ]
    assert [storage_class(t) for t in ("file", "age", "model-weights", "log")] == ["file"] * 4


def test_keys_rotations_and_alerts(own_service: KeyService) -> None:
    keys = own_service.keys
    a = keys.create_key(name="a", purpose="encryption", algorithm="ML-KEM-768", actor="t")
    keys.create_key(name="b", purpose="signing", algorithm="ML-DSA-65", actor="t")
    c = keys.create_key(name="c", purpose="encryption", algorithm="ML-KEM-1024", actor="t")
    keys.rotate("a", actor="t")
    keys.rotate("a", actor="t")
    keys.rotate("c", actor="t")
    keys.revoke("c", "key_compromise", actor="t")

    board = build_dashboard(own_service)
    stats = board.key_management_stats
    assert stats.total_keys == 3
    assert stats.keys_by_state == {"active": 2, "compromised": 1}
    assert stats.keys_rotated_last_30_days == 2  # distinct keys, not rotations
    assert stats.keys_created_last_30_days == 3
    assert stats.key_generation_rate == pytest.approx(3 / 30, abs=0.001)
    assert stats.key_compromise_alerts == 1
    assert stats.hsm_status == "online" and stats.custody == "local"

    algorithms = {a.algorithm_name: a for a in board.qrc_algorithm_status}
    kem = algorithms["ML-KEM-768"]
    assert (kem.type, kem.strength, kem.status, kem.keys) == ("key_exchange", 3, "active", 1)
    assert kem.last_audit_date is not None and kem.last_audit_date >= a.created_at
    assert algorithms["ML-DSA-65"].type == "digital_signature"
    assert algorithms["AES-256-GCM"].type == "encryption"
    assert algorithms["AES-256-GCM"].last_audit_date is None  # no key uses it
    assert algorithms["ML-KEM-1024"].keys == 1 and c.algorithm == "ML-KEM-1024"


def test_a_later_window_counts_nothing(own_service: KeyService) -> None:
    own_service.keys.create_key(name="a", purpose="encryption", actor="t")
    own_service.keys.rotate("a", actor="t")
    later = own_service.clock() + datetime.timedelta(days=31)
    stats = build_dashboard(own_service, now=later).key_management_stats
    assert (stats.keys_rotated_last_30_days, stats.keys_created_last_30_days) == (0, 0)
    assert stats.total_keys == 1


def test_disallowed_shows_as_deprecated_with_the_policy_status(own_service: KeyService) -> None:
    own_service.keys.create_key(name="old", purpose="encryption", algorithm="HQC-128", actor="t")
    own_service.update_policy(PolicyUpdate(algorithm_status={"HQC-128": "disallowed"}), actor="a")
    board = build_dashboard(own_service)
    hqc = next(a for a in board.qrc_algorithm_status if a.algorithm_name == "HQC-128")
    assert (hqc.status, hqc.policy_status) == ("deprecated", "disallowed")
    assert board.key_management_stats.keys_on_deprecated_algorithms == 1


def test_benchmarks_come_from_the_stored_measurements(own_service: KeyService) -> None:
    measured = {"ops_per_second": {"keygen": 1000.0, "encaps": 2000.5}, "measured_at": None}
    own_service.store_benchmarks({"ML-KEM-768": measured}, actor="t")
    board = build_dashboard(own_service)
    by_name = {a.algorithm_name: a for a in board.qrc_algorithm_status}
    bench = by_name["ML-KEM-768"].performance_benchmark
    assert bench is not None and bench.ops_per_second == {"keygen": 1000.0, "encaps": 2000.5}
    assert by_name["ML-KEM-1024"].performance_benchmark is None


def test_data_at_rest_by_storage_and_coverage(own_service: KeyService) -> None:
    keys = own_service.keys
    keys.create_key(name="pq", purpose="encryption", algorithm="ML-KEM-768", actor="t")
    keys.create_key(name="old", purpose="encryption", algorithm="HQC-128", actor="t")
    entries = [IndexEntry(f"db/{i}", "pq", 1, "sql-column") for i in range(6)]
    entries += [IndexEntry("f/1", "pq", 1, "file"), IndexEntry("bk/1", "old", 1, "backup")]
    entries += [IndexEntry(f"bk/old/{i}", "old", 1, "backup") for i in range(2)]
    own_service.data.register(entries, actor="t")
    own_service.update_policy(PolicyUpdate(algorithm_status={"HQC-128": "deprecated"}), actor="a")

    rest = build_dashboard(own_service).data_at_rest_encryption
    assert [(d.data_type, d.algorithm, d.objects) for d in rest.database_encryption] == [
        ("sql-column", "ML-KEM-768", 6)
    ]
    assert [(d.data_type, d.objects) for d in rest.file_storage_encryption] == [("file", 1)]
    [backup] = rest.backup_encryption
    assert (backup.key_name, backup.objects, backup.protected) == ("old", 3, False)
    assert backup.algorithm_status == "deprecated"
    assert (rest.total_objects, rest.protected_objects) == (10, 7)
    assert rest.overall_coverage_percentage == 70.0


def test_no_objects_no_coverage(own_service: KeyService) -> None:
    rest = build_dashboard(own_service).data_at_rest_encryption
    assert rest.total_objects == 0 and rest.overall_coverage_percentage is None


def _certificate(path: Path, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"in {days} days")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_in_transit_groups_share_and_expiring_certificates(
    own_service: KeyService, tmp_path: Path
) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    _certificate(tls / "ca.pem", 400)
    _certificate(tls / "server-ecdsa.pem", 10)
    counters = HandshakeCounters()
    counters.completed[("X25519MLKEM768", "mldsa65", "ML-DSA-65")] += 2
    counters.completed[("X25519MLKEM768", "ecdsa_secp256r1_sha256", "ECDSA-secp256r1")] += 1
    counters.completed[("x25519", "ecdsa_secp256r1_sha256", "ECDSA-secp256r1")] += 1

    transit = build_dashboard(
        own_service, tls_dir=tls, counters=counters, tls_mode="hybrid"
    ).data_in_transit_protection
    assert transit.tls_mode == "hybrid"
    assert [(g.group, g.post_quantum, g.count) for g in transit.handshakes_by_group] == [
        ("X25519MLKEM768", True, 3),
        ("x25519", False, 1),
    ]
    assert transit.total_handshakes == 4 and transit.classical_share == 0.25
    assert len(transit.certificates) == 2
    assert transit.certificates_expiring_within_30_days == 1
    [soon] = [c for c in transit.certificates if c.expiring]
    assert soon.subject is not None and "in 10 days" in soon.subject
    assert soon.days_left is not None and 9 < soon.days_left <= 10


def test_threat_level_and_compliance_come_from_their_modules(own_service: KeyService) -> None:
    own_service.keys.create_key(name="x", purpose="encryption", actor="t")
    board = build_dashboard(own_service)
    threat = quantum_threat_indicator(own_service, now=board.generated_at)
    assert board.quantum_threat_level == threat
    assert threat["level"] in ("low", "moderate", "elevated", "high", "critical")
    assert board.compliance_report is not None
    assert board.compliance_report["counts"] == compliance_summary(own_service)["counts"]
    assert board.unavailable == []


def test_a_failing_part_is_reported_not_fatal(
    own_service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise RuntimeError("compliance facts unavailable")

    monkeypatch.setattr(dashboard_module, "compliance_summary", broken)
    board = build_dashboard(own_service)
    assert board.compliance_report is None
    assert board.unavailable == ["complianceReport: could not be computed (see the server's log)"]
    assert board.quantum_threat_level is not None and board.key_management_stats.total_keys == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_keeps_a_snapshot_then_refreshes_it_behind_the_callers(
    own_service: KeyService,
) -> None:
    clock = FakeClock()
    pending: list[Callable[[], None]] = []
    cache = DashboardCache(own_service, seconds=5, clock=clock, spawn=pending.append)
    first = cache.get()
    clock.now = 4.9
    assert cache.get() is first and cache.computed == 1 and pending == []
    clock.now = 5.0
    assert cache.get() is first  # old: still answered, one refresh started
    assert cache.get() is first and len(pending) == 1  # not a second one
    pending.pop()()
    second = cache.get()
    assert second.id != first.id and cache.computed == 2
    clock.now = 9.9
    assert cache.get() is second and pending == []


def test_a_failed_refresh_keeps_the_snapshot_and_is_retried(
    own_service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    pending: list[Callable[[], None]] = []
    cache = DashboardCache(own_service, seconds=5, clock=clock, spawn=pending.append)
    first = cache.get()
    clock.now = 6

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store unreachable")

    monkeypatch.setattr(dashboard_cache_module, "build_dashboard", broken)
    assert cache.get() is first
    pending.pop()()  # fails: logged
    monkeypatch.undo()
    assert cache.get() is first and len(pending) == 1  # the next caller retries
    pending.pop()()
    assert cache.get().id != first.id


def test_cache_drops_the_snapshot_on_a_key_change_not_on_a_use(own_service: KeyService) -> None:
    cache = cache_of(own_service)
    assert cache_of(own_service) is cache  # one per service, an observer of it
    own_service.keys.create_key(name="k", purpose="encryption", actor="t")
    before = cache.get()
    assert before.key_management_stats.total_keys == 1
    own_service.crypto.encrypt("k", b"data", actor="t")
    assert cache.get() is before  # a data-plane use waits for the time limit
    with pytest.raises(KeyStateError):  # a refused change changes nothing
        own_service.keys.resume("k", actor="t")
    assert cache.get() is before
    own_service.keys.rotate("k", actor="t")
    after = cache.get()
    assert after is not before and after.key_management_stats.keys_rotated_last_30_days == 1
    own_service.keys.revoke("k", "key_compromise", actor="t")  # and a compromise event
    assert cache.get().key_management_stats.key_compromise_alerts == 1
