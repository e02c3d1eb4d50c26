"""Several processes on one PostgreSQL store, and processes killed mid-operation.

Real OS processes (``tests/keys/worker.py``) against the real server: two callers rotating
the same key at once, two schedulers running the same due jobs, and a process dying in the
middle of a rotation or a destruction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.keys.store.models import Key, KeyVersion
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[tuple[KeyService, str, Path]]:
    kek = tmp_path / "kek.sealed"
    custody = LocalCustody.create(kek, "test passphrase", params=FAST_ARGON2)
    with fresh_database() as url:
        db = Database(url)
        db.upgrade()
        yield KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0)), url, kek
        db.dispose()


def _start(
    action: str, url: str, kek: Path, arg: str, at: float = 0.0, **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.keys.worker", action, url, str(kek), arg, str(at)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _result(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_two_processes_rotating_the_same_key_make_exactly_one_version(
    pg_store: tuple[KeyService, str, Path],
) -> None:
    service, url, kek = pg_store
    service.keys.create_key(name="shared", purpose="encryption", actor="test")
    at = time.time() + 2.0  # both past their imports, then go together
    results = [
        _result(p) for p in [_start("rotate-if-1", url, kek, "shared", at) for _ in range(2)]
    ]
    assert sorted(bool(r["rotated"]) for r in results) == [False, True]
    assert service.keys.count_versions("shared") == 2
    assert service.keys.get_key("shared").version == 2


def test_unconditional_concurrent_rotations_serialise(
    pg_store: tuple[KeyService, str, Path],
) -> None:
    service, url, kek = pg_store
    service.keys.create_key(name="k", purpose="signing", actor="test", algorithm="ML-DSA-44")
    at = time.time() + 2.0
    versions = sorted(
        int(_result(p)["version"]) for p in [_start("rotate", url, kek, "k", at) for _ in range(2)]
    )  # type: ignore[call-overload]
    assert versions == [2, 3]
    with service.db.session() as session:
        rows = session.scalars(select(KeyVersion.version).order_by(KeyVersion.version)).all()
    assert rows == [1, 2, 3]


def test_two_schedulers_run_each_due_job_exactly_once(
    pg_store: tuple[KeyService, str, Path],
) -> None:
    service, url, kek = pg_store
    for i in range(8):
        service.keys.create_key(
            name=f"r{i}",
            purpose="encryption",
            actor="test",
            algorithm="ML-KEM-768",
            rotation_period=timedelta(minutes=1),
        )
    for i in range(4):
        service.keys.create_key(
            name=f"d{i}", purpose="encryption", actor="test", algorithm="ML-KEM-768"
        )
        service.keys.schedule_destruction(f"d{i}", actor="test", delay=timedelta(0))
    with service.db.session() as session:  # make every rotation due now
        for key in session.scalars(select(Key).where(Key.name.startswith("r"))):
            key.next_rotation_at = key.created_at
    at = time.time() + 2.0
    results = [_result(p) for p in [_start("run-due", url, kek, "", at) for _ in range(2)]]
    assert sum(int(r["rotated"]) for r in results) == 8  # type: ignore[call-overload]
    assert sum(int(r["destroyed"]) for r in results) == 4  # type: ignore[call-overload]
    for i in range(8):
        assert service.keys.count_versions(f"r{i}") == 2
    with service.db.session() as session:
        report = service.audit.log.verify(session)
        rotations = session.scalar(
            select(func.count()).select_from(KeyVersion).where(KeyVersion.version == 2)
        )
    assert report.valid and rotations == 8


@pytest.mark.parametrize(
    ("fault", "action"),
    [("rotate-after-insert", "rotate"), ("destroy-after-first-version", "destroy-now")],
)
def test_process_killed_mid_operation_leaves_the_store_consistent(
    pg_store: tuple[KeyService, str, Path], fault: str, action: str
) -> None:
    service, url, kek = pg_store
    service.keys.create_key(name="victim", purpose="encryption", actor="test")
    service.keys.rotate("victim", actor="test")
    service.keys.create_key(
        name="bystander", purpose="signing", actor="test", algorithm="ML-DSA-44"
    )
    sealed = service.crypto.encrypt("victim", b"survives", actor="test")
    if action == "destroy-now":
        service.keys.schedule_destruction("victim", actor="test", delay=timedelta(0))
    process = _start(action, url, kek, "victim", QRC_TEST_FAULT=fault)
    process.communicate(timeout=120)
    assert process.returncode == 70  # died at the fault point, mid-transaction
    # Nothing half-done: same versions, material intact, chain valid, keys usable.
    assert service.keys.count_versions("victim") == 2
    if action == "destroy-now":
        service.keys.cancel_destruction("victim", actor="test")
    assert service.crypto.decrypt("victim", sealed.ciphertext, actor="test") == b"survives"
    assert service.keys.rotate("victim", actor="test").version == 3
    signed = service.crypto.sign("bystander", b"m", actor="test")
    assert service.crypto.verify("bystander", b"m", signed.signature, actor="test") == 1
    with service.db.session() as session:
        assert service.audit.log.verify(session).valid
