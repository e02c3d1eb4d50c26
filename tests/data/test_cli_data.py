"""``qrc data`` as a user runs it, in real subprocesses against the real PostgreSQL and Redis:
encrypt-column and rewrap killed with SIGKILL mid-run and resumed, the index, shred reports.

The data directory's key service is opened in this process between runs (library mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, create_engine, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from qrc.crypto.errors import DecryptionError
from qrc.data.columns import EncryptedText, use_encryptor
from qrc.data.encrypt_column import ColumnError, encrypt_column
from qrc.data.redis import EncryptedRedis
from qrc.data.sdk import DataEncryptor
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.custody.local import KEK_FILE, LocalCustody
from qrc.keys.errors import OperationNotPermitted
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.service import KeyService
from tests.data.conftest import REDIS_URL
from tests.keys.conftest import FAST_ARGON2

PASSPHRASE = "data cli passphrase"
REPO = Path(__file__).resolve().parents[2]
ROWS = 120


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(EncryptedText("pii", bind_primary_key=True))


def _email(i: int) -> str:
    return f"person{i}@example.org"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "qrc"
    directory.mkdir(mode=0o700)
    # Sealed with cheap Argon2 parameters (kept in the file): every run unseals it quickly.
    LocalCustody.create(directory / KEK_FILE, PASSPHRASE, params=FAST_ARGON2).close()
    with _service(directory) as service:
        service.keys.create_key(
            name="pii", purpose="encryption", algorithm="AES-256-GCM", actor="test"
        )
    return directory


class _service:
    def __init__(self, directory: Path) -> None:
        config = ServiceConfig(directory, custody=CustodyConfig(master_passphrase=PASSPHRASE))
        self.service = open_service(config)

    def __enter__(self) -> KeyService:
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.service.close()


def _command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "qrc", "data", "--data-dir", str(data_dir), *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
    env["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    return env


def run(data_dir: Path, *args: str, code: int = 0) -> Any:
    result = subprocess.run(
        _command(data_dir, *args, "--json"),
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout) if code == 0 else result.stderr


def kill_when(data_dir: Path, args: list[str], reached: Any) -> None:
    """Start ``qrc data ARGS``, SIGKILL it as soon as ``reached()`` holds."""
    proc = subprocess.Popen(
        _command(data_dir, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=REPO,
    )
    try:
        while proc.poll() is None and not reached():
            time.sleep(0.01)  # polling, not a timed assertion
        assert proc.poll() is None, "the job finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.fixture
def people(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(
            text("INSERT INTO people (id, email) VALUES (:id, :email)"),
            [{"id": i, "email": _email(i)} for i in range(1, ROWS + 1)],
        )
    yield engine
    engine.dispose()


def _encrypted(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            select(func.count()).select_from(text("people")).where(text("email LIKE 'qrcd1:%'"))
        )


def _read_all(engine: Engine, sdk: DataEncryptor) -> list[str]:
    use_encryptor(sdk)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(Person.email).order_by(Person.id)))
    finally:
        use_encryptor(None)


@pytest.mark.slow
def test_encrypt_column_killed_and_resumed(data_dir: Path, people: Engine, pg_url: str) -> None:
    args = ["--url", pg_url, "--table", "people", "--column", "email", "--key", "pii"]
    dry = run(data_dir, "encrypt-column", *args, "--dry-run")
    assert dry["dry_run"] and dry["to_encrypt"] == ROWS and _encrypted(people) == 0
    job = ["encrypt-column", *args, "--bind-primary-key", "--index", "--batch-size", "4"]
    target = random.randint(1, ROWS // 4)
    kill_when(data_dir, job, lambda: _encrypted(people) >= target)
    done_at_kill = _encrypted(people)
    assert 0 < done_at_kill < ROWS
    # Every row is whole: plaintext, or a ciphertext of its own plaintext.
    with people.connect() as conn:
        raw = dict(conn.execute(text("SELECT id, email FROM people")).all())
    assert all(v == _email(i) or v.startswith("qrcd1:") for i, v in raw.items())

    report = run(data_dir, *job)
    assert report["already_encrypted"] == done_at_kill
    assert report["encrypted"] == ROWS - done_at_kill and report["indexed"] == report["encrypted"]
    again = run(data_dir, *job)
    assert again["encrypted"] == 0 and again["already_encrypted"] == ROWS  # nothing twice

    with _service(data_dir) as service:
        sdk = DataEncryptor.local(service)
        assert _read_all(people, sdk) == [_email(i) for i in range(1, ROWS + 1)]
        indexed = service.data.under("pii", limit=1000)
        sdk.close()
    # Killed between the index registration and the commit or after: every row is indexed.
    assert {r.location for r in indexed} >= {f"sql:people/email/{i}" for i in range(1, ROWS + 1)}


def test_encrypt_column_refuses_fake_markers_and_bad_tables(
    data_dir: Path, people: Engine, pg_url: str
) -> None:
    base = ["--url", pg_url, "--column", "email", "--key", "pii"]
    with people.begin() as conn:
        conn.execute(text("UPDATE people SET email = 'qrcd1:not-a-ciphertext' WHERE id = 7"))
    message = run(data_dir, "encrypt-column", *base, "--table", "people", code=2)
    assert "1 values of people.email start with 'qrcd1:'" in message
    assert _encrypted(people) == 1  # nothing written
    with pytest.raises(ColumnError, match="no table 'nope'"):
        encrypt_column(pg_url, "nope", "email", "pii", None, dry_run=True)
    with pytest.raises(ColumnError, match="no column 'other'"):
        encrypt_column(pg_url, "people", "other", "pii", None, dry_run=True)


@pytest.mark.slow
def test_rewrap_killed_at_random_points_then_everything_reads(
    data_dir: Path, people: Engine, pg_url: str, redis_client: Any
) -> None:
    prefix = redis_client.qrc_prefix
    run(data_dir, "encrypt-column", "--url", pg_url, "--table", "people", "--column", "email",
        "--key", "pii", "--bind-primary-key", "--index", "--batch-size", "100")  # fmt: skip
    with _service(data_dir) as service:
        sdk = DataEncryptor.local(service)
        wrapped = EncryptedRedis(redis_client, sdk, "pii", register=True)
        for i in range(20):
            wrapped.set(f"{prefix}s{i}", f"value {i}")
        wrapped.hset(f"{prefix}h", mapping={"a": "1", "b": "2"})
        sdk.close()
        service.keys.rotate("pii", actor="test")
        total = len(service.data.under("pii", below_version=2, limit=1000))
    assert total == ROWS + 22

    job = ["rewrap", "--key", "pii", "--sql-url", pg_url, "--redis-url", REDIS_URL,
           "--batch-size", "5"]  # fmt: skip
    for _ in range(2):
        target = _indexed_at_v2(data_dir) + random.randint(1, 20)
        kill_when(data_dir, job, lambda target=target: _indexed_at_v2(data_dir) >= target)
        # Killed between a write and the index update: the row is ahead of the index.
        assert 0 < _rewrapped_rows(people) < ROWS
    report = run(data_dir, *job)
    assert report["unreadable"] == 0 and report["missing"] == 0
    assert report["rewrapped"] + report["already_current"] > 0

    with _service(data_dir) as service:
        assert service.data.under("pii", below_version=2) == []
        service.keys.set_min_decryption_version("pii", 2, actor="test")
        sdk = DataEncryptor.local(service)
        assert _read_all(people, sdk) == [_email(i) for i in range(1, ROWS + 1)]
        reader = EncryptedRedis(redis_client, sdk, "pii")
        assert [reader.get(f"{prefix}s{i}") for i in range(20)] == [
            f"value {i}".encode() for i in range(20)
        ]
        assert reader.hgetall(f"{prefix}h") == {b"a": b"1", b"b": b"2"}
        records = service.data.under("pii", limit=1000)
        sdk.close()
    assert all(r.key_version == 2 and r.rewrapped_at is not None for r in records)


def _indexed_at_v2(data_dir: Path) -> int:
    """Objects the index shows under version 2 (read straight from the SQLite store)."""
    with contextlib.closing(sqlite3.connect(data_dir / "qrc.db", timeout=30)) as conn:
        query = "SELECT count(*) FROM qrc_encrypted_data_index WHERE key_version = 2"
        return int(conn.execute(query).fetchone()[0])


def _rewrapped_rows(engine: Engine) -> int:
    """Rows whose value names version 2 (read from the header, no key needed)."""
    from qrc.data.format import from_text, parse

    with engine.connect() as conn:
        values = conn.execute(text("SELECT email FROM people")).scalars().all()
    return sum(1 for v in values if parse(from_text(v)).key_version == 2)


@pytest.mark.slow
def test_shred_report_and_index_list(data_dir: Path, people: Engine, pg_url: str) -> None:
    run(data_dir, "encrypt-column", "--url", pg_url, "--table", "people", "--column", "email",
        "--key", "pii", "--index", "--bind-primary-key")  # fmt: skip
    with _service(data_dir) as service:
        sdk = DataEncryptor.local(service)
        assert _read_all(people, sdk)[:2] == [_email(1), _email(2)]  # readable before
        sdk.close()
    listed = run(data_dir, "index", "list", "--key", "pii", "--limit", "10")
    assert len(listed["objects"]) == 10 and listed["objects"][0]["data_type"] == "sql-column"
    shown = run(data_dir, "index", "show", listed["objects"][3]["identifier"])
    assert shown == listed["objects"][3]
    assert "no indexed object" in run(data_dir, "index", "show", "nothing/here", code=2)
    before = run(data_dir, "shred-report", "--key", "pii")
    assert not before["shredded"] and len(before["objects"]) == ROWS
    with _service(data_dir) as service:
        from datetime import timedelta

        service.keys.schedule_destruction("pii", actor="test", delay=timedelta(days=7))
        service.scheduler.run_due(now=service.clock() + timedelta(days=8))
    after = run(data_dir, "shred-report", "--key", "pii")
    assert after["shredded"] and after["status"] == "destroyed" and len(after["objects"]) == ROWS
    # ... and they are indeed gone: no row decrypts any more.
    with _service(data_dir) as service:
        sdk = DataEncryptor.local(service)
        with pytest.raises((OperationNotPermitted, DecryptionError)):
            _read_all(people, sdk)
        sdk.close()
