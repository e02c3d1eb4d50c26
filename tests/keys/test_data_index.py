"""The encrypted-data index (``service.data``) on SQLite and PostgreSQL: registration,
queries by key, rewrap records, shred reports, and backups that keep every column."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.errors import InvalidRequest, KeyNotFound
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from tests.keys.conftest import FAST_ARGON2

ACTOR = "test"
HASH = "sha256:" + "ab" * 32


def _entry(identifier: str, key: str = "data", version: int = 1) -> IndexEntry:
    return IndexEntry(
        identifier,
        key,
        version,
        "sql-column",
        location=f"sql:customers/email/{identifier}",
        integrity_hash=HASH,
        data_class="pii",
    )


def test_register_query_update_and_shred(service: KeyService) -> None:
    key = service.keys.create_key(name="data", purpose="encryption", actor=ACTOR)
    service.keys.create_key(name="other", purpose="encryption", actor=ACTOR)
    assert service.data.register([_entry(f"o{i}") for i in range(5)], actor=ACTOR) == 5
    service.data.register([_entry("elsewhere", "other")], actor=ACTOR)
    # Registering an identifier again updates it (unique), never duplicates.
    service.data.register([_entry("o0")], actor=ACTOR)
    records = service.data.under("data")
    assert [r.identifier for r in records] == [f"o{i}" for i in range(5)]
    first = records[0]
    assert first.key_id == key.id and first.algorithm == key.algorithm
    assert first.location == "sql:customers/email/o0" and first.integrity_hash == HASH
    assert first.data_type == "sql-column" and first.rewrapped_at is None
    page = service.data.under("data", after=records[1].seq, limit=2)
    assert [r.identifier for r in page] == ["o2", "o3"]

    service.keys.rotate("data", actor=ACTOR)
    assert len(service.data.under("data", below_version=2)) == 5
    service.data.mark_rewrapped([("o1", 2, "sha256:" + "cd" * 32)], key="data", actor=ACTOR)
    moved = service.data.get("o1")
    assert moved.key_version == 2 and moved.rewrapped_at is not None
    assert len(service.data.under("data", below_version=2)) == 4
    with pytest.raises(InvalidRequest):  # not under this key
        service.data.mark_rewrapped([("elsewhere", 1, None)], key="data", actor=ACTOR)
    with pytest.raises(InvalidRequest):  # a version the key does not have
        service.data.mark_rewrapped([("o2", 9, None)], key="data", actor=ACTOR)

    report = service.data.shred_report("data")
    assert not report.shredded and len(report.objects) == 5
    service.keys.schedule_destruction("data", actor=ACTOR, delay=timedelta(0))
    service.scheduler.run_due()
    report = service.data.shred_report("data")
    assert report.shredded and report.destroyed_at is not None
    assert {r.identifier for r in report.objects} == {f"o{i}" for i in range(5)}
    assert [r.identifier for r in service.data.shred_report("other").objects] == ["elsewhere"]


@pytest.mark.parametrize(
    "bad",
    [
        IndexEntry("", "data", 1, "sql-column"),
        IndexEntry("x" * 501, "data", 1, "sql-column"),
        IndexEntry("a\nb", "data", 1, "sql-column"),
        IndexEntry("ok", "data", 1, "SQL Column"),
        IndexEntry("ok", "data", 1, "blob", integrity_hash="md5:abc"),
        IndexEntry("ok", "data", 0, "blob"),
        IndexEntry("ok", "data", 7, "blob"),
        IndexEntry("ok", "data", 1, "blob", location="l" * 1001),
    ],
)
def test_bad_entries_are_refused_whole(service: KeyService, bad: IndexEntry) -> None:
    service.keys.create_key(name="data", purpose="encryption", actor=ACTOR)
    with pytest.raises(InvalidRequest):
        service.data.register([_entry("good"), bad], actor=ACTOR)
    assert service.data.under("data") == []  # nothing of the batch was kept


def test_unknown_keys_and_objects(service: KeyService) -> None:
    with pytest.raises(KeyNotFound):
        service.data.register([_entry("x", "nope")], actor=ACTOR)
    with pytest.raises(KeyNotFound):
        service.data.under("nope")
    with pytest.raises(LookupError):
        service.data.get("nothing")


def test_backup_and_restore_keep_the_index(service: KeyService, tmp_path: Path) -> None:
    service.keys.create_key(name="data", purpose="encryption", actor=ACTOR)
    service.data.register([_entry("o1"), _entry("o2")], actor=ACTOR)
    service.keys.rotate("data", actor=ACTOR)
    service.data.mark_rewrapped([("o2", 2, HASH)], key="data", actor=ACTOR)
    before = service.data.under("data")
    result = service.backups.create(threshold=2, shares=3, actor=ACTOR)

    target_db = Database(f"sqlite:///{tmp_path / 'restored.db'}")
    target_db.upgrade()
    custody = LocalCustody.create(tmp_path / "kek2.sealed", "other", params=FAST_ARGON2)
    restored = KeyService(target_db, Keyring(custody))
    restored.backups.restore(result.data, result.shares[:2], actor=ACTOR)
    after = restored.data.under("data")
    assert after == before
    assert after[1].rewrapped_at is not None and after[1].location == "sql:customers/email/o2"
    restored.close()


def test_migration_makes_identifiers_unique_without_losing_rows(db: Database) -> None:
    """An index written before 0003 may repeat an identifier: the upgrade keeps every row."""
    from alembic import command
    from sqlalchemy import text

    from qrc.keys.store.migrations import alembic_config

    command.downgrade(alembic_config(db.engine), "0002")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO qrc_keys (id, name, algorithm, purpose, status, primary_version, "
                "min_decryption_version, labels, created_at, updated_at) VALUES ('k_1', 'n', "
                "'AES-256-GCM', 'encryption', 'active', 1, 1, '{}', :t, :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
        for ref in ("a", "a", "b", "a"):
            conn.execute(
                text(
                    "INSERT INTO qrc_encrypted_data_index (key_id, key_version, algorithm, "
                    "data_ref, created_at) VALUES ('k_1', 1, 'AES-256-GCM', :r, :t)"
                ),
                {"r": ref, "t": "2026-01-01 00:00:00"},
            )
    db.upgrade()
    with db.engine.connect() as conn:
        refs = conn.execute(text("SELECT id, data_ref FROM qrc_encrypted_data_index ORDER BY id"))
        rows = [tuple(row) for row in refs]
    assert [ref for _, ref in rows] == ["a", f"a#{rows[1][0]}", "b", f"a#{rows[3][0]}"]


def test_an_identifier_twice_in_one_batch_is_one_object(service: KeyService) -> None:
    service.keys.create_key(name="data", purpose="encryption", actor=ACTOR)
    service.keys.rotate("data", actor=ACTOR)
    service.data.register([_entry("same"), _entry("same", version=2)], actor=ACTOR)
    (record,) = service.data.under("data")
    assert record.identifier == "same" and record.key_version == 2
