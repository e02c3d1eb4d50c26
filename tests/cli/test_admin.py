"""``qrc admin``, run as an operator runs it: real processes on a real data directory.

Steps are grouped into few tests (each process costs about half a second). The stores are
also opened in-process through the Python API, to prepare data and to check that what the
commands did is what the key service sees.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.service import KeyService
from qrc.keys.store.models import KeyVersion
from tests.keys.pg import fresh_database

PASSPHRASE = "admin test passphrase"
COMMAND = [sys.executable, "-m", "qrc", "admin"]
ACTOR = f"admin:{getpass.getuser()}"
# Variables of the environment a developer's shell might carry into the children.
_SCRUBBED = ("QRC_DATABASE_URL", "QRC_CUSTODY", "QRC_DATA_DIR", "QRC_DESTRUCTION_DELAY_DAYS")


def admin(
    data_dir: Path | None, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and "PKCS11" not in k}
    environ["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    if data_dir is not None:
        environ["QRC_DATA_DIR"] = str(data_dir)
    environ.update(env or {})
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=data_dir.parent if data_dir is not None else None,
        timeout=120,
        check=False,
    )


def ok(data_dir: Path | None, *args: str | Path, env: dict[str, str] | None = None) -> str:
    result = admin(data_dir, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ok_json(data_dir: Path | None, *args: str | Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(data_dir, *args, "--json", env=env))


def fails(
    data_dir: Path | None, *args: str | Path, code: int = 2, env: dict[str, str] | None = None
) -> str:
    """Run a command that must fail with ``code``: returns its one-line message."""
    result = admin(data_dir, *args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result.stderr


@contextmanager
def service_of(data_dir: Path, passphrase: str = PASSPHRASE) -> Iterator[KeyService]:
    """The same store, opened in-process as the service would open it."""
    config = ServiceConfig(data_dir, custody=CustodyConfig(master_passphrase=passphrase))
    service = open_service(config)
    try:
        yield service
    finally:
        service.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_status_keys_lifecycle_scheduler_and_events(tmp_path: Path) -> None:
    data = tmp_path / "store"
    fresh = ok_json(data, "status")
    assert fresh["custody"]["state"] == "online" and fresh["custody"]["kind"] == "local"
    assert fresh["keys"]["total"] == 0 and fresh["audit"]["events"] == 0
    assert fresh["store"].startswith("sqlite:///") and fresh["warnings"] == []

    app = ok_json(data, "keys", "create", "app", "--purpose", "encryption")
    assert app["algorithm"] == "X25519MLKEM768" and app["status"] == "active"
    sig = ok_json(
        data, "keys", "create", "sig", "--purpose", "signing", "-a", "ML-DSA-44",
        "--rotation-days", "30", "--label", "team=ops",
    )  # fmt: skip
    assert sig["labels"] == {"team": "ops"} and sig["rotation_period_seconds"] == 30 * 86400
    assert ok_json(data, "keys", "rotate", "app", "--if-version", "1")["version"] == 2
    lost = fails(data, "keys", "rotate", "app", "--if-version", "1")
    assert lost.strip() == "qrc: error: key 'app' is at version 2, not 1"
    assert ok_json(data, "keys", "min-version", "app", "2")["min_decryption_version"] == 2
    revoked = ok_json(data, "keys", "revoke", "sig", "--reason", "key_compromise")
    assert revoked["status"] == "compromised" and revoked["revocation_reason"] == "key_compromise"
    refused = fails(data, "keys", "destroy", "sig", "--after-days", "0")
    assert "at least 1 days" in refused  # no shredding at once, whatever the caller asks
    # A waiting period of a fraction of a second, allowed by this test's configuration.
    tiny = {"QRC_MIN_DESTRUCTION_DELAY_DAYS": "0.000001"}
    pending = ok_json(data, "keys", "destroy", "sig", "--after-days", "0.000001", env=tiny)
    assert pending["status"] == "pending_destruction"
    time.sleep(0.2)  # past the due time: what the scheduler then does is the point
    ran = ok_json(data, "scheduler", "--once")
    assert ran["destroyed"] == 1 and ran["rotated"] == 0 and isinstance(ran["checkpoint_seq"], int)

    keys = {k["name"]: k for k in ok_json(data, "keys", "list")}
    assert keys["sig"]["status"] == "destroyed" and keys["app"]["version"] == 2
    assert keys["qrc-audit-signing"]["algorithm"] == "ML-DSA-65"  # made by the checkpoint
    with service_of(data) as service:
        with service.db.session() as session:
            rows = list(session.scalars(select(KeyVersion).where(KeyVersion.key_id == sig["id"])))
        assert rows and all(row.wrapped_private is None for row in rows)  # crypto-shredded
        # What the commands made is usable through the API, under the same actor scheme.
        sealed = service.crypto.encrypt("app", b"payload", actor="test")
        assert sealed.key_version == 2
        assert service.crypto.decrypt(None, sealed.ciphertext, actor="test") == b"payload"

    after = ok_json(data, "status")
    assert after["keys"]["by_status"] == {"active": 2, "destroyed": 1}
    assert after["keys"]["by_algorithm"]["X25519MLKEM768"] == 1
    assert after["audit"]["last_checkpoint"]["seq"] == ran["checkpoint_seq"]
    assert after["pending_destructions"] == [] and after["due_rotations"] == []
    assert after["active_kek"] == after["custody"]["kek_id"]

    events = ok_json(data, "events", "--type", "key_compromise", "--key", "sig")
    assert len(events) == 1 and events[0]["key_id"] == sig["id"]
    assert events[0]["severity"] == "high" and events[0]["algorithm"] == "ML-DSA-44"

    audit = ok_json(data, "audit", "query", "--key", "app", "--actor", ACTOR)
    types = [(e["event_type"], e["result"]) for e in audit["events"]]
    assert types == [
        ("key.create", "success"),
        ("key.rotate", "success"),
        ("key.rotate", "denied"),  # the refused conditional rotation is audited too
        ("key.min_decryption_version", "success"),
    ]
    assert audit["next_cursor"] is None

    # One-line errors that say what to do, exit status 2.
    missing = fails(data, "keys", "rotate", "nope")
    assert missing.strip() == "qrc: error: no key with ID or name 'nope'"
    # Custody offline: the store is still reported on, and the exit status is 1.
    result = admin(data, "status", "--json", env={"QRC_CUSTODY": "pkcs11"})
    offline = json.loads(result.stdout)
    assert result.returncode == 1 and offline["custody"]["state"] == "offline"
    assert "QRC_PKCS11_TOKEN" in offline["custody"]["detail"]
    assert offline["keys"]["total"] == 3


def _populate(data: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Keys of several kinds, a rotation, ciphertexts and signatures (through the API)."""
    sealed, signed = {}, {}
    with service_of(data) as service:
        for name, purpose, algorithm in (
            ("hybrid", "encryption", "X25519MLKEM768"),
            ("sym", "key_wrapping", "AES-256-GCM"),
            ("signer", "signing", "ML-DSA-65"),
        ):
            service.keys.create_key(name=name, purpose=purpose, algorithm=algorithm, actor="test")
        service.keys.rotate("hybrid", actor="test")
        for name in ("hybrid", "sym"):
            sealed[name] = service.crypto.encrypt(name, name.encode(), actor="test").ciphertext
        signed["signer"] = service.crypto.sign("signer", b"signed", actor="test").signature
    return sealed, signed


def _check_usable(
    data: Path, sealed: dict[str, bytes], signed: dict[str, bytes], **kw: str
) -> None:
    with service_of(data, **kw) as service:
        for name, ciphertext in sealed.items():
            assert service.crypto.decrypt(name, ciphertext, actor="test") == name.encode()
        for name, signature in signed.items():
            assert service.crypto.verify(name, b"signed", signature, actor="test") == 1
        fresh = service.crypto.encrypt("hybrid", b"new", actor="test").ciphertext
        assert service.crypto.decrypt(None, fresh, actor="test") == b"new"


def test_audit_verify_checkpoint_export_and_offline_verification(tmp_path: Path) -> None:
    data = tmp_path / "store"
    _populate(data)
    checkpoint = ok_json(data, "audit", "checkpoint")
    assert checkpoint["algorithm"] == "ML-DSA-65" and checkpoint["seq"] >= 6
    report = ok_json(data, "audit", "verify")
    assert report["valid"] and report["checkpoints_verified"] == 1
    export, pem = tmp_path / "audit.jsonl", tmp_path / "audit.pem"
    assert "exported" in admin(data, "audit", "export", "-o", export).stderr
    ok(data, "audit", "public-key", "-o", pem)
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----")

    # Offline: no data directory at all (none is created either).
    nowhere = tmp_path / "no-such-dir"
    offline = ok_json(nowhere, "audit", "verify-export", export, "--public-key", pem)
    assert (
        offline["valid"] and offline["checkpoints_verified"] == 1
    )  # the head was checkpointed already
    assert not nowhere.exists()
    lines = export.read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "qrc-audit-export", "version": 2}
    assert json.loads(lines[1])["type"] == "audit_key"  # the pinned key travels along
    second = [i for i, line in enumerate(lines) if json.loads(line).get("type") == "event"][1]
    record = json.loads(lines[second])
    record["actor"] = "mallory"
    lines[second] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    bad = admin(nowhere, "audit", "verify-export", tampered, "--public-key", pem)
    assert bad.returncode == 1 and "NOT valid: first bad event 2" in bad.stderr

    # Paging through the chain.
    first = ok_json(data, "audit", "query", "--type", "key.create", "--limit", "2")
    assert [e["event_type"] for e in first["events"]] == ["key.create"] * 2
    rest = ok_json(data, "audit", "query", "--type", "key.create", "--cursor", first["next_cursor"])
    assert {e["key_id"] for e in rest["events"]}.isdisjoint(e["key_id"] for e in first["events"])

    # An event edited in the database: verify names it and exits 1.
    with sqlite3.connect(data / "qrc.db") as db:
        db.execute("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 3")
    broken = admin(data, "audit", "verify")
    assert broken.returncode == 1
    assert broken.stderr.startswith("qrc: audit chain NOT valid: first bad event 3")
    events = ok_json(data, "events", "--type", "audit_verification_failure")
    assert events and events[0]["severity"] == "critical"


def test_rotate_kek_local_keeps_every_key_usable(tmp_path: Path) -> None:
    data = tmp_path / "store"
    sealed, signed = _populate(data)
    with service_of(data) as service:
        old = service.keyring.current.kek_id
    assert "--to local or --to pkcs11" in fails(data, "rotate-kek")
    assert "--key-label" in fails(data, "rotate-kek", "--to", "pkcs11")

    report = ok_json(data, "rotate-kek", "--to", "local", "--batch-size", "2")
    new = report["new_kek_id"]
    assert new != old and new.startswith("local-")
    assert report["rewrapped"] == 4 and report["remaining"] == 0
    assert report["retired"] == [old] and report["old_keks"] == [old]
    assert _mode(data / f"kek-{new}.sealed") == 0o600

    status = ok_json(data, "status")
    assert status["active_kek"] == new and status["custody"]["kek_id"] == new
    assert {k["id"]: k["status"] for k in status["keks"]} == {old: "retired", new: "active"}
    assert {k["id"]: k["key_versions"] for k in status["keks"]} == {old: 0, new: 4}
    _check_usable(data, sealed, signed)
    with service_of(data) as service, service.db.session() as session:
        keks = set(session.scalars(select(KeyVersion.kek_id)))
    assert keks == {new}
    again = ok_json(data, "rotate-kek", "--resume")
    assert again["new_kek_id"] == new and again["rewrapped"] == 0 and again["remaining"] == 0


def test_backup_and_restore_with_text_shares(tmp_path: Path) -> None:
    data, target = tmp_path / "store", tmp_path / "restored"
    sealed, signed = _populate(data)
    out = tmp_path / "vault" / "store.qrcb"
    out.parent.mkdir()
    made = ok_json(data, "backup", "-o", out)
    assert made["threshold"] == 3 and made["shares"] == 5 and made["counts"]["keys"] == 3
    shares = [out.parent / f"share-{i}-of-5.txt" for i in range(1, 6)]
    assert made["share_files"] == [str(p) for p in shares]
    assert _mode(out) == 0o600 and all(_mode(p) == 0o600 for p in shares)
    assert shares[0].read_text().startswith("qrc-share-v1:")
    with service_of(data) as service:
        events_before = len(service.audit.query(limit=1000)[0])
    taken = fails(data, "backup", "-o", tmp_path / "vault" / "second.qrcb")
    assert f"{shares[0]} exists; refusing to overwrite it" in taken
    with service_of(data) as service:
        assert len(service.audit.query(limit=1000)[0]) == events_before  # no orphan event
        foreign = service.backups.create(threshold=3, shares=5, actor="test").shares[0]
    (tmp_path / "foreign.txt").write_text(foreign.to_text())

    share_args = [a for p in shares for a in ("--share", str(p))]
    other = {"QRC_MASTER_PASSPHRASE": "another passphrase"}  # the target's own root KEK
    two = fails(target, "restore", "-i", out, *share_args[:4], env=other)
    assert "3 distinct shares are needed and 2 were given: bring 1 more share" in two
    mixed = [*share_args[:4], "--share", str(tmp_path / "foreign.txt")]
    assert "does not belong to backup" in fails(target, "restore", "-i", out, *mixed, env=other)
    body = bytearray(out.read_bytes())
    body[-20] ^= 1
    (tmp_path / "tampered.qrcb").write_bytes(bytes(body))
    altered = fails(target, "restore", "-i", tmp_path / "tampered.qrcb", *share_args[4:], env=other)
    assert "corrupted or was altered" in altered
    with service_of(target, "another passphrase") as service:
        assert service.keys.list_keys()[0] == []  # none of the failures wrote anything

    restored = ok_json(target, "restore", "-i", out, *share_args[2:8], env=other)
    assert restored["counts"]["keys"] == 3 and restored["audit_valid"]
    _check_usable(target, sealed, signed, passphrase="another passphrase")
    full = fails(target, "restore", "-i", out, *share_args[4:], env=other)
    assert "restore needs an empty store" in full


def test_backup_with_shares_sealed_to_custodians(tmp_path: Path) -> None:
    data, target = tmp_path / "store", tmp_path / "restored"
    sealed, signed = _populate(data)
    custodians = [tmp_path / f"custodian{i}" for i in (1, 2, 3)]
    for key in custodians:
        made = subprocess.run(
            [sys.executable, "-m", "qrc", "keygen", "-a", "X25519MLKEM768", "-o", key],
            capture_output=True,
            check=False,
        )
        assert made.returncode == 0, made.stderr
    out, shares_dir = tmp_path / "store.qrcb", tmp_path / "sealed"
    public = [a for key in custodians for a in ("--custodian", f"{key}.pub")]
    made_backup = ok_json(
        data, "backup", "-o", out, "-k", "2", "-n", "3", *public, "--shares-dir", shares_dir
    )
    shares = [shares_dir / f"share-{i}-of-3.sealed" for i in (1, 2, 3)]
    assert made_backup["share_files"] == [str(p) for p in shares]
    assert all(_mode(p) == 0o600 and p.read_bytes().startswith(b"QRCC") for p in shares)

    other = {"QRC_MASTER_PASSPHRASE": "another passphrase"}
    args: list[str | Path] = ["restore", "-i", out, "--share", shares[0], "--share", shares[2]]
    wrong = fails(target, *args, "--custodian-key", custodians[1], env=other)
    assert f"{shares[0]} does not open with any --custodian-key given" in wrong
    keys: list[str | Path] = ["--custodian-key", custodians[2], "--custodian-key", custodians[0]]
    restored = ok_json(target, *args, *keys, env=other)
    assert restored["counts"]["keys"] == 3
    _check_usable(target, sealed, signed, passphrase="another passphrase")


def test_status_and_keys_on_postgresql(tmp_path: Path) -> None:
    data = tmp_path / "store"
    with fresh_database() as url:
        # trust authentication ignores the password: it is only there to be redacted.
        secret_url = url.replace("postgres@", "postgres:hunter2@", 1)
        env = {"QRC_DATABASE_URL": secret_url}
        created = ok_json(data, "keys", "create", "pg-key", "--purpose", "signing", env=env)
        assert created["algorithm"] == "MLDSA65-Ed25519-SHA512"
        assert [k["name"] for k in ok_json(data, "keys", "list", env=env)] == ["pg-key"]
        status = admin(data, "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        assert "hunter2" not in status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["store"].startswith("postgresql+psycopg://postgres:***@")
        assert report["keys"]["by_status"] == {"active": 1}
        assert not (data / "qrc.db").exists()


def test_audit_key_rotation_and_offline_verification_with_the_anchor(tmp_path: Path) -> None:
    data = tmp_path / "store"
    _populate(data)
    ok_json(data, "audit", "checkpoint")
    rotated = ok_json(data, "audit", "rotate-key")
    assert rotated["version"] == rotated["signed_by_version"] + 1
    export = tmp_path / "audit.jsonl"
    admin(data, "audit", "export", "-o", export)
    anchor = data / "audit-keys.jsonl"
    assert len(anchor.read_text().splitlines()) == 2  # both versions pinned
    offline = ok_json(None, "audit", "verify-export", export, "--anchor", anchor)
    assert offline["valid"] and offline["checkpoints_verified"] >= 2
    # The new version's key alone cannot vouch for checkpoints the old one signed.
    pem = tmp_path / "new.pem"
    ok(data, "audit", "public-key", "-o", pem)
    alone = admin(None, "audit", "verify-export", export, "--public-key", pem)
    assert alone.returncode == 1
    assert "one of them" in fails(None, "audit", "verify-export", export)
    # The export carries the pinned keys; the fingerprint, told out of band, makes them trusted.
    printed = admin(data, "audit", "public-key").stderr
    fingerprint = printed.split("audit anchor sha256: ")[1].split()[0]
    carried = ok_json(None, "audit", "verify-export", export, "--anchor-sha256", fingerprint)
    assert carried["valid"] and carried["checkpoints_verified"] >= 2
    wrong = admin(None, "audit", "verify-export", export, "--anchor-sha256", "00" * 32)
    assert wrong.returncode == 1 and "fingerprint" in wrong.stderr
    assert ok_json(data, "audit", "verify")["valid"]


def test_rotate_to_another_algorithm(tmp_path: Path) -> None:
    data = tmp_path / "store"
    ok_json(data, "keys", "create", "mover", "--purpose", "signing", "-a", "ML-DSA-44")
    moved = ok_json(data, "keys", "rotate", "mover", "--algorithm", "MLDSA65-Ed25519-SHA512")
    assert moved["version"] == 2 and moved["algorithm"] == "MLDSA65-Ed25519-SHA512"
    unfit = fails(data, "keys", "rotate", "mover", "--algorithm", "X25519MLKEM768")
    assert unfit.startswith("qrc: error:") and "X25519MLKEM768" in unfit
