"""Rotation to another algorithm: new versions use it, old versions keep theirs."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from qrc.cli import remote
from qrc.crypto.envelope import parse_header
from qrc.crypto.errors import AlgorithmNotAllowed, DecryptionError
from qrc.crypto.registry import BUILT_IN_STATUS, Status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.errors import InvalidRequest
from qrc.keys.policy import AlgorithmPolicy, PolicyUpdate
from qrc.keys.service import KeyService
from qrc.keys.store.db import Base, Database
from qrc.keys.store.models import AuditEvent, KeyVersion
from tests.api.conftest import assert_problem, running_api
from tests.api.test_api import _InProcessClient
from tests.keys.conftest import FAST_ARGON2

ACTOR = "test:ops"


@pytest.fixture
def service(db: Database, custody: LocalCustody) -> KeyService:
    """The key service, its policy writing statuses to its own table, not the registry's."""
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)
    policy = AlgorithmPolicy(apply=statuses.__setitem__)
    return KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0), policy=policy)


def _versions(service: KeyService, key_id: str) -> dict[int, str]:
    with service.db.session() as session:
        rows = session.scalars(select(KeyVersion).where(KeyVersion.key_id == key_id))
        return {row.version: row.algorithm for row in rows}


def test_encryption_key_moves_to_hybrid_kem(service: KeyService) -> None:
    key = service.keys.create_key(
        name="k", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR
    )
    old = service.crypto.encrypt("k", b"old secret", actor=ACTOR, context=b"c").ciphertext

    info = service.keys.rotate("k", actor=ACTOR, algorithm="X25519MLKEM768")

    assert info.algorithm == "X25519MLKEM768" and info.version == 2
    assert _versions(service, key.id) == {1: "ML-KEM-768", 2: "X25519MLKEM768"}
    new = service.crypto.encrypt("k", b"new secret", actor=ACTOR, context=b"c")
    assert new.key_version == 2 and parse_header(new.ciphertext).algorithm == "X25519MLKEM768"
    assert parse_header(old).algorithm == "ML-KEM-768"
    assert service.crypto.decrypt("k", old, actor=ACTOR, context=b"c") == b"old secret"
    assert service.crypto.decrypt(None, new.ciphertext, actor=ACTOR, context=b"c") == (
        b"new secret"
    )
    rewrapped = service.crypto.rewrap("k", old, actor=ACTOR, context=b"c")
    assert parse_header(rewrapped.ciphertext).algorithm == "X25519MLKEM768"
    with service.db.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "key.rotate")
        ).one()
        assert event.details == {"from_algorithm": "ML-KEM-768", "to_algorithm": "X25519MLKEM768"}
    # A plain rotation stays on the key's (new) algorithm.
    assert service.keys.rotate("k", actor=ACTOR).algorithm == "X25519MLKEM768"
    assert _versions(service, key.id)[3] == "X25519MLKEM768"


def test_signing_key_moves_to_composite(service: KeyService) -> None:
    service.keys.create_key(name="s", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    old = service.crypto.sign("s", b"release 1", actor=ACTOR).signature

    info = service.keys.rotate("s", actor=ACTOR, algorithm="MLDSA65-Ed25519-SHA512")

    assert info.algorithm == "MLDSA65-Ed25519-SHA512"
    new = service.crypto.sign("s", b"release 2", actor=ACTOR)
    assert new.key_version == 2
    assert service.crypto.verify("s", b"release 1", old, actor=ACTOR) == 1
    assert service.crypto.verify("s", b"release 2", new.signature, actor=ACTOR) == 2
    assert service.crypto.verify("s", b"release 1", old, actor=ACTOR, key_version=1) == 1
    assert service.crypto.verify("s", b"release 2", old, actor=ACTOR) is None
    # Retiring version 1 retires the old algorithm's signatures too.
    service.keys.set_min_decryption_version("s", 2, actor=ACTOR)
    assert service.crypto.verify("s", b"release 1", old, actor=ACTOR) is None


def test_refused_to_deprecated_or_unfit_target_allowed_away(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR)
    service.keys.create_key(name="s", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    service.update_policy(PolicyUpdate(algorithm_status={"ML-KEM-1024": "deprecated"}), actor="a")

    with pytest.raises(InvalidRequest, match="deprecated"):
        service.keys.rotate("k", actor=ACTOR, algorithm="ML-KEM-1024")
    with pytest.raises(InvalidRequest, match="unfit"):
        service.keys.rotate("k", actor=ACTOR, algorithm="ML-DSA-65")
    with pytest.raises(InvalidRequest, match="unfit"):
        service.keys.rotate("s", actor=ACTOR, algorithm="ML-KEM-768")
    with pytest.raises(InvalidRequest):
        service.keys.rotate("k", actor=ACTOR, algorithm="NO-SUCH-ALGORITHM")
    assert service.keys.get_key("k").version == 1

    # Away from a deprecated algorithm: always allowed.
    service.update_policy(PolicyUpdate(algorithm_status={"ML-KEM-768": "deprecated"}), actor="a")
    assert service.keys.rotate("k", actor=ACTOR, algorithm="X25519MLKEM768").version == 2


def test_edited_version_algorithm_fails_opaquely(service: KeyService) -> None:
    key = service.keys.create_key(
        name="k", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR
    )
    old = service.crypto.encrypt("k", b"secret", actor=ACTOR).ciphertext
    service.keys.rotate("k", actor=ACTOR, algorithm="X25519MLKEM768")
    for forged in ("X25519MLKEM768", "ML-KEM-1024", "NOT-AN-ALGORITHM"):
        with service.db.session() as session:
            session.execute(
                update(KeyVersion)
                .where(KeyVersion.key_id == key.id, KeyVersion.version == 1)
                .values(algorithm=forged)
            )
        with pytest.raises(DecryptionError):
            service.crypto.decrypt("k", old, actor=ACTOR)


def test_backup_restore_keeps_per_version_algorithms(
    db: Database, service: KeyService, tmp_path: Path
) -> None:
    key = service.keys.create_key(
        name="k", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR
    )
    old = service.crypto.encrypt("k", b"v1", actor=ACTOR).ciphertext
    service.keys.rotate("k", actor=ACTOR, algorithm="X25519MLKEM768")
    new = service.crypto.encrypt("k", b"v2", actor=ACTOR).ciphertext
    service.keys.create_key(name="s", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    signature = service.crypto.sign("s", b"m", actor=ACTOR).signature
    service.keys.rotate("s", actor=ACTOR, algorithm="MLDSA65-Ed25519-SHA512")
    before = _versions(service, key.id)
    result = service.backups.create(threshold=2, shares=3, actor=ACTOR)

    service.keyring.close()
    Base.metadata.drop_all(db.engine)
    with db.engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    db.upgrade()
    (tmp_path / "dr").mkdir()
    custody = LocalCustody.create(tmp_path / "dr" / "kek.sealed", "dr", params=FAST_ARGON2)
    restored = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))
    restored.backups.restore(result.data, result.shares[:2], actor=ACTOR)

    assert _versions(restored, key.id) == before
    assert restored.keys.get_key("k").algorithm == "X25519MLKEM768"
    assert restored.crypto.decrypt("k", old, actor=ACTOR) == b"v1"
    assert restored.crypto.decrypt("k", new, actor=ACTOR) == b"v2"
    assert restored.crypto.verify("s", b"m", signature, actor=ACTOR) == 1


def test_api_rotate_with_algorithm(tmp_path: Path) -> None:
    with running_api(tmp_path / "api") as api:
        name = api.create_key("moving", algorithm="ML-KEM-768")["name"]
        moved = api.post(
            f"/keys/{name}/rotate",
            "key_manager",
            json={"algorithm": "X25519MLKEM768", "expected_version": 1},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["algorithm"] == "X25519MLKEM768" and moved.json()["version"] == 2
        assert_problem(
            api.post(f"/keys/{name}/rotate", json={"algorithm": "ML-DSA-65"}),
            422,
            "invalid-request",
        )
        for bad in ({"algorithm": None}, {"algorithm": ""}, {"algorithm": 7}):
            assert_problem(api.post(f"/keys/{name}/rotate", json=bad), 422, "invalid-request")
        assert api.get(f"/keys/{name}").json()["version"] == 2


def test_remote_cli_rotate_algorithm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_api(tmp_path / "api") as api:
        monkeypatch.setattr(remote, "_client", lambda *args: _InProcessClient(api))
        runner = CliRunner()
        name = api.create_key("cli-move", algorithm="ML-KEM-768")["name"]
        args = ["rotate", name, "--algorithm", "X25519MLKEM768", "--if-version", "1", "--json"]
        done = runner.invoke(remote.keys_app, args)
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["algorithm"] == "X25519MLKEM768"
        refused = runner.invoke(remote.keys_app, ["rotate", name, "--algorithm", "ML-DSA-65"])
        assert refused.exit_code == 2 and "unfit for encryption" in refused.stderr
        assert api.service.keys.count_versions(name) == 2


def test_old_version_under_a_disallowed_algorithm_is_refused(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR)
    old = service.crypto.encrypt("k", b"old", actor=ACTOR).ciphertext
    service.keys.rotate("k", actor=ACTOR, algorithm="X25519MLKEM768")
    new = service.crypto.encrypt("k", b"new", actor=ACTOR).ciphertext
    service.update_policy(PolicyUpdate(algorithm_status={"ML-KEM-768": "disallowed"}), actor="a")

    with pytest.raises(AlgorithmNotAllowed):
        service.crypto.decrypt("k", old, actor=ACTOR)
    assert service.crypto.decrypt("k", new, actor=ACTOR) == b"new"
