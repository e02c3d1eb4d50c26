"""Security invariant: no unwrapped private key material in the store, its dump or the logs.

Every private key generated in the test is collected (by unwrapping it, as only the test
may), then a full dump of the database (``pg_dump`` for PostgreSQL; the raw database and
WAL files for SQLite) and the captured logs are searched for it: raw, hex and base64.
"""

from __future__ import annotations

import base64
import logging
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from qrc.crypto.errors import DecryptionError
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.keys.store.models import KeyVersion

ALGORITHMS = [
    ("encryption", "X25519MLKEM768"),
    ("encryption", "ML-KEM-512"),
    ("encryption", "HQC-128"),
    ("key_wrapping", "AES-256-GCM"),
    ("signing", "MLDSA65-Ed25519-SHA512"),
    ("signing", "SLH-DSA-SHA2-128f"),
    ("signing", "ML-DSA-87"),
]


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def _dump(db: Database, tmp_path: Path) -> bytes:
    if db.is_sqlite:
        # The SQL dump (blobs as hex), plus the raw files, WAL included, for anything a
        # dump would not show (freed pages). Large blobs span overflow pages in the files,
        # which is why the dump is needed too.
        db.dispose()
        with sqlite3.connect(tmp_path / "qrc.db") as connection:
            text = "\n".join(connection.iterdump()).encode()
        files = sorted(tmp_path.glob("qrc.db*"))
        return text + b"".join(path.read_bytes() for path in files)
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump not installed")
    url = db.url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run(
        [pg_dump, "--data-only", "--inserts", url], capture_output=True, check=True, timeout=120
    ).stdout


def test_no_private_key_material_in_dump_or_logs(
    service: KeyService, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for index, (purpose, algorithm) in enumerate(ALGORITHMS):
        name = f"k{index}"
        service.keys.create_key(name=name, purpose=purpose, algorithm=algorithm, actor="test")
        service.keys.rotate(name, actor="test")
        if purpose == "signing":
            signed = service.crypto.sign(name, b"message", actor="test")
            assert service.crypto.verify(name, b"message", signed.signature, actor="test") == 2
        else:
            sealed = service.crypto.encrypt(name, b"plaintext", actor="test", context=b"ctx")
            assert service.crypto.decrypt(name, sealed.ciphertext, actor="test", context=b"ctx")
            with pytest.raises(DecryptionError) as failure:
                service.crypto.decrypt(name, sealed.ciphertext, actor="test", context=b"other")
            assert str(failure.value) == "decryption failed"
    service.keys.schedule_destruction("k0", actor="test", delay=timedelta(0))
    # Collect every private key before the destruction runs (afterwards it is gone).
    secrets_seen: list[bytes] = []
    public_keys: list[bytes] = []
    with db.session() as session:
        for row in session.scalars(select(KeyVersion)):
            if row.public_key:
                public_keys.append(row.public_key)
            assert row.wrapped_private is not None
            secrets_seen.append(
                service.keyring.unwrap(row.key_id, row.version, row.algorithm, row.wrapped_private)
            )
    service.scheduler.run_due()
    assert len(secrets_seen) == 2 * len(ALGORITHMS)
    dump = _dump(db, tmp_path)
    # The search would find material if it were there: public keys are stored in the clear.
    assert all(any(form in dump for form in _forms(pk)) for pk in public_keys)
    logs = "\n".join(r.getMessage() for r in caplog.records).encode()
    for secret in secrets_seen:
        for form in _forms(secret):
            assert form not in dump
            assert form not in logs
