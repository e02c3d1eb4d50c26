"""``qrc migrate`` as an operator types it, in a subprocess, on a real data directory and an
application database holding encrypted rows."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from qrc.crypto.registry import BUILT_IN_STATUS, Status
from qrc.data.format import from_text, parse, to_text
from qrc.data.sdk import DataEncryptor, integrity_hash
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.policy import AlgorithmPolicy
from qrc.keys.service import KeyService
from tests.keys.conftest import FAST_ARGON2

PASSPHRASE = "migrate cli passphrase"
OLD = "ML-KEM-768"
ROWS = 3
_SCRUBBED = ("QRC_DATABASE_URL", "QRC_CUSTODY", "QRC_DATA_DIR")


def _service(data: Path) -> KeyService:
    # Statuses go to this dict, not the process-wide registry other tests share.
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)
    config = ServiceConfig(data, custody=CustodyConfig(master_passphrase=PASSPHRASE))
    return open_service(config, policy=AlgorithmPolicy(apply=statuses.__setitem__))


def qrc(data: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and "PKCS11" not in k}
    env["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "qrc", "migrate", *map(str, args), "--data-dir", str(data)],
        capture_output=True, text=True, env=env, timeout=180, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _fast_kek(data: Path) -> None:
    """The data directory's sealed KEK with cheap Argon2 parameters (every command opens it)."""
    data.mkdir(mode=0o700, parents=True)
    LocalCustody.create(data / "kek.sealed", PASSPHRASE, params=FAST_ARGON2)


def _setup(data: Path, app_db: Path) -> None:
    _fast_kek(data)
    service = _service(data)
    try:
        for name in ("payments", "profiles"):
            service.keys.create_key(name=name, purpose="encryption", algorithm=OLD, actor="t")
        with sqlite3.connect(app_db) as db:
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        entries = []
        with DataEncryptor.local(service) as sdk, sqlite3.connect(app_db) as db:
            for row in range(ROWS):
                blob = sdk.encrypt("payments", f"row-{row}".encode(), context=b"t")
                db.execute("INSERT INTO t VALUES (?, ?)", (row, to_text(blob)))
                entries.append(
                    IndexEntry(
                        f"t/{row}",
                        "payments",
                        1,
                        "sql-column",
                        location=f"sql:t/v/{row}",
                        integrity_hash=integrity_hash(blob),
                    )
                )
        service.data.register(entries, actor="t")
    finally:
        service.close()


def _rows(data: Path, app_db: Path) -> list[tuple[int, bytes]]:
    service = _service(data)
    try:
        with DataEncryptor.local(service) as sdk, sqlite3.connect(app_db) as db:
            stored = [from_text(v) for (v,) in db.execute("SELECT v FROM t ORDER BY id")]
            return [(parse(b).key_version, sdk.decrypt(b, context=b"t")) for b in stored]
    finally:
        service.close()


def test_plan_update_run_resume(tmp_path: Path) -> None:
    data, app_db = tmp_path / "data", tmp_path / "app.db"
    _setup(data, app_db)
    sql = f"sqlite:///{app_db}"

    plan = qrc(data, "plan", "ml-kem-768", "--json")
    assert plan.returncode == 0, plan.stderr
    body = json.loads(plan.stdout)
    assert body["algorithm"] == OLD and body["counts"]["keys_to_rotate"] == 2
    assert body["counts"]["objects"] == ROWS
    human = qrc(data, "plan", OLD)
    assert "migration off ML-KEM-768" in human.stdout and "objects 3 sql-column" in human.stdout

    # Not on a terminal and without --yes: refused, with what to do.
    refused = qrc(data, "run", OLD)
    assert refused.returncode == 2 and "--yes" in refused.stderr and "--dry-run" in refused.stderr

    dry = qrc(data, "update", f"{OLD}=deprecated", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    answer = json.loads(dry.stdout)
    assert answer["applied"] is False and answer["migrations"][0]["dry_run"] is True
    assert [v for v, _ in _rows(data, app_db)] == [1] * ROWS

    # Without the application's database the rows cannot move: not complete (exit 3).
    partial = qrc(data, "update", f"{OLD}=deprecated", "--yes")
    assert partial.returncode == 3, partial.stderr
    assert "qrc data rewrap payments" in partial.stdout and "run it again" in partial.stdout
    assert "keys 2/2" in partial.stderr  # progress, one line per event off a terminal

    finished = qrc(data, "run", OLD, "--yes", "--sql-url", sql, "--json")
    assert finished.returncode == 0, finished.stderr + finished.stdout
    run = json.loads(finished.stdout)
    assert run["complete"] is True and run["rotated"] == []
    assert run["rewrapped"][0]["rewrapped"] == ROWS
    assert _rows(data, app_db) == [(2, f"row-{i}".encode()) for i in range(ROWS)]

    service = _service(data)
    try:
        assert all(service.keys.get_key(n).algorithm != OLD for n in ("payments", "profiles"))
        assert service.current_policy()["algorithm_status"][OLD] == "deprecated"
    finally:
        service.close()


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _fast_kek(data)
    _service(data).close()
    unknown = qrc(data, "plan", "ROT13")
    assert unknown.returncode == 2 and "unknown algorithm 'ROT13'" in unknown.stderr
    malformed = qrc(data, "update", "ML-KEM-768", "--yes")
    assert malformed.returncode == 2 and "ALG=STATUS" in malformed.stderr
    target = qrc(data, "run", OLD, "--yes", "--sql-url", "nosuchdriver://x")
    assert target.returncode == 2 and "--sql-url" in target.stderr
