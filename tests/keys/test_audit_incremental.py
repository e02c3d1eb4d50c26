"""Incremental verification: the latest checkpoint, then only the events after it.

Runs on SQLite and on the real PostgreSQL server (the migrated store of ``conftest.db``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey
from qrc.crypto.schemes import get_signature
from qrc.keys.audit.log import AuditError, AuditLog, VerificationReport, canonical_event, event_hash
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.keys.store.models import AuditCheckpoint, AuditEvent
from tests.keys.test_audit import SIGNER_ID, _append, _checkpoint, _execute, _rehash_from, _shift

ACTOR = "test:alice"


@pytest.fixture(scope="module")
def signer() -> SigningKey:
    return get_signature("ML-DSA-65").generate()


@pytest.fixture(scope="module")
def keys(signer: SigningKey) -> dict[tuple[str, int], Any]:
    return {(SIGNER_ID, 1): signer.public_key()}


@pytest.fixture
def log() -> AuditLog:
    # A small page size, so the events after the checkpoint span several pages.
    return AuditLog(page_size=3)


@pytest.fixture
def chain(db: Database, log: AuditLog, signer: SigningKey) -> Database:
    """Events 1..16, checkpoints at 4 and 10; events 11..16 after the latest checkpoint."""
    _append(db, log, 4)
    _checkpoint(db, log, signer)
    _append(db, log, 6, actor="client:bob", event_type="key.decrypt")
    _checkpoint(db, log, signer)
    _append(db, log, 6, actor="client:carol", event_type="key.sign")
    return db


def _incremental(db: Database, log: AuditLog, keys: Any) -> VerificationReport:
    with db.session() as session:
        return log.verify_since_checkpoint(session, keys)


def _full(db: Database, log: AuditLog, keys: Any) -> VerificationReport:
    with db.session() as session:
        return log.verify(session, keys)


def _swap(db: Database, a: int, b: int) -> None:
    events = AuditEvent.__table__
    _execute(
        db,
        update(events).where(events.c.seq == a).values(seq=-a),
        update(events).where(events.c.seq == b).values(seq=a),
        update(events).where(events.c.seq == -a).values(seq=b),
    )


def _insert_at(db: Database, seq: int, *, linked: bool, upto: int | None = None) -> None:
    """Shift events ``seq``..``upto`` (default: all) up by one; put a forged event at ``seq``."""
    if upto is None:
        _shift(db, seq, 1)
    else:
        events = AuditEvent.__table__
        moved = events.c.seq >= 100_000
        _execute(
            db,
            update(events)
            .where(events.c.seq >= seq, events.c.seq <= upto)
            .values(seq=events.c.seq + 100_000),
            update(events).where(moved).values(seq=events.c.seq - 100_000 + 1),
        )
    with db.session() as session:
        prev = session.get(AuditEvent, seq - 1)
        assert prev is not None
        forged: dict[str, Any] = {
            "seq": seq,
            "at": prev.at,
            "event_type": "key.export",
            "actor": "client:mallory",
            "result": "success",
            "key_id": "k1",
            "key_version": 1,
            "algorithm": "ML-KEM-768",
            "details": {},
        }
        link = prev.hash if linked else b"\x42" * 32
        session.add(
            AuditEvent(**forged, prev_hash=link, hash=event_hash(link, canonical_event(**forged)))
        )


def _tamper(db: Database, tamper: str) -> None:
    events = AuditEvent.__table__
    checkpoints = AuditCheckpoint.__table__
    latest = checkpoints.c.seq == 10
    kind, _, where = tamper.rpartition("@")
    seq = int(where)
    at = events.c.seq == seq
    if kind == "edit_actor":
        _execute(
            db, text(f"UPDATE qrc_audit_events SET actor = 'client:mallory' WHERE seq = {seq}")
        )
    elif kind == "edit_details":
        _execute(db, update(events).where(at).values(details={"request_id": "other"}))
    elif kind == "edit_prev_hash":
        _execute(db, update(events).where(at).values(prev_hash=b"\x00" * 32))
    elif kind == "edit_hash":
        _execute(db, update(events).where(at).values(hash=b"\x07" * 32))
    elif kind == "edit_rehashed":
        _execute(db, update(events).where(at).values(result="failure"))
        _rehash_from(db, seq)
    elif kind == "malformed_details":
        _execute(db, update(events).where(at).values(details={"ratio": 0.5}))
    elif kind == "delete":
        _execute(db, delete(events).where(at))
    elif kind == "delete_through":
        _execute(db, delete(events).where(events.c.seq >= seq, events.c.seq <= 10))
    elif kind in ("insert_unlinked", "insert_linked"):
        _insert_at(db, seq, linked=kind == "insert_linked")
    elif kind == "insert_before_checkpoint":
        # Room for the forged event: event 9 goes, so the checkpointed event stays at 10.
        _execute(db, delete(events).where(events.c.seq == 9))
        _insert_at(db, seq, linked=False, upto=8)
    elif kind == "reorder":
        _swap(db, seq, seq + 1)
    elif kind == "flip_signature":
        with db.session() as session:
            cp = session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq)).one()
            cp.signature = bytes([cp.signature[0] ^ 1]) + cp.signature[1:]
    elif kind == "forge_head":
        _execute(db, update(checkpoints).where(latest).values(head_hash=b"\x01" * 32))
    elif kind == "unknown_signer":
        _execute(db, update(checkpoints).where(latest).values(signer_key_id="other"))
    else:  # pragma: no cover - a typo in a parameter
        raise AssertionError(tamper)


# --------------------------------------------------------------------------- valid
def test_valid_chain_with_several_checkpoints(
    chain: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    report = _incremental(chain, log, keys)
    assert (report.valid, report.events, report.first_bad_event) == (True, 6, None), report
    assert (report.checkpoints_verified, report.last_checkpoint_seq) == (1, 10)
    assert "checkpoint at seq 10" in report.reason
    assert "events 11..16 are not yet covered" in report.reason
    assert _full(chain, log, keys).valid
    # A lookup function works like the mapping.
    assert _incremental(chain, log, lambda kid, v: keys.get((kid, v))).valid
    _checkpoint(chain, log, signer)
    report = _incremental(chain, log, keys)
    assert (report.valid, report.events, report.last_checkpoint_seq) == (True, 0, 16)
    assert "not yet covered" not in report.reason
    _append(chain, log, 1)
    assert _incremental(chain, log, keys).events == 1


def test_without_a_checkpoint_it_is_the_full_verify(
    db: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    assert _incremental(db, log, keys) == _full(db, log, keys)
    _append(db, log, 5)
    assert _incremental(db, log, keys) == _full(db, log, keys)
    _execute(db, text("UPDATE qrc_audit_events SET actor = 'client:mallory' WHERE seq = 2"))
    broken = _incremental(db, log, keys)
    assert not broken.valid and broken.first_bad_event == 2
    assert broken == _full(db, log, keys)


def test_checkpoint_of_the_empty_log_anchors_at_genesis(
    db: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    _checkpoint(db, log, signer)
    assert _incremental(db, log, keys).last_checkpoint_seq == 0
    _append(db, log, 4)
    report = _incremental(db, log, keys)
    assert (report.valid, report.events) == (True, 4)
    _execute(db, delete(AuditEvent.__table__).where(AuditEvent.__table__.c.seq == 1))
    report = _incremental(db, log, keys)
    assert (report.valid, report.first_bad_event) == (False, 1)


def test_keys_are_required(chain: Database, log: AuditLog) -> None:
    with chain.session() as session, pytest.raises(ValueError, match="keys"):
        log.verify_since_checkpoint(session, None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tampering
@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason"),
    [
        ("edit_actor@13", 13, "edited"),
        ("edit_details@11", 11, "edited"),
        ("edit_prev_hash@13", 13, "prev_hash"),
        ("edit_hash@16", 16, "edited"),
        ("malformed_details@13", 13, "malformed"),
        ("delete@13", 13, "missing"),
        ("delete@11", 11, "missing"),
        ("insert_unlinked@13", 13, "prev_hash"),
        ("insert_linked@13", 14, "prev_hash"),
        ("reorder@12", 12, "prev_hash"),
    ],
)
def test_tampering_after_the_latest_checkpoint(
    chain: Database, log: AuditLog, keys: Any, tamper: str, first_bad: int, reason: str
) -> None:
    _tamper(chain, tamper)
    seen: list[VerificationReport] = []
    log.on_verification_failure = seen.append
    report = _incremental(chain, log, keys)
    assert not report.valid, report
    assert report.first_bad_event == first_bad, report
    assert reason in report.reason, report
    assert seen == [report]
    # The full verify names the same event for the same reason.
    full = _full(chain, log, keys)
    assert (full.first_bad_event, full.reason) == (report.first_bad_event, report.reason)


@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason"),
    [
        ("flip_signature@10", None, "checkpoint at seq 10: signature is not valid"),
        ("forge_head@10", None, "checkpoint at seq 10: signature is not valid"),
        ("unknown_signer@10", None, "unknown"),
        # The stored head no longer matches the signed one: the full verify locates the edit.
        ("edit_hash@10", 10, "edited"),
        ("edit_rehashed@6", 5, "do not match the signed checkpoint at seq 10"),
        ("delete_through@9", 9, "missing"),
        ("reorder@10", 10, "prev_hash"),
    ],
)
def test_tampering_with_the_latest_checkpoint_or_its_head(
    chain: Database, log: AuditLog, keys: Any, tamper: str, first_bad: int | None, reason: str
) -> None:
    _tamper(chain, tamper)
    seen: list[VerificationReport] = []
    log.on_verification_failure = seen.append
    report = _incremental(chain, log, keys)
    assert not report.valid, report
    assert report.first_bad_event == first_bad, report
    assert reason in report.reason, report
    assert report == _full(chain, log, keys)
    assert seen == [report, report]  # once from each call


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ("edit_actor@6", 6),
        ("edit_details@2", 2),
        ("edit_hash@3", 3),
        ("delete@7", 7),
        ("insert_before_checkpoint@3", 3),
        ("reorder@2", 2),
    ],
)
def test_tampering_before_the_latest_checkpoint_needs_the_full_verify(
    chain: Database, log: AuditLog, keys: Any, tamper: str, first_bad: int
) -> None:
    # Documented: the events up to the latest checkpoint are not re-read, and these edits
    # leave the checkpointed event's stored hash alone. Only the full verify sees them.
    _tamper(chain, tamper)
    report = _incremental(chain, log, keys)
    assert report.valid and report.events == 6, report
    full = _full(chain, log, keys)
    assert not full.valid and full.first_bad_event == first_bad, full


# --------------------------------------------------------------------------- cost
def _rows_read(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Rows each table returns to ``Session.execute`` from now on."""
    rows: Counter[str] = Counter()
    real = Session.execute

    def counting(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        frozen = real(self, statement, *args, **kwargs).freeze()
        table = str(statement).split("FROM", 1)[1].split()[0]
        rows[table] += len(frozen().all())
        return frozen()

    monkeypatch.setattr(Session, "execute", counting)
    return rows


@pytest.mark.parametrize("before", [5, 40])
def test_rows_read_are_bounded_by_the_events_since_the_checkpoint(
    db: Database, signer: SigningKey, keys: Any, monkeypatch: pytest.MonkeyPatch, before: int
) -> None:
    log = AuditLog(page_size=4)
    for _ in range(3):  # several checkpoints, the latest after ``before`` events
        _append(db, log, before // 3 + 1)
        _checkpoint(db, log, signer)
    with db.session() as session:
        at = log.head(session)[0]
    _append(db, log, 7)
    rows = _rows_read(monkeypatch)
    report = _incremental(db, log, keys)
    assert (report.valid, report.events, report.last_checkpoint_seq) == (True, 7, at)
    # The latest checkpoint, the event at its seq, then the 7 events after it: however
    # long the chain before.
    assert rows == {"qrc_audit_checkpoints": 1, "qrc_audit_events": 1 + 7}
    rows.clear()
    assert _full(db, log, keys).events == at + 7
    assert rows == {"qrc_audit_checkpoints": 3, "qrc_audit_events": at + 7}


# --------------------------------------------------------------------------- service
def test_service_checkpoint_verifies_incrementally(
    service: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor=ACTOR)
    first = service.audit.checkpoint(actor=ACTOR)
    service.crypto.encrypt("k", b"x", actor=ACTOR)

    def full_verify(*args: Any, **kwargs: Any) -> VerificationReport:
        raise AssertionError("the scheduler's checkpoint ran the full verify")

    with monkeypatch.context() as patch:
        patch.setattr(service.audit, "verify", full_verify)
        second = service.audit.checkpoint(actor=ACTOR)
    assert second.seq > first.seq
    # An edit before the latest checkpoint: checkpoints go on, the full verify catches it.
    with service.db.session() as session:
        session.execute(text("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = 1"))
    service.crypto.encrypt("k", b"x", actor=ACTOR)
    assert service.audit.checkpoint(actor=ACTOR).seq > second.seq
    broken = service.audit.verify()
    assert not broken.valid and broken.first_bad_event == 1
    # An edit after it: the checkpoint is refused.
    service.crypto.encrypt("k", b"x", actor=ACTOR)
    with service.db.session() as session:
        head = AuditLog.head(session)[0]
        session.execute(
            text("UPDATE qrc_audit_events SET actor = 'mallory' WHERE seq = :seq"), {"seq": head}
        )
    with pytest.raises(AuditError, match="broken"):
        service.audit.checkpoint(actor=ACTOR)
