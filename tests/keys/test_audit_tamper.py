"""The audit trail against an attacker with write access to the database.

Every way of rewriting history is tried as an attacker would, with SQL on the real store
(SQLite and PostgreSQL): edit, delete, insert, reorder, cut the tail, append well-formed
events, delete checkpoints, swap the audit key, forge checkpoints. Each must be found by
verification, which trusts only what lies outside the database: the pinned audit keys, the
witness's latest checkpoint and the MAC key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text

from qrc.crypto.base import SigningKey
from qrc.crypto.schemes import get_signature
from qrc.keys.audit.anchor import AuditMacKey, FileAnchor, MacKeyFile, MemoryAnchor
from qrc.keys.audit.format import (
    CHECKPOINT_CONTEXT,
    GENESIS_HASH,
    canonical_event,
    checkpoint_message,
    event_hash,
)
from qrc.keys.audit.log import AuditError
from qrc.keys.audit.note import InvalidNote, parse_note, sign_note, verify_note
from qrc.keys.audit.witness import FileWitness, MemoryWitness, WitnessRefused
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.errors import InvalidRequest, OperationNotPermitted
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database, utcnow
from qrc.keys.store.models import AuditEvent
from qrc.keys.trail import AUDIT_KEY_NAME

ACTOR = "test"


def _service(db: Database, custody: LocalCustody, tmp_path: Path) -> KeyService:
    return KeyService(
        db,
        Keyring(custody),
        audit_anchor=FileAnchor(tmp_path / "audit-keys.jsonl"),
        witness=FileWitness(tmp_path / "audit-witness.note"),
        audit_mac=MacKeyFile(tmp_path / "audit-mac.key").load_or_create(1),
    )


@pytest.fixture
def service(db: Database, custody: LocalCustody, tmp_path: Path) -> KeyService:
    """A store with two witnessed checkpoints, pinned keys and MACs on every event."""
    service = _service(db, custody, tmp_path)
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    for i in range(3):
        service.crypto.encrypt("k", b"x%d" % i, actor=ACTOR)
    service.audit.checkpoint(actor=ACTOR)
    for i in range(2):
        service.crypto.encrypt("k", b"y%d" % i, actor=ACTOR)
    service.audit.checkpoint(actor=ACTOR)
    assert service.audit.verify().valid
    return service


def _sql(db: Database, *statements: str, **params: object) -> None:
    with db.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)


def _events(connection: Connection) -> list[dict[str, object]]:
    rows = connection.execute(select(AuditEvent.__table__).order_by(AuditEvent.seq))
    return [dict(row._mapping) for row in rows]


def _relink(connection: Connection, events: list[dict[str, object]]) -> None:
    """Renumber and re-hash ``events`` into a well-formed chain, as an attacker can."""
    connection.execute(text("DELETE FROM qrc_audit_events"))
    prev = GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        canonical = canonical_event(
            seq=seq,
            at=event["at"],  # type: ignore[arg-type]
            event_type=str(event["event_type"]),
            actor=str(event["actor"]),
            result=str(event["result"]),
            key_id=event["key_id"],  # type: ignore[arg-type]
            key_version=event["key_version"],  # type: ignore[arg-type]
            algorithm=event["algorithm"],  # type: ignore[arg-type]
            details=event["details"],  # type: ignore[arg-type]
        )
        digest = event_hash(prev, canonical)
        connection.execute(
            AuditEvent.__table__.insert(),
            [{**event, "seq": seq, "prev_hash": prev, "hash": digest}],
        )
        prev = digest


def _rewrite(db: Database, change: Callable[[list[dict[str, object]]], None]) -> None:
    with db.engine.begin() as connection:
        events = _events(connection)
        change(events)
        _relink(connection, events)


def _broken(service: KeyService, *, refused: bool = False) -> str:
    """Verification fails; with ``refused``, the service also will not sign a new checkpoint
    (the check before each checkpoint reads only what follows the latest one, so edits
    further back are the full verification's to find)."""
    report = service.audit.verify()
    assert not report.valid, report
    if refused:
        service.crypto.encrypt("k", b"more", actor=ACTOR)
        with pytest.raises(AuditError):
            service.audit.checkpoint(actor=ACTOR)
    return report.reason


def test_edited_event(service: KeyService) -> None:
    _sql(service.db, "UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 3")
    assert "edited" in _broken(service)


def test_deleted_event(service: KeyService) -> None:
    _sql(service.db, "DELETE FROM qrc_audit_events WHERE seq = 3")
    assert "missing" in _broken(service)


def test_inserted_event_with_the_chain_rehashed(service: KeyService) -> None:
    def insert(events: list[dict[str, object]]) -> None:
        events.insert(3, {**events[2], "actor": "mallory", "mac": None})

    _rewrite(service.db, insert)
    _broken(service)


def test_reordered_events_with_the_chain_rehashed(service: KeyService) -> None:
    def swap(events: list[dict[str, object]]) -> None:
        events[2], events[3] = events[3], events[2]

    _rewrite(service.db, swap)
    _broken(service)


def test_tail_cut_with_its_checkpoints(service: KeyService) -> None:
    """The attacker removes the last events and every checkpoint that covered them."""
    with service.db.engine.connect() as connection:
        head = int(connection.execute(text("SELECT max(seq) FROM qrc_audit_events")).scalar_one())
    _sql(
        service.db,
        "DELETE FROM qrc_audit_events WHERE seq > :keep",
        "DELETE FROM qrc_audit_checkpoints WHERE seq > :keep",
        keep=head - 3,
    )
    assert "deleted from its end" in _broken(service, refused=True)


def test_appended_well_formed_event(service: KeyService) -> None:
    """A well-linked event appended after the head: only the service can MAC it."""
    with service.db.engine.begin() as connection:
        last = _events(connection)[-1]
        seq = int(last["seq"]) + 1  # type: ignore[call-overload]
        at = utcnow()
        forged = {**last, "seq": seq, "at": at, "actor": "admin:nobody", "mac": None}
        canonical = canonical_event(
            seq=seq,
            at=at,
            event_type=str(forged["event_type"]),
            actor="admin:nobody",
            result=str(forged["result"]),
            key_id=forged["key_id"],  # type: ignore[arg-type]
            key_version=forged["key_version"],  # type: ignore[arg-type]
            algorithm=forged["algorithm"],  # type: ignore[arg-type]
            details=forged["details"],  # type: ignore[arg-type]
        )
        forged["prev_hash"] = last["hash"]
        forged["hash"] = event_hash(bytes(last["hash"]), canonical)  # type: ignore[arg-type]
        forged["mac"] = secrets.token_bytes(32)  # a guess
        connection.execute(AuditEvent.__table__.insert(), [forged])
    assert "not written by this service" in _broken(service, refused=True)


def test_deleted_checkpoints(service: KeyService) -> None:
    _sql(service.db, "DELETE FROM qrc_audit_checkpoints")
    assert "checkpoints were deleted" in _broken(service, refused=True)


def test_swapped_audit_key_and_re_signed_history(service: KeyService) -> None:
    """The attacker rewrites history, replaces the audit public key, re-signs checkpoints."""
    impostor = get_signature("ML-DSA-65").generate()
    assert isinstance(impostor, SigningKey)
    with service.db.engine.begin() as connection:
        key_id = connection.execute(
            text("SELECT id FROM qrc_keys WHERE name = :n"), {"n": AUDIT_KEY_NAME}
        ).scalar()
        connection.execute(
            text("UPDATE qrc_key_versions SET public_key = :p WHERE key_id = :k"),
            {"p": impostor.public_key().public_bytes(), "k": key_id},
        )
        events = _events(connection)
        events[2]["actor"] = "someone-else"
        _relink(connection, events)
        rows = connection.execute(text("SELECT id, seq FROM qrc_audit_checkpoints")).all()
        heads = {int(e["seq"]): bytes(e["hash"]) for e in _events(connection)}  # type: ignore[call-overload,arg-type]
        for checkpoint_id, seq in rows:
            at = utcnow()
            message = checkpoint_message(
                seq=seq,
                head_hash=heads[seq],
                at=at,
                algorithm="ML-DSA-65",
                signer_key_id=str(key_id),
                signer_key_version=1,
            )
            connection.execute(
                text(
                    "UPDATE qrc_audit_checkpoints SET head_hash = :h, at = :at, signature = :s "
                    "WHERE id = :i"
                ),
                {
                    "h": heads[seq],
                    "at": at,
                    "s": impostor.sign(message, CHECKPOINT_CONTEXT),
                    "i": checkpoint_id,
                },
            )
    reason = _broken(service, refused=True)
    assert "signature is not valid" in reason or "not pinned" in reason


def test_forged_checkpoint_by_another_key(service: KeyService) -> None:
    """A checkpoint row signed with a key of the attacker's (a user key of the store)."""
    signer = service.keys.create_key(
        name="attacker", purpose="signing", algorithm="ML-DSA-65", actor="mallory"
    )
    with service.db.engine.begin() as connection:
        seq, head = connection.execute(
            text("SELECT seq, hash FROM qrc_audit_events ORDER BY seq DESC LIMIT 1")
        ).one()
    # Signing the checkpoint message through the service is refused whatever the key...
    message = checkpoint_message(
        seq=seq,
        head_hash=bytes(head),
        at=utcnow(),
        algorithm="ML-DSA-65",
        signer_key_id=signer.id,
        signer_key_version=1,
    )
    with pytest.raises(InvalidRequest, match="reserved"):
        service.crypto.sign("attacker", message, actor="mallory", context=CHECKPOINT_CONTEXT)
    # ... and so is any use of the audit key itself.
    with pytest.raises(OperationNotPermitted, match="reserved"):
        service.crypto.sign(AUDIT_KEY_NAME, message, actor="mallory")
    # A checkpoint signed with the attacker's own (unpinned) key is not trusted either.
    own = get_signature("ML-DSA-65").generate()
    assert isinstance(own, SigningKey)
    _sql(
        service.db,
        "INSERT INTO qrc_audit_checkpoints (seq, head_hash, at, algorithm, signer_key_id, "
        "signer_key_version, signature) VALUES (:seq, :h, :at, 'ML-DSA-65', :k, 1, :s)",
        seq=seq,
        h=bytes(head),
        at=utcnow(),
        k=signer.id,
        s=own.sign(message, CHECKPOINT_CONTEXT),
    )
    assert "unknown" in _broken(service)


def test_the_audit_key_is_reserved(service: KeyService) -> None:
    for attempt in (
        lambda: service.keys.suspend(AUDIT_KEY_NAME, actor="km"),
        lambda: service.keys.revoke(AUDIT_KEY_NAME, "cessation_of_operation", actor="km"),
        lambda: service.keys.schedule_destruction(AUDIT_KEY_NAME, actor="km"),
        lambda: service.keys.rotate(AUDIT_KEY_NAME, actor="km"),
        lambda: service.keys.set_min_decryption_version(AUDIT_KEY_NAME, 1, actor="km"),
        lambda: service.crypto.verify(AUDIT_KEY_NAME, b"m", b"s", actor="km"),
    ):
        with pytest.raises(OperationNotPermitted, match="reserved"):
            attempt()
    with pytest.raises(InvalidRequest, match="reserved"):
        service.keys.create_key(name="qrc-audit-2", purpose="signing", actor="km")
    with pytest.raises(InvalidRequest, match="reserved"):
        service.keys.create_key(
            name="mine", purpose="signing", labels={"qrc.system": "audit"}, actor="km"
        )
    assert service.keys.get_key(AUDIT_KEY_NAME).state == "active"
    assert service.audit.verify().valid


def test_audit_key_rotation_is_chained_signed_and_pinned(
    service: KeyService, db: Database, custody: LocalCustody, tmp_path: Path
) -> None:
    before = service.keys.get_key(AUDIT_KEY_NAME)
    checkpoint = service.audit.rotate_signing_key(actor="admin:alice")
    assert checkpoint.signer_key_version == before.version  # the old key signed the change
    after = service.keys.get_key(AUDIT_KEY_NAME)
    assert after.version == before.version + 1
    events, _ = service.audit.query(event_type="audit.key_rotate")
    assert [e.key_version for e in events] == [after.version]
    pinned = FileAnchor(tmp_path / "audit-keys.jsonl").keys()
    assert set(pinned) == {(after.id, before.version), (after.id, after.version)}
    service.crypto.encrypt("k", b"after", actor=ACTOR)
    new = service.audit.checkpoint(actor=ACTOR)
    assert new.signer_key_version == after.version
    assert service.audit.verify().valid
    # Another process with the same anchor, witness and MAC key agrees.
    assert _service(db, custody, tmp_path).audit.verify().valid


def test_a_store_whose_key_is_not_pinned_is_refused(
    service: KeyService, db: Database, custody: LocalCustody, tmp_path: Path
) -> None:
    """Once pinned, an audit key's version cannot be pinned again with another key."""
    impostor = get_signature("ML-DSA-65").generate()
    assert isinstance(impostor, SigningKey)
    anchor = FileAnchor(tmp_path / "audit-keys.jsonl")
    key_id, version = next(iter(anchor.keys()))
    with pytest.raises(AuditError, match="another public key"):
        anchor.pin(key_id, version, impostor.public_key())


def test_the_witness_refuses_to_go_back_and_forks() -> None:
    signer = get_signature("ML-DSA-65").generate()
    assert isinstance(signer, SigningKey)
    witness = MemoryWitness()
    witness.publish(sign_note("qrc.audit/k_1", 10, b"\x01" * 32, signer))
    witness.publish(sign_note("qrc.audit/k_1", 12, b"\x02" * 32, signer))
    with pytest.raises(WitnessRefused):
        witness.publish(sign_note("qrc.audit/k_1", 11, b"\x03" * 32, signer))
    with pytest.raises(WitnessRefused, match="forked"):
        witness.publish(sign_note("qrc.audit/k_1", 12, b"\x04" * 32, signer))
    held = witness.latest()
    assert held is not None and parse_note(held).seq == 12


def test_checkpoint_notes_verify_only_with_the_pinned_key() -> None:
    signer, other = get_signature("ML-DSA-65").generate(), get_signature("ML-DSA-65").generate()
    assert isinstance(signer, SigningKey) and isinstance(other, SigningKey)
    note = sign_note("qrc.audit/k_1", 7, b"\x07" * 32, signer)
    assert note.decode().startswith("qrc.audit/k_1\n7\n")
    parsed = verify_note(note, [signer.public_key()])
    assert (parsed.seq, parsed.head_hash) == (7, b"\x07" * 32)
    with pytest.raises(InvalidNote):
        verify_note(note, [other.public_key()])
    with pytest.raises(InvalidNote):
        verify_note(note.replace(b"\n7\n", b"\n8\n"), [signer.public_key()])
    for malformed in (b"", note + b"x", note.replace(b"\n\n", b"\n"), b"\x00" + note):
        with pytest.raises(InvalidNote):
            parse_note(malformed)


def test_without_outside_anchors_verification_says_what_it_trusted(
    db: Database, custody: LocalCustody
) -> None:
    """The library default (memory anchor, no witness, no MAC) still pins on first use."""
    service = KeyService(db, Keyring(custody), audit_anchor=MemoryAnchor())
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    service.audit.checkpoint(actor=ACTOR)
    report = service.audit.verify()
    assert report.valid and report.witnessed_seq is None
    assert AuditMacKey(b"k" * 32, 1).from_seq == 1
