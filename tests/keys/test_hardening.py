"""Defects found under attack, each tried again as the attacker did."""

from __future__ import annotations

import struct
from datetime import timedelta
from pathlib import Path

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.errors import InvalidRequest, KeyNotFound, OperationNotPermitted
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.operations import MAX_VERSIONS_TRIED
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

ACTOR = "test"


def _with_version(ciphertext: bytes, key_id: str, version: int) -> bytes:
    """The envelope with its header's key-version field set to ``version`` (no re-sealing)."""
    at = ciphertext.index(key_id.encode("ascii")) + len(key_id)
    return ciphertext[:at] + struct.pack(">I", version) + ciphertext[at + 4 :]


def test_a_tampered_key_version_is_the_opaque_decryption_error(service: KeyService) -> None:
    key = service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    old = service.crypto.encrypt("k", b"old", actor=ACTOR)
    service.keys.rotate("k", actor=ACTOR)
    service.keys.rotate("k", actor=ACTOR)
    service.keys.set_min_decryption_version("k", 2, actor=ACTOR)
    new = service.crypto.encrypt("k", b"new", actor=ACTOR)
    assert new.key_version == 3
    # A genuine ciphertext of a retired version: the caller may learn it is retired.
    with pytest.raises(OperationNotPermitted, match="retired"):
        service.crypto.decrypt("k", old.ciphertext, actor=ACTOR)
    # The version field edited (to a retired, a live, a missing version): one opaque error.
    for version in (1, 2, 4, 2**31):
        with pytest.raises(DecryptionError):
            service.crypto.decrypt("k", _with_version(new.ciphertext, key.id, version), actor=ACTOR)
        with pytest.raises(DecryptionError):
            service.crypto.rewrap("k", _with_version(new.ciphertext, key.id, version), actor=ACTOR)
    assert service.crypto.decrypt("k", new.ciphertext, actor=ACTOR) == b"new"


def test_destruction_has_a_minimum_waiting_period(db: Database, custody: LocalCustody) -> None:
    service = KeyService(db, Keyring(custody))  # the configured default: one day at least
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    for delay in (timedelta(0), timedelta(hours=23)):
        with pytest.raises(InvalidRequest, match="at least 1 days"):
            service.keys.schedule_destruction("k", actor="km", delay=delay)
    assert service.keys.get_key("k").status == "active"
    due = service.keys.schedule_destruction("k", actor="km", delay=timedelta(days=1))
    assert due.status == "pending_destruction"


def test_verification_is_bounded_and_uses_the_named_version(service: KeyService) -> None:
    service.keys.create_key(name="s", purpose="signing", algorithm="ML-DSA-44", actor=ACTOR)
    first = service.crypto.sign("s", b"m", actor=ACTOR)
    for _ in range(MAX_VERSIONS_TRIED + 2):
        service.keys.rotate("s", actor=ACTOR)
    # Without a version only the newest few are tried: an old signature needs its version.
    assert service.crypto.verify("s", b"m", first.signature, actor=ACTOR) is None
    assert service.crypto.verify("s", b"m", first.signature, actor=ACTOR, key_version=1) == 1
    assert service.crypto.verify("s", b"x", first.signature, actor=ACTOR, key_version=1) is None
    latest = service.crypto.sign("s", b"m", actor=ACTOR)
    assert service.crypto.verify("s", b"m", latest.signature, actor=ACTOR) == latest.key_version
    assert service.crypto.verify("s", b"m", latest.signature, actor=ACTOR, key_version=99) is None


def test_references_with_control_characters_are_unknown_keys(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    for ref in ("k\x00", "\x00", "k\u0085", "k\n", "x" * 201):
        with pytest.raises(KeyNotFound):
            service.keys.get_key(ref)
        with pytest.raises(KeyNotFound):
            service.crypto.encrypt(ref, b"x", actor=ACTOR)


def test_the_last_admin_token_cannot_be_revoked(service: KeyService) -> None:
    first, _ = service.tokens.create(name="first", role="admin", actor="bootstrap")
    with pytest.raises(InvalidRequest, match="last admin"):
        service.tokens.revoke(first.id, actor="admin")
    second, _ = service.tokens.create(name="second", role="admin", actor="admin")
    service.tokens.revoke(first.id, actor="admin")
    with pytest.raises(InvalidRequest, match="last admin"):
        service.tokens.revoke(second.id, actor="admin")


def test_store_files_are_private(tmp_path: Path) -> None:
    config = ServiceConfig(tmp_path / "data", custody=CustodyConfig(master_passphrase="pass"))
    service = open_service(config)
    try:
        service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    finally:
        service.close()
    files = sorted((tmp_path / "data").iterdir())
    assert any(path.name == "qrc.db" for path in files)
    loose = {p.name: oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o077}
    assert loose == {}, loose


def test_writers_queue_and_a_held_store_is_busy(tmp_path: Path) -> None:
    """Writers of one store take turns (threads and processes); one held too long is busy."""
    import fcntl
    import os
    import threading

    from sqlalchemy import text

    from qrc.keys.store.db import StoreBusy

    db = Database(f"sqlite:///{tmp_path / 'q.db'}", busy_timeout=0.3)
    db.upgrade()
    with db.session() as session:
        session.execute(text("CREATE TABLE counter (n INTEGER)"))
        session.execute(text("INSERT INTO counter VALUES (0)"))

    def bump() -> None:
        for _ in range(25):
            with db.session() as session:
                n = session.execute(text("SELECT n FROM counter")).scalar_one()
                session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.read_session() as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 100
    # Another process holding the writers' lock: after the busy timeout, StoreBusy.
    fd = os.open(tmp_path / "q.db-writer", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(StoreBusy), db.session() as session:
            session.execute(text("SELECT 1"))
        with db.read_session() as session:  # readers do not wait
            assert session.execute(text("SELECT n FROM counter")).scalar_one() == 100
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    db.dispose()
