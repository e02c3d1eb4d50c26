"""Fixtures for the server tests: a key service on SQLite in a temporary data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from tests.keys.conftest import FAST_ARGON2


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    db = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    service = KeyService(db, Keyring(custody))
    yield service
    service.close()
