"""Incident drills: each playbook run as an operator runs it (``qrc incident`` in a
subprocess) against a real data directory, an application database holding encrypted
values, and real event-sink receivers (a signed webhook over PQ TLS, syslog over TCP).

After a key-compromise drill the key no longer encrypts or decrypts, every value reads under
the replacement, the audit chain and its witness verify, and the SIEM holds the notices and
a checkpoint it can verify. An interrupted run is finished by running it again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from qrc.crypto.base import VerifyingKey
from qrc.crypto.errors import AlgorithmNotAllowed, DecryptionError, UnsupportedAlgorithm
from qrc.crypto.keyfile import load_public_pem
from qrc.data.format import from_text, parse, to_text
from qrc.data.rewrap import SqlTarget
from qrc.data.sdk import DataEncryptor, integrity_hash
from qrc.keys.audit.note import verify_note
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.custody.local import KEK_FILE, LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.errors import KeyServiceError
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.service import KeyService
from qrc.monitor.incident_algorithm import algorithm_break
from qrc.monitor.incident_key import REPLACES_LABEL, key_compromise
from qrc.transit.ca import TLSFiles
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database
from tests.monitor.test_sinks import SECRET, Verifier, WebhookReceiver, tls_files  # noqa: F401
from tests.monitor.test_sinks_syslog import StreamReceiver, parse_syslog

PASSPHRASE = "incident drill passphrase"
ROWS = 6
_SCRUBBED = ("QRC_DATABASE_URL", "QRC_CUSTODY", "QRC_DATA_DIR")


class Drill:
    """A data directory, an application database with encrypted values, and the SIEM."""

    def __init__(
        self,
        root: Path,
        files: TLSFiles,
        key: str,
        algorithm: str,
        database_url: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.data = root / "data"
        self.app_db = root / "app.db"
        self.sql_url = f"sqlite:///{self.app_db}"
        self.key = key
        self.webhook = WebhookReceiver(files)
        self.syslog = StreamReceiver()
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self.env |= {
            "QRC_MASTER_PASSPHRASE": PASSPHRASE,
            "QRC_WEBHOOK_URL": self.webhook.url,
            "QRC_WEBHOOK_SECRET": SECRET.decode(),
            "QRC_WEBHOOK_CA_FILE": str(files.ca),
            "QRC_SYSLOG_ADDRESS": f"tcp://127.0.0.1:{self.syslog.port}",
            "QRC_SINK_RETRY_SECONDS": "0.05",
        }
        if database_url is not None:
            self.env["QRC_DATABASE_URL"] = database_url
        with sqlite3.connect(self.app_db) as db:
            db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        # A KEK sealed with cheap Argon2 parameters (kept in the file): each run opens fast.
        self.data.mkdir(mode=0o700)
        LocalCustody.create(self.data / KEK_FILE, PASSPHRASE, params=FAST_ARGON2)
        with self.service() as service:
            service.keys.create_key(
                name=key, purpose="encryption", algorithm=algorithm, actor="drill"
            )
            with DataEncryptor.local(service) as sdk, sqlite3.connect(self.app_db) as db:
                entries = []
                for row in range(ROWS):
                    blob = sdk.encrypt(key, self.plaintext(row), context=self.context(row))
                    db.execute("INSERT INTO customers VALUES (?, ?)", (row, to_text(blob)))
                    header = parse(blob)
                    entries.append(
                        IndexEntry(
                            f"customers/{row}/email",
                            key,
                            header.key_version,
                            "sql-column",
                            location=f"sql:customers/email/{row}",
                            integrity_hash=integrity_hash(blob),
                        )
                    )
                service.data.register(entries, actor="drill")

    @staticmethod
    def plaintext(row: int) -> bytes:
        return f"customer-{row}@example.com".encode()

    @staticmethod
    def context(row: int) -> bytes:
        return f"customers/{row}/email".encode()

    def service(self) -> KeyService:
        config = ServiceConfig(
            self.data,
            database_url=self.database_url,
            custody=CustodyConfig(master_passphrase=PASSPHRASE),
        )
        return _Closing(open_service(config))  # type: ignore[return-value]

    def qrc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qrc", "incident", *args, "--data-dir", str(self.data),
             "--sql-url", self.sql_url],
            capture_output=True, text=True, env=self.env, timeout=180, check=False,
        )  # fmt: skip

    def values(self) -> list[bytes]:
        with sqlite3.connect(self.app_db) as db:
            rows = db.execute("SELECT email FROM customers ORDER BY id").fetchall()
        return [from_text(value) for (value,) in rows]

    def siem(self) -> list[dict[str, object]]:
        """Every webhook delivery, authenticated as the SIEM does."""
        verifier = Verifier(secret=SECRET)
        return [verifier.accept(d) for d in self.webhook.accepted]

    def close(self) -> None:
        self.webhook.close()
        self.syslog.close()


class _Closing:
    """A key service usable in ``with``, closed at the end."""

    def __init__(self, service: KeyService) -> None:
        self.service = service

    def __enter__(self) -> KeyService:
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.service.close()


@pytest.fixture
def drill(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Drill]:  # noqa: F811
    made = Drill(tmp_path, tls_files, "customers", "X25519MLKEM768")
    yield made
    made.close()


def _verified_checkpoint(service: KeyService, events: list[dict[str, object]]) -> int:
    """The SIEM's latest checkpoint, verified with the audit key it pinned."""
    public = load_public_pem(service.audit.public_key_pem().encode())
    assert isinstance(public, VerifyingKey)
    notes = [e["data"] for e in events if e["kind"] == "audit_checkpoint"]
    assert notes, "the SIEM received no checkpoint"
    latest = notes[-1]
    assert isinstance(latest, dict)
    return verify_note(str(latest["note"]).encode(), [public]).seq


def test_key_compromise_drill(drill: Drill) -> None:
    # The dry run changes nothing and says what would happen.
    plan = drill.qrc("key-compromise", "customers", "--json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["outcome"] == "planned"
    assert [s["name"] for s in planned["steps"]] == [
        "contain", "replace", "move-data", "users", "certificates"
    ]  # fmt: skip
    assert "nothing changed" in plan.stderr
    with drill.service() as service:
        assert service.keys.get_key("customers").status == "active"
    assert drill.webhook.accepted == []

    done = drill.qrc("key-compromise", "customers", "--yes", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["outcome"] == "complete"
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["move-data"]["detail"]["moved"] == ROWS
    assert "move-data: done" in done.stderr  # progress, step by step
    assert any("GDPR Art. 33" in a for a in report["human_actions"])

    with drill.service() as service:
        old = service.keys.get_key("customers")
        new = service.keys.get_key("customers-replacement")
        assert old.status == "compromised" and new.status == "active"
        assert new.labels[REPLACES_LABEL] == old.id
        # The compromised key encrypts nothing new and decrypts nothing without recovery.
        with pytest.raises(KeyServiceError):
            service.crypto.encrypt("customers", b"new data", actor="app")
        with DataEncryptor.local(service) as sdk:
            with pytest.raises(KeyServiceError):
                sdk.encrypt("customers", b"new data")
            # Every value now reads under the replacement, and only with its own context.
            for row, value in enumerate(drill.values()):
                assert parse(value).key_id == new.id
                assert sdk.decrypt(value, context=drill.context(row)) == drill.plaintext(row)
            with pytest.raises(DecryptionError):
                sdk.decrypt(drill.values()[0], context=drill.context(1))
        assert [r.identifier for r in service.data.under(new.id)] == [
            f"customers/{row}/email" for row in range(ROWS)
        ]
        assert service.data.under(old.id) == []
        # The chain verifies, against the witness file, and the SIEM holds it too.
        verification = service.audit.verify()
        assert verification.valid, verification.reason
        events = drill.siem()
        seq = _verified_checkpoint(service, events)
        assert seq == verification.witnessed_seq
        for event_type in ("incident.start", "incident.finish"):
            (found,), _ = service.audit.query(event_type=event_type)
            assert found.details["incident_id"] == report["incident_id"]

    kinds = [(e["kind"], e["type"]) for e in events]
    assert ("security_event", "key_compromise") in kinds
    assert ("security_event", "compromised_key_recovery_use") in kinds
    incident = [e for e in events if e["kind"] == "incident"]
    phases = [e["data"]["phase"] for e in incident]  # type: ignore[index]
    assert phases == ["started", "finished"]
    assert incident[-1]["data"]["outcome"] == "complete"  # type: ignore[index]
    # Syslog got the same events, in RFC 5424 form.
    received = drill.syslog.wait_for(len(events))
    syslog_ids = {parse_syslog(m)["params"]["id"] for m in received}  # type: ignore[index]
    assert {e["id"] for e in events} <= syslog_ids

    # Running it again finds everything done and changes nothing.
    with drill.service() as service:
        again = key_compromise(service, "customers", actor="t", execute=True, targets={
            "sql": SqlTarget(create_engine(drill.sql_url))})  # fmt: skip
        assert again.outcome == "complete"
        assert again.step("contain").status == again.step("replace").status == "already done"
        assert again.step("move-data").detail["moved"] == 0
        keys, _ = service.keys.list_keys(name_prefix="customers")
        assert sorted(k.name for k in keys) == ["customers", "customers-replacement"]


class _Interrupted(SqlTarget):
    """The application database, lost after ``writes`` writes (a crash mid-run)."""

    def __init__(self, url: str, writes: int) -> None:
        super().__init__(create_engine(url))
        self.writes = writes

    def write_if_unchanged(self, location: str, old: bytes, new: bytes) -> bool:
        if self.writes == 0:
            raise ConnectionError("the application database went away")
        self.writes -= 1
        return super().write_if_unchanged(location, old, new)


def test_an_interrupted_key_compromise_is_finished_by_running_it_again(drill: Drill) -> None:
    with drill.service() as service:
        broken = _Interrupted(drill.sql_url, writes=2)
        with pytest.raises(ConnectionError):
            key_compromise(service, "customers", actor="t", execute=True, targets={"sql": broken})
        assert service.keys.get_key("customers").status == "compromised"
        new = service.keys.get_key("customers-replacement")
        assert len(service.data.under(new.id)) == 2
        report = key_compromise(
            service, "customers", actor="t", execute=True,
            targets={"sql": _Interrupted(drill.sql_url, writes=100)},
        )  # fmt: skip
        assert report.outcome == "complete"
        assert report.step("contain").status == report.step("replace").status == "already done"
        assert report.step("move-data").detail["moved"] == ROWS - 2
        with DataEncryptor.local(service) as sdk:
            for row, value in enumerate(drill.values()):
                assert parse(value).key_id == new.id
                assert sdk.decrypt(value, context=drill.context(row)) == drill.plaintext(row)
        assert service.audit.verify().valid


def test_without_a_target_the_run_is_incomplete_and_says_so(drill: Drill) -> None:
    with drill.service() as service:
        report = key_compromise(service, "customers", actor="t", execute=True)
    assert report.outcome == "incomplete"
    assert report.step("move-data").detail["no_target"] == {"sql": ROWS}


def test_algorithm_break_drill(tmp_path: Path, tls_files: TLSFiles) -> None:  # noqa: F811
    drill = Drill(tmp_path, tls_files, "legacy", "ML-KEM-512")
    try:
        with drill.service() as service:  # the plan (the CLI's is the key drill's)
            planned = algorithm_break(service, "ML-KEM-512", actor="t").as_dict()
        assert planned["outcome"] == "planned"
        assert [s["name"] for s in planned["steps"]] == ["restrict", "migrate", "disallow"]
        assert planned["steps"][1]["detail"]["keys"][0]["name"] == "legacy"

        done = drill.qrc("algorithm-break", "ML-KEM-512", "--yes", "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        report = json.loads(done.stdout)
        assert report["outcome"] == "complete"
        with drill.service() as service:
            key = service.keys.get_key("legacy")
            assert key.algorithm != "ML-KEM-512" and key.version == 2
            assert service.current_policy()["algorithm_status"]["ML-KEM-512"] == "disallowed"
            with pytest.raises((KeyServiceError, AlgorithmNotAllowed)):
                service.keys.create_key(
                    name="again", purpose="encryption", algorithm="ML-KEM-512", actor="t"
                )
            with DataEncryptor.local(service) as sdk:
                for row, value in enumerate(drill.values()):
                    assert parse(value).key_version == 2
                    assert sdk.decrypt(value, context=drill.context(row)) == drill.plaintext(row)
            assert service.audit.verify().valid
            events = drill.siem()
            _verified_checkpoint(service, events)
        incident = [e for e in events if e["kind"] == "incident"]
        assert [e["data"]["phase"] for e in incident] == ["started", "finished"]  # type: ignore[index]
        assert all(e["type"] == "algorithm_break" for e in incident)
        assert ("security_event", "algorithm_migration") in [(e["kind"], e["type"]) for e in events]
        assert report["steps"][1]["detail"]["rotated"] == 1
    finally:
        drill.close()


def test_errors_say_what_to_do(drill: Drill) -> None:
    missing = drill.qrc("key-compromise", "no-such-key")
    assert missing.returncode == 2 and "no-such-key" in missing.stderr
    with drill.service() as service:
        with pytest.raises(UnsupportedAlgorithm, match="ROT13"):
            algorithm_break(service, "ROT13", actor="t")
        with pytest.raises(KeyServiceError, match="--to"):
            algorithm_break(service, "X25519MLKEM768", actor="t", execute=True)
        # A reserved key (the audit key) is not the generic playbook's to revoke.
        service.audit.checkpoint(actor="t")
        with pytest.raises(KeyServiceError):
            key_compromise(service, "qrc-audit-signing", actor="t", execute=True)
        assert service.keys.get_key("qrc-audit-signing").status == "active"


def test_a_value_rewritten_meanwhile_is_left_alone_and_reported(drill: Drill) -> None:
    with sqlite3.connect(drill.app_db) as db:
        db.execute("UPDATE customers SET email = 'plain@example.com' WHERE id = 0")
    with drill.service() as service:
        target = SqlTarget(create_engine(drill.sql_url))
        report = key_compromise(
            service, "customers", actor="t", execute=True, targets={"sql": target}
        )
    move = report.step("move-data")
    assert report.outcome == "incomplete" and move.status == "failed"
    assert move.detail["moved"] == ROWS - 1 and move.detail["changed_meanwhile"] == 1
    with sqlite3.connect(drill.app_db) as db:
        (kept,) = db.execute("SELECT email FROM customers WHERE id = 0").fetchone()
    assert kept == "plain@example.com"


def test_suspend_first_then_revoke_when_confirmed(drill: Drill) -> None:
    target = {"sql": SqlTarget(create_engine(drill.sql_url))}
    with drill.service() as service:
        suspended = key_compromise(
            service, "customers", actor="t", execute=True, suspend=True, targets=target
        )
        assert service.keys.get_key("customers").status == "suspended"
        assert suspended.outcome == "incomplete"  # the data cannot move while suspended
        assert suspended.step("move-data").detail["remaining"] == ROWS
        (event,) = service.audit.security_events(event_type="key_compromise")
        assert event.description == "A key is suspected compromised"
        assert event.details["incident_id"] == suspended.incident_id
        confirmed = key_compromise(service, "customers", actor="t", execute=True, targets=target)
        assert confirmed.outcome == "complete"
        assert confirmed.step("replace").status == "already done"  # the same replacement
        assert service.keys.get_key("customers").status == "compromised"
        assert len(service.audit.security_events(event_type="key_compromise")) == 2


def test_a_run_killed_mid_move_is_finished_by_the_same_command(drill: Drill) -> None:
    # The process dies right after writing the first value back, before the index hears.
    drill.env["QRC_TEST_FAULT"] = "incident-after-write"
    crashed = drill.qrc("key-compromise", "customers", "--yes")
    assert crashed.returncode == 70, crashed.stderr
    del drill.env["QRC_TEST_FAULT"]
    with drill.service() as service:
        new = service.keys.get_key("customers-replacement")
        assert service.data.under(new.id) == []  # written, not yet indexed
        assert sum(parse(v).key_id == new.id for v in drill.values()) == 1
    done = drill.qrc("key-compromise", "customers", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["contain"]["status"] == steps["replace"]["status"] == "already done"
    assert steps["move-data"]["detail"]["moved"] == ROWS
    with drill.service() as service, DataEncryptor.local(service) as sdk:
        assert len(service.data.under(new.id)) == ROWS
        for row, value in enumerate(drill.values()):
            assert sdk.decrypt(value, context=drill.context(row)) == drill.plaintext(row)
        assert service.audit.verify().valid


def test_key_compromise_with_the_store_on_postgresql(
    tmp_path: Path,
    tls_files: TLSFiles,  # noqa: F811
) -> None:
    with fresh_database() as url:
        drill = Drill(tmp_path, tls_files, "customers", "X25519MLKEM768", database_url=url)
        try:
            done = drill.qrc("key-compromise", "customers", "--yes", "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["outcome"] == "complete"
            with drill.service() as service, DataEncryptor.local(service) as sdk:
                assert service.keys.get_key("customers").status == "compromised"
                new = service.keys.get_key("customers-replacement")
                for row, value in enumerate(drill.values()):
                    assert parse(value).key_id == new.id
                    assert sdk.decrypt(value, context=drill.context(row)) == drill.plaintext(row)
                assert service.audit.verify().valid
            kinds = {(e["kind"], e["type"]) for e in drill.siem()}
            assert ("incident", "key_compromise") in kinds
        finally:
            drill.close()
