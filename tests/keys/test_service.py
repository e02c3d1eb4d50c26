"""The key service on SQLite and PostgreSQL: lifecycle, versions, operations, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from qrc.crypto.errors import DecryptionError
from qrc.crypto.keyfile import load_public_pem
from qrc.keys.audit.events import query_events
from qrc.keys.data_index import IndexEntry
from qrc.keys.errors import (
    Conflict,
    InvalidRequest,
    KeyNotFound,
    KeyStateError,
    OperationNotPermitted,
)
from qrc.keys.service import KeyService
from qrc.keys.store.db import utcnow
from qrc.keys.store.models import AuditEvent, KeyVersion

ACTOR = "test:alice"


def test_create_defaults_to_hybrid_and_reads_back(service: KeyService) -> None:
    enc = service.keys.create_key(name="payments", purpose="encryption", actor=ACTOR)
    sig = service.keys.create_key(name="tokens", purpose="signing", actor=ACTOR)
    wrap = service.keys.create_key(name="dek-wrap", purpose="key_wrapping", actor=ACTOR)
    assert (enc.algorithm, sig.algorithm, wrap.algorithm) == (
        "X25519MLKEM768",
        "MLDSA65-Ed25519-SHA512",
        "AES-256-GCM",
    )
    assert enc.status == "active" and enc.version == 1
    assert enc.public_key_pem and wrap.public_key_pem is None
    assert load_public_pem(enc.public_key_pem).algorithm == "X25519MLKEM768"
    assert service.keys.get_key("payments") == service.keys.get_key(enc.id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"purpose": "encryption", "algorithm": "ML-DSA-65"}, "unfit"),
        ({"purpose": "signing", "algorithm": "ML-KEM-768"}, "unfit"),
        ({"purpose": "encryption", "algorithm": "X25519"}, "deprecated"),
        ({"purpose": "encryption", "algorithm": "NOPE-1"}, "unknown algorithm"),
        ({"purpose": "storage"}, "unknown purpose"),
    ],
)
def test_create_rejects_bad_requests(
    service: KeyService, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        service.keys.create_key(name="k", actor=ACTOR, **kwargs)


def test_names_are_unique_and_validated(service: KeyService) -> None:
    service.keys.create_key(name="a", purpose="encryption", actor=ACTOR, algorithm="ML-KEM-768")
    with pytest.raises(Conflict):
        service.keys.create_key(name="a", purpose="encryption", actor=ACTOR)
    with pytest.raises(InvalidRequest):
        service.keys.create_key(name="bad name!", purpose="encryption", actor=ACTOR)
    with pytest.raises(KeyNotFound):
        service.keys.get_key("missing")


@pytest.mark.parametrize("algorithm", ["X25519MLKEM768", "ML-KEM-1024", "HQC-128", "AES-256-GCM"])
def test_encrypt_decrypt_bound_to_context_and_key(service: KeyService, algorithm: str) -> None:
    purpose = "key_wrapping" if algorithm == "AES-256-GCM" else "encryption"
    key = service.keys.create_key(name="k", purpose=purpose, algorithm=algorithm, actor=ACTOR)
    other = service.keys.create_key(name="o", purpose=purpose, algorithm=algorithm, actor=ACTOR)
    sealed = service.crypto.encrypt("k", b"IBAN DE89", actor=ACTOR, context=b"accounts/42/iban")
    assert (sealed.key_id, sealed.key_version) == (key.id, 1)
    assert (
        service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR, context=b"accounts/42/iban")
        == b"IBAN DE89"
    )
    assert (
        service.crypto.decrypt(None, sealed.ciphertext, actor=ACTOR, context=b"accounts/42/iban")
        == b"IBAN DE89"
    )
    for ref, context in (("k", b"accounts/43/iban"), ("k", b""), (other.id, b"accounts/42/iban")):
        with pytest.raises(DecryptionError):
            service.crypto.decrypt(ref, sealed.ciphertext, actor=ACTOR, context=context)
    tampered = bytearray(sealed.ciphertext)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        service.crypto.decrypt("k", bytes(tampered), actor=ACTOR, context=b"accounts/42/iban")


def test_rotation_versions_and_min_decryption_version(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    old = service.crypto.encrypt("k", b"v1 data", actor=ACTOR)
    rotated = service.keys.rotate("k", actor=ACTOR)
    assert rotated.version == 2
    new = service.crypto.encrypt("k", b"v2 data", actor=ACTOR)
    assert new.key_version == 2
    assert service.crypto.decrypt("k", old.ciphertext, actor=ACTOR) == b"v1 data"
    rewrapped = service.crypto.rewrap("k", old.ciphertext, actor=ACTOR)
    assert rewrapped.key_version == 2
    assert service.crypto.decrypt("k", rewrapped.ciphertext, actor=ACTOR) == b"v1 data"
    service.keys.set_min_decryption_version("k", 2, actor=ACTOR)
    with pytest.raises(OperationNotPermitted, match="retired"):
        service.crypto.decrypt("k", old.ciphertext, actor=ACTOR)
    with pytest.raises(InvalidRequest):
        service.keys.set_min_decryption_version("k", 3, actor=ACTOR)
    with pytest.raises(Conflict):
        service.keys.rotate("k", actor=ACTOR, expected_version=1)
    assert service.keys.count_versions("k") == 2


def test_sign_verify_across_versions(service: KeyService) -> None:
    service.keys.create_key(name="s", purpose="signing", actor=ACTOR)
    first = service.crypto.sign("s", b"msg", actor=ACTOR, context=b"payments")
    service.keys.rotate("s", actor=ACTOR)
    second = service.crypto.sign("s", b"msg", actor=ACTOR, context=b"payments")
    assert second.key_version == 2
    assert (
        service.crypto.verify("s", b"msg", first.signature, actor=ACTOR, context=b"payments") == 1
    )
    assert (
        service.crypto.verify("s", b"msg", second.signature, actor=ACTOR, context=b"payments") == 2
    )
    assert (
        service.crypto.verify("s", b"msg", second.signature, actor=ACTOR, context=b"other") is None
    )
    assert (
        service.crypto.verify("s", b"msg!", second.signature, actor=ACTOR, context=b"payments")
        is None
    )
    with pytest.raises(OperationNotPermitted, match="signing"):
        service.crypto.encrypt("s", b"x", actor=ACTOR)


def test_states_and_transitions(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    sealed = service.crypto.encrypt("k", b"data", actor=ACTOR)
    assert service.keys.suspend("k", actor=ACTOR).status == "suspended"
    with pytest.raises(OperationNotPermitted):
        service.crypto.encrypt("k", b"x", actor=ACTOR)
    with pytest.raises(OperationNotPermitted):
        service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR)
    assert service.keys.resume("k", actor=ACTOR).status == "active"
    with pytest.raises(KeyStateError):
        service.keys.resume("k", actor=ACTOR)
    deactivated = service.keys.revoke("k", "superseded", actor=ACTOR)
    assert deactivated.status == "deactivated" and deactivated.revocation_reason == "superseded"
    with pytest.raises(OperationNotPermitted):
        service.crypto.encrypt("k", b"x", actor=ACTOR)
    assert (
        service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR) == b"data"
    )  # old data stays readable
    with pytest.raises(KeyStateError):
        service.keys.suspend("k", actor=ACTOR)
    with pytest.raises(InvalidRequest):
        service.keys.revoke("k", "bored", actor=ACTOR)


def test_compromised_key_never_protects_and_decrypts_only_in_recovery(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    sealed = service.crypto.encrypt("k", b"data", actor=ACTOR)
    assert service.keys.revoke("k", "key_compromise", actor=ACTOR).status == "compromised"
    with pytest.raises(OperationNotPermitted):
        service.crypto.encrypt("k", b"x", actor=ACTOR)
    with pytest.raises(OperationNotPermitted, match="recovery"):
        service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR)
    assert service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR, recovery=True) == b"data"
    with pytest.raises(KeyStateError):
        service.keys.rotate("k", actor=ACTOR)
    with service.db.session() as session:
        types = [e.event_type for e in query_events(session)]
        recovery = session.scalars(
            select(AuditEvent).where(
                AuditEvent.event_type == "key.decrypt", AuditEvent.result == "success"
            )
        ).all()
    assert types == ["key_compromise", "compromised_key_recovery_use"]
    assert recovery[-1].details.get("recovery") is True


def test_destruction_is_scheduled_cancellable_then_shreds(service: KeyService) -> None:
    key = service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    service.keys.rotate("k", actor=ACTOR)
    sealed = service.crypto.encrypt("k", b"data", actor=ACTOR)
    pending = service.keys.schedule_destruction("k", actor=ACTOR)
    assert pending.status == "pending_destruction"
    assert pending.destruction_due_at is not None
    assert timedelta(days=6) < pending.destruction_due_at - utcnow() <= timedelta(days=7)
    with pytest.raises(OperationNotPermitted, match="pending destruction"):
        service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR)
    assert service.keys.cancel_destruction("k", actor=ACTOR).status == "active"
    assert service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR) == b"data"
    service.keys.schedule_destruction("k", actor=ACTOR, delay=timedelta(0))
    assert service.scheduler.run_due()["destroyed"] == 1
    destroyed = service.keys.get_key("k")
    assert destroyed.status == "destroyed" and destroyed.destroyed_at is not None
    with service.db.session() as session:
        rows = session.scalars(select(KeyVersion).where(KeyVersion.key_id == key.id)).all()
    assert len(rows) == 2 and all(r.wrapped_private is None for r in rows)
    with pytest.raises(OperationNotPermitted):
        service.crypto.decrypt("k", sealed.ciphertext, actor=ACTOR)
    with pytest.raises(KeyStateError):
        service.keys.schedule_destruction("k", actor=ACTOR)
    assert service.scheduler.run_due()["destroyed"] == 0  # runs once


def test_scheduler_rotates_and_expires(service: KeyService) -> None:
    service.keys.create_key(
        name="r", purpose="encryption", actor=ACTOR, rotation_period=timedelta(hours=1)
    )
    service.keys.create_key(
        name="e", purpose="signing", actor=ACTOR, expires_at=utcnow() + timedelta(hours=2)
    )
    assert service.scheduler.run_due() == {"rotated": 0, "expired": 0, "destroyed": 0}
    later = utcnow() + timedelta(hours=3)
    assert service.scheduler.run_due(now=later) == {"rotated": 1, "expired": 1, "destroyed": 0}
    assert service.keys.get_key("r").version == 2
    assert service.keys.get_key("e").status == "deactivated"
    assert service.scheduler.run_due(now=later)["rotated"] == 0


def test_every_operation_is_audited_with_actor_and_chain_verifies(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="alice")
    sealed = service.crypto.encrypt("k", b"data", actor="bob")
    service.crypto.decrypt("k", sealed.ciphertext, actor="carol")
    with pytest.raises(DecryptionError):
        service.crypto.decrypt("k", sealed.ciphertext, actor="mallory", context=b"x")
    service.keys.rotate("k", actor="alice")
    with service.db.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        report = service.audit.log.verify(session)
    assert [(r.event_type, r.actor, r.result) for r in rows] == [
        ("key.create", "alice", "success"),
        ("key.encrypt", "bob", "success"),
        ("key.decrypt", "carol", "success"),
        ("key.decrypt", "mallory", "failure"),
        ("key.rotate", "alice", "success"),
    ]
    assert report.valid


def test_decryption_failure_burst_raises_one_security_event(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    sealed = service.crypto.encrypt("k", b"data", actor=ACTOR)
    for _ in range(12):
        with pytest.raises(DecryptionError):
            service.crypto.decrypt("k", sealed.ciphertext, actor="attacker", context=b"guess")
    with service.db.session() as session:
        events = query_events(session, event_type="decryption_failure_burst")
    assert len(events) == 1 and events[0].severity == "high"


def test_audit_write_failure_means_the_operation_did_not_happen(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    with service.db.engine.begin() as connection:
        connection.execute(text("DROP TABLE qrc_audit_events"))
    with pytest.raises(Exception):
        service.keys.rotate("k", actor=ACTOR)
    assert service.keys.count_versions("k") == 1


def test_data_keys_and_index(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="key_wrapping", actor=ACTOR)
    data_key = service.crypto.generate_data_key("k", actor=ACTOR, context=b"table:users")
    assert data_key.plaintext_key and len(data_key.plaintext_key) == 32
    assert (
        service.crypto.decrypt("k", data_key.wrapped_key, actor=ACTOR, context=b"table:users")
        == data_key.plaintext_key
    )
    wrapped_only = service.crypto.generate_data_key("k", actor=ACTOR, include_plaintext=False)
    assert wrapped_only.plaintext_key is None
    entry = IndexEntry("users/42/email", "k", 1, "column", data_class="pii")
    service.data.register([entry], actor=ACTOR)
    assert [r.identifier for r in service.data.under("k")] == ["users/42/email"]
    assert service.data.under("k", below_version=1) == []


def test_list_keys_filters_and_pages(service: KeyService) -> None:
    for i in range(5):
        service.keys.create_key(
            name=f"k{i}", purpose="encryption", actor=ACTOR, algorithm="ML-KEM-768"
        )
    service.keys.create_key(name="s", purpose="signing", actor=ACTOR, algorithm="ML-DSA-44")
    page, cursor = service.keys.list_keys(purpose="encryption", limit=3)
    rest, end = service.keys.list_keys(purpose="encryption", limit=3, after=cursor)
    assert len(page) == 3 and len(rest) == 2 and end is None
    assert {k.name for k in page + rest} == {f"k{i}" for i in range(5)}
    assert [k.name for k in service.keys.list_keys(algorithm="ML-DSA-44")[0]] == ["s"]


def test_audit_checkpoints_signed_by_the_service_key_and_tampering_is_an_event(
    service: KeyService,
) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    checkpoint = service.audit.checkpoint(actor=ACTOR)
    assert checkpoint.algorithm == "ML-DSA-65"
    report = service.audit.verify()
    assert report.valid and report.checkpoints_verified == 1
    assert "BEGIN PUBLIC KEY" in service.audit.public_key_pem()
    with service.db.session() as session:
        session.execute(text("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 1"))
    broken = service.audit.verify()
    assert not broken.valid and broken.first_bad_event == 1
    with service.db.session() as session:
        events = query_events(session, event_type="audit_verification_failure")
    assert len(events) == 1 and events[0].severity == "critical"


def test_refused_requests_are_audited_as_denied(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    service.keys.suspend("k", actor=ACTOR)
    with pytest.raises(OperationNotPermitted):
        service.crypto.encrypt("k", b"x", actor="bob")
    with pytest.raises(KeyStateError):
        service.keys.suspend("k", actor="carol")
    with service.db.session() as session:
        denied = session.scalars(
            select(AuditEvent).where(AuditEvent.result == "denied").order_by(AuditEvent.seq)
        ).all()
    assert [(e.event_type, e.actor) for e in denied] == [
        ("key.encrypt", "bob"),
        ("key.suspend", "carol"),
    ]
    assert all(e.key_id == service.keys.get_key("k").id for e in denied)
    assert service.audit.verify().valid


def test_checkpoints_refuse_to_vouch_for_a_tampered_chain(service: KeyService) -> None:
    from qrc.keys.audit.log import AuditError

    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    with service.db.session() as session:
        session.execute(text("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 1"))
    with pytest.raises(AuditError, match="broken"):
        service.audit.checkpoint(actor=ACTOR)
