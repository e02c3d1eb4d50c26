"""Root KEK rotation: resumable, online, followed by other processes, crash-safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from qrc.keys.custody.kek_files import LocalKekFiles
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.keys.store.keks import active_kek_id
from qrc.keys.store.models import KekRecord, KeyVersion
from tests.keys.conftest import FAST_ARGON2

PASSPHRASE = "test passphrase"


def _kek_ids(db: Database) -> set[str | None]:
    with db.session() as session:
        return set(session.scalars(select(KeyVersion.kek_id).where(
            KeyVersion.wrapped_private.is_not(None))))  # fmt: skip


def _populate(service: KeyService) -> dict[str, bytes]:
    sealed = {}
    for i, (purpose, algorithm) in enumerate([("encryption", "X25519MLKEM768"),
                                              ("key_wrapping", "AES-256-GCM"),
                                              ("encryption", "ML-KEM-512")]):  # fmt: skip
        name = f"k{i}"
        service.keys.create_key(name=name, purpose=purpose, algorithm=algorithm, actor="t")
        service.keys.rotate(name, actor="t")
        sealed[name] = service.crypto.encrypt(name, f"data {i}".encode(), actor="t").ciphertext
    service.keys.create_key(name="s", purpose="signing", algorithm="ML-DSA-44", actor="t")
    return sealed


def test_local_to_local_rotation_is_resumable_and_online(db: Database, tmp_path: Path) -> None:
    files = LocalKekFiles(tmp_path, PASSPHRASE)
    old = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    service = KeyService(db, Keyring(old, loader=files.load))
    sealed = _populate(service)
    assert _kek_ids(db) == {old.kek_id}
    new = files.create()
    partial = service.keks.rotate(new, actor="admin", batch_size=2, max_batches=1)
    assert partial.rewrapped == 2 and partial.remaining == 5 and partial.retired == []
    assert _kek_ids(db) == {old.kek_id, new.kek_id}
    # The service keeps working mid-rotation: old and new material both usable.
    for name, ciphertext in sealed.items():
        assert service.crypto.decrypt(name, ciphertext, actor="t").startswith(b"data")
    service.keys.create_key(name="during", purpose="encryption", actor="t")
    done = service.keks.rotate(new, actor="admin", batch_size=2)
    assert done.remaining == 0 and done.retired == [old.kek_id]
    assert _kek_ids(db) == {new.kek_id}
    with db.session() as session:
        assert active_kek_id(session) == new.kek_id
        statuses = {r.id: r.status for r in session.scalars(select(KekRecord))}
    assert statuses == {old.kek_id: "retired", new.kek_id: "active"}
    # A process holding only the new KEK reads everything.
    fresh = KeyService(
        db, Keyring(LocalCustody.open(files.path_for(new.kek_id), "test passphrase"))
    )
    for name, ciphertext in sealed.items():
        assert fresh.crypto.decrypt(name, ciphertext, actor="t").startswith(b"data")
    assert (
        fresh.crypto.verify("s", b"m", fresh.crypto.sign("s", b"m", actor="t").signature, actor="t")
        == 1
    )
    assert fresh.audit.verify().valid


def test_other_processes_follow_the_active_kek(db: Database, tmp_path: Path) -> None:
    files = LocalKekFiles(tmp_path, PASSPHRASE)
    old = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    node_a = KeyService(db, Keyring(old, loader=files.load))
    node_b = KeyService(db, Keyring(LocalCustody.open(tmp_path / "kek.sealed", "test passphrase"),
                                    loader=files.load))  # fmt: skip
    node_a.keys.create_key(name="x", purpose="encryption", actor="t")
    new = files.create()
    node_a.keks.rotate(new, actor="admin")
    node_b._kek_checked_at = 0  # its periodic check is due
    node_b.keys.create_key(name="y", purpose="encryption", actor="t")
    assert node_b.keyring.current.kek_id == new.kek_id
    assert _kek_ids(db) == {new.kek_id}


def test_a_process_that_cannot_open_the_new_kek_refuses_to_wrap(
    db: Database, tmp_path: Path
) -> None:
    old = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    node_a = KeyService(db, Keyring(old))
    node_a.keys.create_key(name="x", purpose="encryption", actor="t")
    other = LocalCustody.create(
        tmp_path / "elsewhere.sealed", "test passphrase", params=FAST_ARGON2
    )
    node_b = KeyService(db, Keyring(LocalCustody.open(tmp_path / "kek.sealed", "test passphrase")))
    node_a.keks.rotate(other, actor="admin")
    from qrc.keys.custody.base import CustodyUnavailable

    node_b._kek_checked_at = 0
    with pytest.raises(CustodyUnavailable, match="restart"):
        node_b.keys.create_key(name="y", purpose="encryption", actor="t")
    assert node_a.keys.get_key("x").status == "active"


def test_rotation_killed_between_batches_resumes(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    db.upgrade()
    files = LocalKekFiles(tmp_path, PASSPHRASE)
    old = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    service = KeyService(db, Keyring(old, loader=files.load))
    sealed = _populate(service)
    script = (
        "import sys; from pathlib import Path\n"
        "from qrc.keys.store.db import Database\n"
        "from qrc.keys.custody.kek_files import LocalKekFiles\n"
        "from qrc.keys.faults import arm\n"
        "from qrc.keys.service import KeyService\n"
        "from qrc.keys.custody.keyring import Keyring\n"
        "d = Path(sys.argv[1]); files = LocalKekFiles(d, 'test passphrase')\n"
        "arm('kek-rewrap-batch')\n"
        "svc = KeyService(Database(f'sqlite:///{d / \"qrc.db\"}'),"
        " Keyring(files.load(sys.argv[2]), loader=files.load))\n"
        "svc.keks.rotate(files.create(), actor='admin', batch_size=2)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path), old.kek_id],
                            env=os.environ,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 70, result.stderr
    assert len(_kek_ids(db)) == 2  # stopped after one batch
    with db.session() as session:
        new_id = active_kek_id(session)
    assert new_id is not None and new_id != old.kek_id
    new = files.load(new_id)
    assert new is not None
    report = service.keks.rotate(new, actor="admin")
    assert report.remaining == 0 and _kek_ids(db) == {new_id}
    for name, ciphertext in sealed.items():
        assert service.crypto.decrypt(name, ciphertext, actor="t").startswith(b"data")


def test_local_to_pkcs11_rotation(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qrc.keys.custody.pkcs11 import Pkcs11Custody
    from tests.keys.softhsm import require_softhsm, softhsm_token

    require_softhsm()
    old = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    service = KeyService(db, Keyring(old))
    sealed = _populate(service)
    (tmp_path / "hsm").mkdir()
    with softhsm_token(tmp_path / "hsm", monkeypatch) as hsm:
        token = Pkcs11Custody.create_key(hsm.config())
        report = service.keks.rotate(token, actor="admin")
        assert report.remaining == 0 and report.retired == [old.kek_id]
        assert _kek_ids(db) == {token.kek_id}
        # Only the token now: the local KEK is not needed to read anything.
        hsm_only = KeyService(db, Keyring(token))
        for name, ciphertext in sealed.items():
            assert hsm_only.crypto.decrypt(name, ciphertext, actor="t").startswith(b"data")
        token.close()
