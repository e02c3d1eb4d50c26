"""Fixtures for the data-at-rest tests: a key service (SQLite store, local sealed KEK), the
SDK over it, and the real PostgreSQL and Redis of this machine."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from qrc.data.sdk import DataEncryptor
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

ACTOR = "test"
REDIS_URL = os.environ.get("QRC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def make_service(directory: Path, url: str | None = None) -> KeyService:
    """A key service over a new store (SQLite in ``directory`` unless ``url``)."""
    directory.mkdir(parents=True, exist_ok=True)
    db = Database(url or f"sqlite:///{directory / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(directory / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    return KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    svc = make_service(tmp_path / "svc")
    svc.keys.create_key(name="sym", purpose="encryption", algorithm="AES-256-GCM", actor=ACTOR)
    svc.keys.create_key(name="pq", purpose="encryption", algorithm="X25519MLKEM768", actor=ACTOR)
    yield svc
    svc.close()


@pytest.fixture
def sdk(service: KeyService) -> Iterator[DataEncryptor]:
    encryptor = DataEncryptor.local(service)
    yield encryptor
    encryptor.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (dropped afterwards)."""
    with fresh_database() as url:
        yield url


def destroy_now(service: KeyService, ref: str) -> None:
    """Crypto-shred ``ref`` at once (tests allow a zero waiting period)."""
    service.keys.schedule_destruction(ref, actor=ACTOR, delay=timedelta(0))
    assert service.scheduler.run_due()["destroyed"] >= 1


@pytest.fixture
def redis_client() -> Iterator[object]:
    """A redis-py client on the real server; every key the test writes starts with its
    prefix (``client.qrc_prefix``) and is deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Redis not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    prefix = "qrc-test:" + secrets.token_hex(6) + ":"
    client.qrc_prefix = prefix  # type: ignore[attr-defined]
    yield client
    for name in client.scan_iter(match=prefix + "*"):
        client.delete(name)
    client.close()
