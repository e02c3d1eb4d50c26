"""Backup and disaster recovery: the drill, failures that write nothing, sealed shares."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from qrc.crypto.base import KemPrivateKey, SigningKey
from qrc.crypto.selftest import generate_private_key
from qrc.crypto.shamir import (
    InvalidShare,
    NotEnoughShares,
    Share,
    ShareError,
    ShareMismatch,
    open_sealed_share,
)
from qrc.keys.backup import (
    AuditChainBroken,
    BackupCorrupted,
    BackupError,
    StoreNotEmpty,
    UnsupportedBackupVersion,
    read_header,
)
from qrc.keys.backup import format as backup_module
from qrc.keys.backup.format import HEADER_SIZE
from qrc.keys.custody.base import Custody, CustodyHealth, CustodyUnavailable
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.errors import InvalidRequest, OperationNotPermitted
from qrc.keys.service import KeyService
from qrc.keys.store.db import Base, Database, utcnow
from qrc.keys.store.models import (
    ApiClient,
    AuditCheckpoint,
    AuditEvent,
    KekRecord,
    KeyVersion,
    Policy,
)
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

ACTOR = "test:ops"
SIGNER_ID = "audit-signer"


# --------------------------------------------------------------------------- helpers
def _new_custody(directory: Path, passphrase: str = "another passphrase") -> LocalCustody:
    directory.mkdir(parents=True, exist_ok=True)
    return LocalCustody.create(directory / "kek.sealed", passphrase, params=FAST_ARGON2)


@pytest.fixture
def target(db: Database, tmp_path: Path) -> Iterator[KeyService]:
    """An empty store of the same kind as ``db`` with a different root KEK."""
    custody = _new_custody(tmp_path / "dr")
    if db.is_sqlite:
        database = Database(f"sqlite:///{tmp_path / 'dr' / 'qrc.db'}")
        database.upgrade()
        yield KeyService(database, Keyring(custody), min_destruction_delay=timedelta(0))
        database.dispose()
        return
    with fresh_database() as url:
        database = Database(url)
        database.upgrade()
        yield KeyService(database, Keyring(custody), min_destruction_delay=timedelta(0))
        database.dispose()


sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)

_TABLES = [name for name, _ in backup_module._TABLES]


def _counts(service: KeyService) -> dict[str, int]:
    with service.db.session() as session:
        return {
            t: int(session.scalar(text(f"SELECT COUNT(*) FROM {t}")) or 0)
            for t in [*_TABLES, "qrc_keks"]
        }


def _assert_empty(service: KeyService) -> None:
    assert set(_counts(service).values()) == {0}


def _raw_private_keys(service: KeyService) -> list[bytes]:
    """Every private key version's raw material, unwrapped with the root KEK."""
    with service.db.session() as session:
        rows = session.scalars(select(KeyVersion).where(KeyVersion.wrapped_private.is_not(None)))
        return [
            service.keyring.unwrap(r.key_id, r.version, r.algorithm, r.wrapped_private)
            for r in rows
            if r.wrapped_private is not None
        ]


def _forms(secret: bytes) -> list[bytes]:
    """The ways a leaked secret could appear: raw, hex (both cases), base64."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.b64encode(secret)[:-4],  # base64 inside a longer value shifts the tail
    ]


def _assert_absent(haystack: bytes, secrets: list[bytes], where: str) -> None:
    for secret in secrets:
        for form in _forms(secret):
            if form in haystack:  # not `assert`: its message would print the secret
                pytest.fail(f"private key material found in {where}")


def _dump(service: KeyService) -> bytes:
    """Every value in every table, as bytes (plus the SQLite files themselves)."""
    chunks: list[bytes] = []
    with service.db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value))
                    else:
                        chunks.append(json.dumps(value, default=str).encode())
    url = service.db.url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal"):
            file = path.with_name(path.name + suffix)
            if file.exists():
                chunks.append(file.read_bytes())
    return b"\x00".join(chunks)


def _key_views(service: KeyService) -> dict[str, dict[str, Any]]:
    keys, cursor = service.keys.list_keys(limit=1000)
    assert cursor is None
    return {k.id: k.as_dict() for k in keys}


def _audit_rows(service: KeyService) -> list[tuple[Any, ...]]:
    with service.db.session() as session:
        events = session.execute(
            select(AuditEvent.seq, AuditEvent.at, AuditEvent.event_type, AuditEvent.actor,
                   AuditEvent.details, AuditEvent.prev_hash, AuditEvent.hash)
            .order_by(AuditEvent.seq)
        ).all()  # fmt: skip
    return [tuple(e) for e in events]


def _checkpoints(service: KeyService) -> list[tuple[Any, ...]]:
    with service.db.session() as session:
        rows = session.execute(
            select(AuditCheckpoint.id, AuditCheckpoint.seq, AuditCheckpoint.head_hash,
                   AuditCheckpoint.at, AuditCheckpoint.signature).order_by(AuditCheckpoint.id)
        ).all()  # fmt: skip
    return [tuple(r) for r in rows]


def _checkpoint(service: KeyService, signer: SigningKey) -> None:
    with service.db.session() as session:
        service.audit.log.checkpoint(session, signer, SIGNER_ID, 1)


def _small_store(service: KeyService) -> bytes:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    service.keys.create_key(name="s", purpose="signing", actor=ACTOR, algorithm="ML-DSA-65")
    return service.crypto.encrypt("k", b"payload", actor=ACTOR, context=b"ctx").ciphertext


def _destroy_store(db: Database) -> None:
    Base.metadata.drop_all(db.engine)
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    db.upgrade()


# --------------------------------------------------------------------------- the drill
def test_drill_backup_destroy_restore_under_a_new_kek(
    db: Database, service: KeyService, tmp_path: Path
) -> None:
    # Keys of every kind, in every state, with data under them.
    service.keys.create_key(name="payments", purpose="encryption", algorithm="X25519MLKEM768",
                       actor=ACTOR, labels={"team": "billing"})  # fmt: skip
    service.keys.create_key(name="dek-wrap", purpose="key_wrapping", algorithm="AES-256-GCM",
                       actor=ACTOR, rotation_period=timedelta(days=30))  # fmt: skip
    service.keys.create_key(name="tokens", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    service.keys.create_key(name="releases", purpose="signing", actor=ACTOR)  # composite
    service.keys.create_key(
        name="rotated", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR
    )
    service.keys.create_key(name="leaked", purpose="encryption", actor=ACTOR)
    service.keys.create_key(name="retired", purpose="encryption", actor=ACTOR)
    service.keys.create_key(name="shredded", purpose="encryption", actor=ACTOR)
    service.keys.create_key(name="doomed", purpose="key_wrapping", actor=ACTOR)
    service.keys.create_key(name="later", purpose="encryption", actor=ACTOR, activate=False)

    ciphertexts: list[tuple[str, bytes, bytes, bytes, bool]] = []

    def encrypt(ref: str, plaintext: bytes, context: bytes, recovery: bool = False) -> None:
        sealed = service.crypto.encrypt(ref, plaintext, actor=ACTOR, context=context)
        ciphertexts.append((ref, sealed.ciphertext, context, plaintext, recovery))

    encrypt("payments", b"IBAN DE89 3704", b"accounts/42/iban")
    encrypt("dek-wrap", b"\x01" * 32, b"table:users")
    encrypt("rotated", b"under version 1", b"r/1")
    service.keys.rotate("rotated", actor=ACTOR)
    encrypt("rotated", b"under version 2", b"r/2")
    encrypt("leaked", b"before the leak", b"l", recovery=True)
    encrypt("retired", b"old but readable", b"")
    shredded = service.crypto.encrypt("shredded", b"gone forever", actor=ACTOR).ciphertext
    data_key = service.crypto.generate_data_key("doomed", actor=ACTOR, context=b"dk")
    signatures = [
        ("tokens", b"jwt claims", service.crypto.sign("tokens", b"jwt claims", actor=ACTOR,
                                               context=b"jwt").signature, b"jwt", 1),
        ("releases", b"release 1.0", service.crypto.sign("releases", b"release 1.0", actor=ACTOR,
                                                  context=b"").signature, b"", 1),
    ]  # fmt: skip
    service.keys.revoke("leaked", "key_compromise", actor=ACTOR)
    service.keys.revoke("retired", "superseded", actor=ACTOR)
    service.keys.schedule_destruction("shredded", actor=ACTOR, delay=timedelta(0))
    assert service.scheduler.run_due()["destroyed"] == 1
    service.keys.schedule_destruction("doomed", actor=ACTOR)  # pending, 7 days
    service.data.register(
        [IndexEntry("accounts/42/iban", "payments", 1, "column", data_class="pii")], actor="t"
    )
    with service.db.session() as session:
        session.add(Policy(name="default_algorithms", value={"signing": "ML-DSA-65"},
                           updated_at=utcnow(), updated_by=ACTOR))  # fmt: skip
        session.add(ApiClient(id="c_1", name="ci", role="crypto_user", token_hash=b"\x07" * 32,
                              allowed_keys=["payments"], created_at=utcnow()))  # fmt: skip
    service.audit.checkpoint(actor=ACTOR)  # the service's own ML-DSA-65 audit key
    service.crypto.encrypt("payments", b"after the checkpoint", actor=ACTOR)

    secrets = _raw_private_keys(service)
    assert len(secrets) == 11  # 10 keys and the audit key; one rotated, one shredded
    keys_before = _key_views(service)
    with service.db.session() as session:
        policies_before = [(p.name, p.value) for p in session.scalars(select(Policy))]
        clients_before = [(c.id, c.token_hash, c.allowed_keys)
                          for c in session.scalars(select(ApiClient))]  # fmt: skip
    old_kek = service.keyring.current.kek_id

    result = service.backups.create(threshold=3, shares=5, actor="ops:backup")

    assert len(result.shares) == 5 and result.sealed_shares == []
    assert read_header(result.data) == result.summary
    assert result.summary.counts.keys == 11 and result.summary.counts.key_versions == 12
    assert result.summary.counts.audit_checkpoints == 2  # ours, and one over backup.create
    audit_before = _audit_rows(service)
    checkpoints_before = _checkpoints(service)
    assert audit_before[-1][2] == "backup.create"
    assert audit_before[-1][4]["backup_id"] == result.backup_id
    assert result.summary.counts.audit_events == len(audit_before)
    # No private key in the file, nor in its decrypted body (only backup-wrapped material).
    _assert_absent(result.data, secrets, "the backup file")
    _header, body, _key = backup_module._open(result.data, result.shares[:3])
    _assert_absent(json.dumps(body).encode(), secrets, "the decrypted backup body")

    # Disaster: the store and the root KEK are gone.
    service.keyring.close()
    (tmp_path / "kek.sealed").unlink()
    _destroy_store(db)
    _assert_empty(KeyService(db, Keyring(_new_custody(tmp_path / "scratch"))))
    restored = KeyService(db, Keyring(_new_custody(tmp_path / "new-site")))
    assert restored.keyring.current.kek_id != old_kek

    report = restored.backups.restore(
        result.data,
        [result.shares[4], result.shares[0], result.shares[2]],
        actor="ops:dr",
    )

    assert report.backup_id == result.backup_id and report.counts == result.summary.counts
    assert report.destroyed_versions == 1 and report.audit.valid
    assert report.audit.checkpoints_verified == 2
    # The audit chain: the same rows and checkpoints, then the restore event; it verifies.
    audit_after = _audit_rows(restored)
    assert audit_after[: len(audit_before)] == audit_before
    assert _checkpoints(restored)[: len(checkpoints_before)] == checkpoints_before
    assert audit_after[len(audit_before)][2] == "backup.restore"
    assert len(audit_after) == len(audit_before) + 1
    # A checkpoint over backup.restore, signed by the restored audit key under the new KEK.
    assert len(_checkpoints(restored)) == len(checkpoints_before) + 1
    verified = restored.audit.verify()
    assert verified.valid and verified.checkpoints_verified == 3, verified.reason
    # Metadata, states, versions and timestamps exactly as they were.
    assert _key_views(restored) == keys_before
    assert keys_before[restored.keys.get_key("leaked").id]["status"] == "compromised"
    assert restored.keys.get_key("doomed").status == "pending_destruction"
    assert restored.keys.get_key("later").status == "pre_active"
    with restored.db.session() as session:
        assert [(p.name, p.value) for p in session.scalars(select(Policy))] == policies_before
        assert [(c.id, c.token_hash, c.allowed_keys)
                for c in session.scalars(select(ApiClient))] == clients_before  # fmt: skip
        kek_ids = {v.kek_id for v in session.scalars(select(KeyVersion))
                   if v.wrapped_private is not None}  # fmt: skip
    assert kek_ids == {restored.keyring.current.kek_id}
    assert [r.identifier for r in restored.data.under("payments")] == ["accounts/42/iban"]
    # Every ciphertext decrypts, every signature verifies.
    for ref, ciphertext, context, plaintext, recovery in ciphertexts:
        got = restored.crypto.decrypt(
            ref, ciphertext, actor=ACTOR, context=context, recovery=recovery
        )
        assert got == plaintext
    with pytest.raises(OperationNotPermitted):
        restored.crypto.decrypt("leaked", ciphertexts[4][1], actor=ACTOR, context=b"l")
    for ref, message, signature, context, version in signatures:
        assert (
            restored.crypto.verify(ref, message, signature, actor=ACTOR, context=context) == version
        )
    # The shredded key stays shredded; the pending one is still pending.
    with pytest.raises(OperationNotPermitted):
        restored.crypto.decrypt("shredded", shredded, actor=ACTOR)
    assert restored.keys.get_key("shredded").status == "destroyed"
    with pytest.raises(OperationNotPermitted, match="pending destruction"):
        restored.crypto.decrypt("doomed", data_key.wrapped_key, actor=ACTOR, context=b"dk")
    restored.keys.cancel_destruction("doomed", actor=ACTOR)
    assert restored.crypto.decrypt("doomed", data_key.wrapped_key, actor=ACTOR,
                            context=b"dk") == data_key.plaintext_key  # fmt: skip
    # The restored store keeps working (new IDs do not collide with restored ones).
    restored.keys.rotate("payments", actor=ACTOR)
    restored.keys.create_key(name="new-after-dr", purpose="encryption", actor=ACTOR)
    restored.data.register([IndexEntry("accounts/43/iban", "payments", 2, "column")], actor="t")
    sealed = restored.crypto.encrypt("new-after-dr", b"fresh", actor=ACTOR)
    assert restored.crypto.decrypt(None, sealed.ciphertext, actor=ACTOR) == b"fresh"
    restored.audit.checkpoint(actor=ACTOR)
    assert restored.audit.verify().valid
    # No private key anywhere in the restored database.
    _assert_absent(_dump(restored), secrets, "the restored database")


# --------------------------------------------------------------------------- failures
@sqlite_only
def test_header_and_audit_event(service: KeyService) -> None:
    _small_store(service)
    result = service.backups.create(threshold=2, shares=3, actor=ACTOR)
    header = read_header(result.data)
    assert header.backup_id == result.backup_id and result.backup_id.startswith("b_")
    assert (header.threshold, header.shares) == (2, 3)
    assert header.set_id == result.shares[0].set_id
    assert header.counts.keys == 2 and header.counts.key_versions == 2
    assert len(result.data) > HEADER_SIZE and result.data[:4] == b"QRCB"
    assert "data=" not in repr(result) and result.backup_id in repr(result)
    with service.db.session() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        seq, head = service.audit.log.head(session)
    assert last is not None and last.event_type == "backup.create"
    assert last.details["backup_id"] == result.backup_id and last.actor == ACTOR
    assert head == header.audit_head_hash and seq == header.counts.audit_events


@sqlite_only
@pytest.mark.parametrize(("threshold", "shares"), [(1, 5), (4, 3), (2, 256), (True, 3)])
def test_bad_parameters(service: KeyService, threshold: int, shares: int) -> None:
    with pytest.raises(InvalidRequest, match="threshold"):
        service.backups.create(threshold=threshold, shares=shares, actor=ACTOR)
    assert _counts(service)["qrc_audit_events"] == 0


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_too_few_wrong_or_foreign_shares_write_nothing(
    service: KeyService, target: KeyService
) -> None:
    _small_store(service)
    result = service.backups.create(threshold=3, shares=5, actor=ACTOR)
    other = service.backups.create(threshold=3, shares=5, actor=ACTOR)
    shares = result.shares
    with pytest.raises(NotEnoughShares, match="3 distinct shares are needed and 2 were given"):
        target.backups.restore(result.data, shares[:2], actor=ACTOR)
    with pytest.raises(NotEnoughShares):
        target.backups.restore(result.data, [shares[0]] * 3, actor=ACTOR)
    altered = dataclasses.replace(shares[1], y=bytes([shares[1].y[0] ^ 1]) + shares[1].y[1:])
    with pytest.raises(InvalidShare, match="wrong or altered"):
        target.backups.restore(result.data, [shares[0], altered, shares[2]], actor=ACTOR)
    with pytest.raises(InvalidShare) as excinfo:
        target.backups.restore(result.data, [shares[0], altered, shares[2], shares[3]],
                       actor=ACTOR)  # fmt: skip
    assert excinfo.value.wrong_indices == (2,)
    with pytest.raises(ShareMismatch, match="does not belong to backup"):
        target.backups.restore(result.data, other.shares[:3], actor=ACTOR)
    with pytest.raises(ShareMismatch):
        target.backups.restore(result.data, [shares[0], shares[1], other.shares[2]], actor=ACTOR)
    _assert_empty(target)
    report = target.backups.restore(result.data, shares[2:], actor=ACTOR)  # the right ones
    assert report.counts.keys == 2


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_tampered_backup_is_refused_and_nothing_written(
    service: KeyService, target: KeyService
) -> None:
    _small_store(service)
    result = service.backups.create(threshold=2, shares=3, actor=ACTOR)
    shares = result.shares[:2]
    data = result.data

    def flipped(position: int, bit: int = 0) -> bytes:
        out = bytearray(data)
        out[position] ^= 1 << bit
        return bytes(out)

    for position in range(HEADER_SIZE):
        with pytest.raises((BackupError, ShareError)):
            target.backups.restore(flipped(position, position % 8), shares, actor=ACTOR)
    body_positions = [HEADER_SIZE, HEADER_SIZE + 7, HEADER_SIZE + 40, len(data) // 2,
                      len(data) - 17, len(data) - 1]  # fmt: skip
    for position in body_positions:
        with pytest.raises(BackupCorrupted, match="backup is corrupted or was altered"):
            target.backups.restore(flipped(position), shares, actor=ACTOR)
    # The header's counts and audit head are bound as well, not just parsed.
    for position in (50, 80, 100):
        with pytest.raises(BackupCorrupted, match="backup is corrupted or was altered"):
            target.backups.restore(flipped(position), shares, actor=ACTOR)
    with pytest.raises(UnsupportedBackupVersion):
        target.backups.restore(flipped(4, 1), shares, actor=ACTOR)
    for broken in (data[:-1], data + b"\x00", data[:HEADER_SIZE], b"not a backup", b""):
        with pytest.raises(BackupCorrupted):
            target.backups.restore(broken, shares, actor=ACTOR)
    _assert_empty(target)
    assert target.backups.restore(data, shares, actor=ACTOR).counts.keys == 2


def test_restore_into_a_non_empty_store_is_refused(service: KeyService, target: KeyService) -> None:
    _small_store(service)
    result = service.backups.create(threshold=2, shares=2, actor=ACTOR)
    before = _counts(service)
    with pytest.raises(StoreNotEmpty, match="empty store"):
        service.backups.restore(result.data, result.shares, actor=ACTOR)
    assert _counts(service) == before
    # An audit event alone makes a store non-empty.
    with target.db.session() as session:
        target.audit.log.append(
            session, event_type="service.start", actor="system", result="success"
        )
    with pytest.raises(StoreNotEmpty, match="1 qrc_audit_events"):
        target.backups.restore(result.data, result.shares, actor=ACTOR)
    assert _counts(target)["qrc_audit_events"] == 1 and _counts(target)["qrc_keys"] == 0


class _FailingCustody(Custody):
    """A custody that goes offline after a number of wraps."""

    kind = "test"

    def __init__(self, inner: Custody, wraps: int) -> None:
        self.inner, self.left = inner, wraps

    @property
    def kek_id(self) -> str:
        return self.inner.kek_id

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        if self.left <= 0:
            raise CustodyUnavailable("token removed")
        self.left -= 1
        return self.inner.wrap(plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return self.inner.unwrap(blob, aad)

    def health(self) -> CustodyHealth:
        return self.inner.health()


def test_failure_in_the_middle_of_a_restore_writes_nothing(
    service: KeyService, target: KeyService
) -> None:
    _small_store(service)
    service.keys.create_key(name="third", purpose="key_wrapping", actor=ACTOR)
    result = service.backups.create(threshold=2, shares=3, actor=ACTOR)
    flaky = KeyService(target.db, Keyring(_FailingCustody(target.keyring.current, wraps=2)))
    with pytest.raises(CustodyUnavailable):
        flaky.backups.restore(result.data, result.shares[:2], actor=ACTOR)
    _assert_empty(target)
    target.backups.restore(result.data, result.shares[:2], actor=ACTOR)
    assert len(target.keys.list_keys()[0]) == 3


@sqlite_only
def test_shares_sealed_to_custodians(service: KeyService, tmp_path: Path) -> None:
    ciphertext = _small_store(service)
    custodians = [generate_private_key("X25519MLKEM768") for _ in range(5)]
    assert all(isinstance(c, KemPrivateKey) for c in custodians)
    privates = [c for c in custodians if isinstance(c, KemPrivateKey)]
    result = service.backups.create(threshold=3, shares=5, actor=ACTOR,
                           custodians=[c.public_key() for c in privates])  # fmt: skip
    assert result.shares == [] and len(result.sealed_shares) == 5
    for share_blob in result.sealed_shares:
        assert share_blob[:4] == b"QRCC"
        assert result.summary.set_id in share_blob  # the label, in clear
    with pytest.raises(InvalidShare, match="does not open"):
        open_sealed_share(result.sealed_shares[0], privates[1])
    opened = [open_sealed_share(result.sealed_shares[i], privates[i]) for i in (1, 3, 4)]
    assert [s.x for s in opened] == [2, 4, 5]
    target = KeyService(
        Database(f"sqlite:///{tmp_path / 'dr.db'}"), Keyring(_new_custody(tmp_path / "dr"))
    )
    target.db.upgrade()
    target.backups.restore(result.data, opened, actor=ACTOR)
    assert target.crypto.decrypt("k", ciphertext, actor=ACTOR, context=b"ctx") == b"payload"
    target.db.dispose()


@sqlite_only
def test_custodian_keys_are_checked(service: KeyService) -> None:
    pq = generate_private_key("X25519MLKEM768")
    classical = generate_private_key("X25519")
    signing = generate_private_key("ML-DSA-44")
    assert isinstance(pq, KemPrivateKey) and isinstance(classical, KemPrivateKey)
    with pytest.raises(InvalidRequest, match="3 custodian keys, not 2"):
        service.backups.create(threshold=2, shares=3, actor=ACTOR,
                      custodians=[pq.public_key()] * 2)  # fmt: skip
    with pytest.raises(InvalidRequest, match="not post-quantum"):
        service.backups.create(threshold=2, shares=2, actor=ACTOR,
                      custodians=[pq.public_key(), classical.public_key()])  # fmt: skip
    with pytest.raises(InvalidRequest, match="KEM public keys"):
        service.backups.create(threshold=2, shares=2, actor=ACTOR,
                      custodians=[pq.public_key(), signing.public_key()])  # type: ignore[list-item]  # fmt: skip
    assert _counts(service)["qrc_audit_events"] == 0


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_broken_audit_chain_is_not_backed_up_unless_allowed(
    service: KeyService, target: KeyService
) -> None:
    _small_store(service)
    with service.db.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="mallory"))
    with pytest.raises(AuditChainBroken, match="does not verify") as excinfo:
        service.backups.create(threshold=2, shares=2, actor=ACTOR)
    assert excinfo.value.report.first_bad_event == 2
    with service.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 3  # no event
    result = service.backups.create(threshold=2, shares=2, actor=ACTOR, allow_broken_audit=True)
    with pytest.raises(AuditChainBroken):
        target.backups.restore(result.data, result.shares, actor=ACTOR)
    _assert_empty(target)
    report = target.backups.restore(result.data, result.shares, actor=ACTOR,
                            allow_broken_audit=True)  # fmt: skip
    assert not report.audit.valid and report.audit.first_bad_event == 2


@sqlite_only
def test_checkpoint_signatures_are_checked_at_restore(
    service: KeyService, target: KeyService
) -> None:
    _small_store(service)
    signer = generate_private_key("ML-DSA-65")
    impostor = generate_private_key("ML-DSA-65")
    assert isinstance(signer, SigningKey) and isinstance(impostor, SigningKey)
    _checkpoint(service, signer)
    with pytest.raises(AuditChainBroken, match="unknown"):  # not a key of this store
        service.backups.create(threshold=2, shares=2, actor=ACTOR)
    result = service.backups.create(threshold=2, shares=2, actor=ACTOR,
                           audit_public_keys={(SIGNER_ID, 1): signer.public_key()})  # fmt: skip
    with pytest.raises(AuditChainBroken, match="signature"):
        target.backups.restore(result.data, result.shares, actor=ACTOR,
                       audit_public_keys={(SIGNER_ID, 1): impostor.public_key()})  # fmt: skip
    _assert_empty(target)
    report = target.backups.restore(result.data, result.shares, actor=ACTOR,
                            audit_public_keys={(SIGNER_ID, 1): signer.public_key()})  # fmt: skip
    assert report.audit.valid and report.audit.checkpoints_verified == 1


@sqlite_only
def test_kek_records_of_the_target_are_kept(service: KeyService, target: KeyService) -> None:
    # Installation records (the target's KEKs) are not part of the data: a store that has
    # registered its own KEK is still empty for restore.
    _small_store(service)
    result = service.backups.create(threshold=2, shares=2, actor=ACTOR)
    with target.db.session() as session:
        session.add(KekRecord(id=target.keyring.current.kek_id, custody="local", status="current"))
    target.backups.restore(result.data, result.shares, actor=ACTOR)
    assert _counts(target)["qrc_keks"] == 1


def test_share_objects_only(service: KeyService, target: KeyService) -> None:
    _small_store(service)
    result = service.backups.create(threshold=2, shares=2, actor=ACTOR)
    text_shares = [s.to_text() for s in result.shares]
    with pytest.raises(TypeError):
        target.backups.restore(result.data, text_shares, actor=ACTOR)  # type: ignore[arg-type]
    parsed = [Share.from_text(t) for t in text_shares]
    target.backups.restore(result.data, parsed, actor=ACTOR)
