"""The key service with its root KEK in a real SoftHSM2 token, on SQLite and PostgreSQL.

The token is taken away for real (its directory moved aside) and given back in this same
process. While it is away, everything that needs a private key fails with
``CustodyUnavailable`` and writes nothing; everything that needs only public keys keeps
working; when it is back, everything works again and nothing was lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.keys.softhsm import SoftHsm, require_softhsm, softhsm_token

require_softhsm()

from qrc.keys.audit.events import EventType, query_events  # noqa: E402
from qrc.keys.custody.base import CustodyUnavailable, HealthState  # noqa: E402
from qrc.keys.custody.keyring import Keyring  # noqa: E402
from qrc.keys.custody.pkcs11 import Pkcs11Custody  # noqa: E402
from qrc.keys.service import KeyService  # noqa: E402
from qrc.keys.store.db import Database  # noqa: E402
from qrc.keys.store.models import AuditEvent, Key, KeyVersion  # noqa: E402

ACTOR = "test:hsm"


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsm]:
    with softhsm_token(tmp_path, monkeypatch) as soft:
        yield soft


@pytest.fixture
def hsm_custody(hsm: SoftHsm) -> Iterator[Pkcs11Custody]:
    opened = Pkcs11Custody.create_key(hsm.config())
    yield opened
    opened.close()


def _store_state(db: Database) -> dict[str, Any]:
    """Every key and version row as it is (wrapped material included), and the audit size."""
    with db.session() as session:
        keys = sorted(
            (k.id, k.name, k.status, k.primary_version, k.min_decryption_version)
            for k in session.scalars(select(Key))
        )
        versions = sorted(
            (v.key_id, v.version, v.kek_id, v.wrapped_private, v.public_key)
            for v in session.scalars(select(KeyVersion))
        )
        audit = int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
    return {"keys": keys, "versions": versions, "audit_events": audit}


def _audit_since(db: Database, count: int) -> list[tuple[str, str, str | None]]:
    """(type, result, key) of the audit events after the first ``count``."""
    with db.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq).offset(count))
        return [(r.event_type, r.result, r.key_id) for r in rows]


def _unavailable(operation: Callable[[], object]) -> None:
    with pytest.raises(CustodyUnavailable, match="unreachable") as info:
        operation()
    # A clear error: it names the token and says that nothing changed.
    assert "qrc-test" in str(info.value) and "nothing was changed" in str(info.value)


def test_token_away_and_back(db: Database, hsm: SoftHsm, hsm_custody: Pkcs11Custody) -> None:
    service = KeyService(db, Keyring(hsm_custody))
    kem = service.keys.create_key(
        name="kem", purpose="encryption", algorithm="X25519MLKEM768", actor=ACTOR
    )
    aes = service.keys.create_key(
        name="aes", purpose="key_wrapping", algorithm="AES-256-GCM", actor=ACTOR
    )
    sig = service.keys.create_key(name="sig", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    kem_before = service.crypto.encrypt("kem", b"kem before", actor=ACTOR, context=b"c")
    aes_before = service.crypto.encrypt("aes", b"aes before", actor=ACTOR, context=b"c")
    signed_before = service.crypto.sign("sig", b"signed before", actor=ACTOR)
    assert service.crypto.decrypt("kem", kem_before.ciphertext, actor=ACTOR, context=b"c") == (
        b"kem before"
    )
    service.audit.checkpoint(actor=ACTOR)
    with db.session() as session:
        versions_of = {
            k: int(session.scalar(select(func.count()).where(KeyVersion.key_id == k)) or 0)
            for k in (kem.id, aes.id, sig.id)
        }
    assert versions_of == {kem.id: 1, aes.id: 1, sig.id: 1}

    # The service caches unwrapped material it has used; a service that has not (another
    # process, or one restarted during the outage) must go to the token for it.
    cold = KeyService(db, Keyring(hsm_custody))
    before = _store_state(db)

    with hsm.token_away():
        # Everything that needs a private key (so the KEK) fails, clearly.
        _unavailable(
            lambda: cold.crypto.decrypt("kem", kem_before.ciphertext, actor=ACTOR, context=b"c")
        )
        _unavailable(lambda: cold.crypto.encrypt("aes", b"during", actor=ACTOR))
        _unavailable(
            lambda: cold.crypto.decrypt("aes", aes_before.ciphertext, actor=ACTOR, context=b"c")
        )
        _unavailable(lambda: cold.crypto.generate_data_key("aes", actor=ACTOR))
        _unavailable(lambda: cold.crypto.sign("sig", b"during", actor=ACTOR))
        _unavailable(lambda: cold.keys.rotate("kem", actor=ACTOR))
        _unavailable(lambda: cold.keys.rotate("sig", actor=ACTOR))
        _unavailable(
            lambda: cold.keys.create_key(
                name="born-offline", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR
            )
        )
        _unavailable(lambda: cold.audit.checkpoint(actor=ACTOR))

        # Nothing was written by the failures: no version, no partial key row, no key.create.
        during = _store_state(db)
        assert during["keys"] == before["keys"]
        assert during["versions"] == before["versions"]
        assert cold.keys.count_versions("kem") == 1 and cold.keys.count_versions("sig") == 1
        with db.session() as session:
            assert session.scalar(select(Key).where(Key.name == "born-offline")) is None
        failed_uses = [
            e for e in _audit_since(db, before["audit_events"]) if e[0].startswith("key.")
        ]
        assert not [e for e in failed_uses if e[1] == "success"], failed_uses
        assert not [e for e in failed_uses if e[0] == "key.create"], failed_uses
        after_failures = _store_state(db)["audit_events"]

        # A feature, not an accident: operations that need only public keys keep working
        # while the HSM is away. Producers can still encrypt to a KEM key and relying parties
        # can still verify signatures; only the holders of private keys have to wait.
        kem_during = cold.crypto.encrypt("kem", b"kem during", actor=ACTOR, context=b"c")
        assert kem_during.key_version == 1
        assert (
            cold.crypto.verify("sig", b"signed before", signed_before.signature, actor=ACTOR) == 1
        )
        assert cold.crypto.verify("sig", b"forged", signed_before.signature, actor=ACTOR) is None
        assert cold.keys.get_key("kem").public_key_pem == kem.public_key_pem
        assert cold.crypto.public_key_pem("sig") == sig.public_key_pem
        assert cold.audit.verify().valid
        assert _audit_since(db, after_failures) == [
            ("key.encrypt", "success", kem.id),
            ("key.verify", "success", sig.id),
            ("key.verify", "invalid", sig.id),
        ]
        assert hsm_custody.health().state is HealthState.OFFLINE

    # The token is back: the same service objects work again, in this process.
    assert (
        cold.crypto.decrypt("kem", kem_before.ciphertext, actor=ACTOR, context=b"c")
        == b"kem before"
    )
    assert (
        cold.crypto.decrypt("kem", kem_during.ciphertext, actor=ACTOR, context=b"c")
        == b"kem during"
    )
    assert (
        cold.crypto.decrypt("aes", aes_before.ciphertext, actor=ACTOR, context=b"c")
        == b"aes before"
    )
    aes_after = cold.crypto.encrypt("aes", b"aes after", actor=ACTOR)
    assert cold.crypto.decrypt("aes", aes_after.ciphertext, actor=ACTOR) == b"aes after"
    data_key = cold.crypto.generate_data_key("aes", actor=ACTOR)
    assert cold.crypto.decrypt("aes", data_key.wrapped_key, actor=ACTOR) == data_key.plaintext_key
    signed_after = cold.crypto.sign("sig", b"signed after", actor=ACTOR)
    assert cold.crypto.verify("sig", b"signed after", signed_after.signature, actor=ACTOR) == 1
    assert cold.keys.rotate("kem", actor=ACTOR).version == 2
    assert (
        cold.crypto.decrypt("kem", kem_before.ciphertext, actor=ACTOR, context=b"c")
        == b"kem before"
    )
    late = cold.keys.create_key(
        name="born-offline", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR
    )
    assert late.version == 1 and late.status == "active"
    assert service.crypto.sign("born-offline", b"m", actor=ACTOR).key_version == 1
    assert service.crypto.decrypt("kem", kem_during.ciphertext, actor=ACTOR, context=b"c") == (
        b"kem during"
    )
    cold.audit.checkpoint(actor=ACTOR)

    report = service.audit.verify()
    assert report.valid, report.reason
    assert report.checkpoints_verified >= 2
    assert hsm_custody.health().state in (HealthState.DEGRADED, HealthState.ONLINE)
    assert hsm_custody.health().state is HealthState.ONLINE


def test_an_unreachable_token_is_an_hsm_offline_security_event(
    db: Database, hsm: SoftHsm, hsm_custody: Pkcs11Custody
) -> None:
    """The service records ``hsm_offline`` when an operation finds the custody unreachable."""
    service = KeyService(db, Keyring(hsm_custody))
    key = service.keys.create_key(name="sig", purpose="signing", algorithm="ML-DSA-65", actor=ACTOR)
    cold = KeyService(db, Keyring(hsm_custody))
    with hsm.token_away():
        _unavailable(lambda: cold.crypto.sign("sig", b"during", actor=ACTOR))
        # Recorded while the token is still away (the store is not the HSM).
        with db.session() as session:
            events = query_events(session, event_type=EventType.HSM_OFFLINE.value)
    assert events, "no hsm_offline security event was recorded"
    event = events[0]
    assert event.severity in ("high", "critical")
    assert event.key_id in (None, key.id)
    assert "314159" not in repr(event.details)  # never the PIN
    assert cold.crypto.sign("sig", b"after", actor=ACTOR).key_version == 1
    assert service.audit.verify().valid


def test_health_check_finding_the_token_gone_stops_cached_keys_too(
    db: Database, hsm: SoftHsm, hsm_custody: Pkcs11Custody
) -> None:
    service = KeyService(db, Keyring(hsm_custody))
    service.keys.create_key(name="signer", purpose="signing", algorithm="ML-DSA-65", actor="t")
    service.crypto.sign("signer", b"warm the cache", actor="t")
    with hsm.token_away():
        assert service.custody_health().state is HealthState.OFFLINE
        with pytest.raises(CustodyUnavailable):
            service.crypto.sign("signer", b"m", actor="t")
    assert service.crypto.sign("signer", b"m", actor="t").key_version == 1


def test_the_hsm_holds_the_audit_anchor(
    db: Database, hsm_custody: Pkcs11Custody, tmp_path: Path
) -> None:
    """With PKCS#11 custody the pinned audit keys live in the token, beyond the database
    and the data directory; the file only mirrors them for offline verifiers."""
    from sqlalchemy import text

    from qrc.crypto.schemes import get_signature
    from qrc.keys.audit.anchor import FileAnchor, TokenAnchor
    from qrc.keys.trail import AUDIT_KEY_NAME

    mirror = tmp_path / "audit-keys.jsonl"
    service = KeyService(
        db, Keyring(hsm_custody), audit_anchor=TokenAnchor(hsm_custody, FileAnchor(mirror))
    )
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    service.audit.checkpoint(actor=ACTOR)
    held = TokenAnchor(hsm_custody).keys()
    assert len(held) == 1 and FileAnchor(mirror).keys().keys() == held.keys()
    mirror.unlink()  # the data directory's copy is gone: the token still decides
    assert service.audit.verify().valid
    # Swap the store's audit public key: the token's pin does not follow.
    impostor = get_signature("ML-DSA-65").generate()
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE qrc_key_versions SET public_key = :p WHERE key_id = "
                "(SELECT id FROM qrc_keys WHERE name = :n)"
            ),
            {"p": impostor.public_key().public_bytes(), "n": AUDIT_KEY_NAME},
        )
    fresh = KeyService(db, Keyring(hsm_custody), audit_anchor=TokenAnchor(hsm_custody))
    assert fresh.audit.verify().valid  # verification never read the swapped key
    fresh.crypto.encrypt("k", b"x", actor=ACTOR)
    assert fresh.audit.checkpoint(actor=ACTOR).signer_key_version == 1
    assert fresh.audit.verify().valid
