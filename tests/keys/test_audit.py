"""The audit chain: append, checkpoints, tamper detection, fail closed, query, export.

Every test about the store runs on SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from qrc.crypto.base import SigningKey
from qrc.crypto.keyfile import public_key_to_pem
from qrc.crypto.schemes import get_signature
from qrc.keys.audit import log as audit_module
from qrc.keys.audit.log import (
    CHECKPOINT_CONTEXT,
    GENESIS_HASH,
    AuditError,
    AuditLog,
    AuditWriteError,
    InvalidAuditEvent,
    InvalidAuditQuery,
    VerificationReport,
    canonical_event,
    checkpoint_message,
    event_hash,
    format_time,
    validate_details,
    verify_export,
)
from qrc.keys.store.db import Base, Database
from qrc.keys.store.models import AuditCheckpoint, AuditEvent, Policy
from tests.keys.pg import fresh_database

SIGNER_ID = "audit-service-key"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def signer() -> SigningKey:
    return get_signature("ML-DSA-65").generate()


@pytest.fixture(scope="module")
def keys(signer: SigningKey) -> dict[tuple[str, int], Any]:
    return {(SIGNER_ID, 1): signer.public_key()}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    else:
        database = Database(request.getfixturevalue("pg_url"))
        Base.metadata.drop_all(database.engine)
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def log() -> AuditLog:
    # A small page size, so verification and export cross page boundaries in every test.
    return AuditLog(page_size=3)


def _append(db: Database, log: AuditLog, count: int, **fields: Any) -> None:
    for i in range(count):
        with db.session() as session:
            log.append(
                session,
                event_type=fields.get("event_type", "key.encrypt"),
                actor=fields.get("actor", "client:alice"),
                result=fields.get("result", "success"),
                key_id=fields.get("key_id", "k1"),
                key_version=fields.get("key_version", 1),
                algorithm=fields.get("algorithm", "ML-KEM-768"),
                details={"request_id": f"r{i}", "bytes_in": 100 + i},
            )


def _checkpoint(db: Database, log: AuditLog, signer: SigningKey) -> AuditCheckpoint:
    with db.session() as session:
        return log.checkpoint(session, signer, SIGNER_ID, 1)


@pytest.fixture
def chain(db: Database, log: AuditLog, signer: SigningKey) -> Database:
    """Events 1..10, checkpoints at 4 and 10."""
    _append(db, log, 4)
    _checkpoint(db, log, signer)
    _append(db, log, 6, actor="client:bob", event_type="key.decrypt")
    _checkpoint(db, log, signer)
    return db


def _verify(db: Database, log: AuditLog, keys: Any) -> VerificationReport:
    with db.session() as session:
        return log.verify(session, keys)


def _execute(db: Database, *statements: Any) -> None:
    with db.session() as session:
        for statement in statements:
            session.execute(statement)


def _rehash_from(db: Database, first: int) -> None:
    """What an attacker with write access does: recompute every hash from ``first`` on."""
    with db.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        prev = GENESIS_HASH
        for row in rows:
            if row.seq >= first:
                row.prev_hash = prev
                row.hash = event_hash(
                    prev,
                    canonical_event(
                        seq=row.seq,
                        at=row.at,
                        event_type=row.event_type,
                        actor=row.actor,
                        result=row.result,
                        key_id=row.key_id,
                        key_version=row.key_version,
                        algorithm=row.algorithm,
                        details=row.details,
                    ),
                )
                session.flush()
            prev = row.hash


def _shift(db: Database, first: int, by: int) -> None:
    """Renumber events ``first``.. by ``by`` (through a detour: seq is the primary key)."""
    events = AuditEvent.__table__
    _execute(
        db,
        update(events).where(events.c.seq >= first).values(seq=events.c.seq + 100_000),
        update(events).where(events.c.seq >= 100_000).values(seq=events.c.seq - 100_000 + by),
    )


# --------------------------------------------------------------------------- encoding
EXAMPLE = {
    "seq": 1,
    "at": datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
    "event_type": "key.encrypt",
    "actor": "client:alice",
    "result": "success",
    "key_id": "k_0123",
    "key_version": 2,
    "algorithm": "ML-KEM-768",
    "details": {"request_id": "r-42", "bytes_in": 1024, "recovery": False, "tags": ["a", "b"]},
}
EXAMPLE_CANONICAL = (
    b'{"actor":"client:alice","algorithm":"ML-KEM-768","at":"2025-01-31T12:00:00.123456Z",'
    b'"details":{"bytes_in":1024,"recovery":false,"request_id":"r-42","tags":["a","b"]},'
    b'"event_type":"key.encrypt","key_id":"k_0123","key_version":2,"result":"success",'
    b'"seq":1,"v":1}'
)


def test_canonical_example_matches_docs() -> None:
    canonical = canonical_event(**EXAMPLE)  # type: ignore[arg-type]
    assert canonical == EXAMPLE_CANONICAL
    expected = hashlib.sha256(b"qrc-audit-event-v1\x00" + bytes(32) + canonical).hexdigest()
    assert event_hash(GENESIS_HASH, canonical).hex() == expected
    docs = Path(__file__).resolve().parents[2] / "docs"
    text_ = "".join(p.read_text() for p in docs.glob("formats*.md"))
    assert EXAMPLE_CANONICAL.decode() in text_
    assert expected in text_


def test_times_are_rfc3339_utc_microseconds() -> None:
    plus_two = datetime(2025, 1, 1, 2, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert plus_two.hour == 4
    assert format_time(plus_two) == "2025-01-01T02:00:00.000000Z"
    assert format_time(datetime(7, 1, 2, tzinfo=UTC)) == "0007-01-02T00:00:00.000000Z"
    with pytest.raises(InvalidAuditEvent):
        format_time(datetime(2025, 1, 1))


def test_checkpoint_message_layout() -> None:
    at = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
    message = checkpoint_message(
        seq=7,
        head_hash=b"\x11" * 32,
        at=at,
        algorithm="ML-DSA-65",
        signer_key_id="svc",
        signer_key_version=3,
    )
    assert message == (
        b"qrc-audit-checkpoint-v1\x00"
        + (7).to_bytes(8, "big")
        + b"\x11" * 32
        + b"\x1b2025-01-31T12:00:00.000000Z"
        + b"\x09ML-DSA-65"
        + b"\x03svc"
        + (3).to_bytes(4, "big")
    )


@pytest.mark.parametrize(
    "details",
    [
        {"blob": b"\x00\x01"},
        {"blob": bytearray(b"x")},
        {"blob": memoryview(b"x")},
        {"list": ["ok", b"raw"]},
        {"ratio": 0.5},
        {"nested": {"a": 1}},
        {"set": {1, 2}},
        {"big": 2**53},
        {"text": "x" * 513},
        {"text": "line\nbreak"},
        {"text": "nul\x00"},
        {"Upper": 1},
        {"with-dash": 1},
        {"": 1},
        {"client_secret_id": "s"},
        {"password_hint": "p"},
        {"private_key": "k"},
        {"plaintext_len": 1},
        {f"k{i}": i for i in range(33)},
        {"many": list(range(33))},
        {f"k{i}": "x" * 200 for i in range(30)},  # over 4096 bytes in all
    ],
)
def test_details_allowlist_rejects(details: dict[str, Any]) -> None:
    with pytest.raises(InvalidAuditEvent):
        validate_details(details)


def test_details_allowlist_accepts_and_normalises() -> None:
    assert validate_details(None) == {}
    assert validate_details({"ids": ("a", "b"), "n": -(2**53 - 1), "ok": True, "none": None}) == {
        "ids": ["a", "b"],
        "n": -(2**53 - 1),
        "ok": True,
        "none": None,
    }
    assert validate_details({"empty": "", "unicode": "clé ✓"}) == {"empty": "", "unicode": "clé ✓"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "Key.Encrypt"),
        ("event_type", ""),
        ("actor", ""),
        ("actor", "a" * 201),
        ("actor", "tab\there"),
        ("result", "OK"),
        ("key_id", "k 1"),
        ("key_version", -1),
        ("key_version", True),
        ("algorithm", "ML KEM"),
        ("seq", 0),
    ],
)
def test_event_fields_validated(field: str, value: Any) -> None:
    with pytest.raises(InvalidAuditEvent):
        canonical_event(**{**EXAMPLE, field: value})  # type: ignore[arg-type]


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53 - 1), 2**53 - 1),
    st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc")), max_size=20),
)


@settings(max_examples=60, deadline=None)
@given(
    details=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
            lambda k: not any(w in k for w in ("secret", "private", "password"))
        ),
        st.one_of(_scalars, st.lists(_scalars, max_size=4)),
        max_size=6,
    ),
    actor=st.text(st.characters(min_codepoint=0xA0, blacklist_categories=("Cs",)), min_size=1),
)
def test_canonical_is_sorted_compact_json(details: dict[str, Any], actor: str) -> None:
    canonical = canonical_event(**{**EXAMPLE, "details": details, "actor": actor[:200]})  # type: ignore[arg-type]
    decoded = json.loads(canonical.decode("utf-8"))
    assert decoded["details"] == details
    # Re-encoding what a JSON reader decoded gives the same bytes (RFC 8785 style).
    again = json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert again.encode("utf-8") == canonical


# --------------------------------------------------------------------------- append/verify
def test_append_links_and_verifies(
    db: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    with db.session() as session:
        assert log.head(session) == (0, GENESIS_HASH)
        assert log.verify(session, keys).valid
    _append(db, log, 7)
    with db.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert [r.seq for r in rows] == list(range(1, 8))
        assert rows[0].prev_hash == GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
        assert rows[3].details == {"request_id": "r3", "bytes_in": 103}
        assert rows[3].at.tzinfo is not None
    report = _verify(db, log, keys)
    assert report == VerificationReport(True, 7, None, report.reason, 0, None)
    assert "1..7 are not yet covered" in report.reason
    cp = _checkpoint(db, log, signer)
    assert (cp.seq, cp.algorithm, cp.signer_key_version) == (7, "ML-DSA-65", 1)
    signer.public_key().verify(
        cp.signature,
        checkpoint_message(
            seq=7,
            head_hash=cp.head_hash,
            at=cp.at,
            algorithm="ML-DSA-65",
            signer_key_id=SIGNER_ID,
            signer_key_version=1,
        ),
        CHECKPOINT_CONTEXT,
    )
    report = _verify(db, log, keys)
    assert (report.valid, report.events, report.checkpoints_verified) == (True, 7, 1)
    assert report.last_checkpoint_seq == 7
    # A lookup function works like the mapping; without keys only hashes are compared.
    assert _verify(db, log, lambda kid, v: keys.get((kid, v))).checkpoints_verified == 1
    unsigned = _verify(db, log, None)
    assert unsigned.valid and unsigned.checkpoints_verified == 0
    assert "not checked" in unsigned.reason


def test_checkpoint_of_empty_log_and_refused_signers(
    db: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    cp = _checkpoint(db, log, signer)
    assert (cp.seq, cp.head_hash) == (0, GENESIS_HASH)
    assert _verify(db, log, keys).checkpoints_verified == 1
    with db.session() as session, pytest.raises(AuditError, match="post-quantum"):
        log.checkpoint(session, get_signature("Ed25519").generate(), SIGNER_ID, 1)


# --------------------------------------------------------------------------- tampering
@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason"),
    [
        ("edit_actor", 6, "edited"),
        ("edit_details", 6, "edited"),
        ("edit_time", 6, "edited"),
        ("edit_prev_hash", 6, "prev_hash"),
        ("delete_first", 1, "missing"),
        ("delete_middle", 6, "missing"),
        ("delete_tail", 9, "missing"),
        ("insert_unlinked", 6, "prev_hash"),
        ("insert_linked", 7, "prev_hash"),
        ("insert_linked_rehashed", 5, "do not match the signed checkpoint"),
        ("edit_rehashed", 5, "do not match the signed checkpoint"),
        ("delete_renumbered_rehashed", 5, "do not match the signed checkpoint"),
        ("reorder", 2, "prev_hash"),
        ("reorder_rehashed", 1, "do not match the signed checkpoint"),
        ("malformed_details", 6, "malformed"),
        ("forge_checkpoint_head", None, "signature is not valid"),
        ("resign_by_unknown_key", None, "unknown"),
        ("drop_checkpoint_and_truncate", 9, "missing"),
    ],
)
def test_tampering_is_detected(
    chain: Database,
    log: AuditLog,
    signer: SigningKey,
    keys: Any,
    tamper: str,
    first_bad: int | None,
    reason: str,
) -> None:
    db = chain
    events = AuditEvent.__table__
    checkpoints = AuditCheckpoint.__table__
    at6 = events.c.seq == 6
    if tamper == "edit_actor":
        _execute(db, text("UPDATE qrc_audit_events SET actor = 'client:mallory' WHERE seq = 6"))
    elif tamper == "edit_details":
        _execute(db, update(events).where(at6).values(details={"request_id": "other"}))
    elif tamper == "edit_time":
        with db.session() as session:
            row = session.get(AuditEvent, 6)
            assert row is not None
            row.at = row.at + timedelta(microseconds=1)
    elif tamper == "edit_prev_hash":
        _execute(db, update(events).where(at6).values(prev_hash=b"\x00" * 32))
    elif tamper == "delete_first":
        _execute(db, delete(events).where(events.c.seq == 1))
    elif tamper == "delete_middle":
        _execute(db, delete(events).where(at6))
    elif tamper == "delete_tail":
        _execute(db, delete(events).where(events.c.seq >= 9))
    elif tamper in ("insert_unlinked", "insert_linked", "insert_linked_rehashed"):
        _shift(db, 6, 1)
        with db.session() as session:
            prev = session.get(AuditEvent, 5)
            assert prev is not None
            forged = {
                "seq": 6,
                "at": prev.at,
                "event_type": "key.export",
                "actor": "client:mallory",
                "result": "success",
                "key_id": "k1",
                "key_version": 1,
                "algorithm": "ML-KEM-768",
                "details": {},
            }
            link = b"\x42" * 32 if tamper == "insert_unlinked" else prev.hash
            session.add(
                AuditEvent(
                    **forged, prev_hash=link, hash=event_hash(link, canonical_event(**forged))
                )
            )
        if tamper == "insert_linked_rehashed":
            _rehash_from(db, 7)
    elif tamper == "edit_rehashed":
        _execute(db, update(events).where(at6).values(result="failure"))
        _rehash_from(db, 6)
    elif tamper == "delete_renumbered_rehashed":
        _execute(db, delete(events).where(at6))
        _shift(db, 7, -1)
        _rehash_from(db, 6)
        # ... and appends a well-linked event 10, so that the count matches again.
        with db.session() as session:
            log.append(session, event_type="key.encrypt", actor="client:alice", result="success")
    elif tamper in ("reorder", "reorder_rehashed"):
        _execute(
            db,
            update(events).where(events.c.seq == 3).values(seq=-3),
            update(events).where(events.c.seq == 2).values(seq=3),
            update(events).where(events.c.seq == -3).values(seq=2),
        )
        if tamper == "reorder_rehashed":
            _rehash_from(db, 1)
    elif tamper == "malformed_details":
        _execute(db, update(events).where(at6).values(details={"ratio": 0.5}))
    elif tamper == "forge_checkpoint_head":
        _execute(
            db, update(checkpoints).where(checkpoints.c.seq == 10).values(head_hash=b"\x01" * 32)
        )
    elif tamper == "resign_by_unknown_key":
        _execute(db, update(checkpoints).values(signer_key_id="other"))
    elif tamper == "drop_checkpoint_and_truncate":
        # Deleting the tail and the checkpoint that covers it leaves the earlier checkpoint,
        # which still verifies: the truncation shows only against a kept (exported) one.
        with db.session() as session:
            cp = session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq == 10)).one()
            kept = {c.key: getattr(cp, c.key) for c in checkpoints.c if c.key != "id"}
        _execute(db, delete(events).where(events.c.seq >= 9))
        _execute(db, delete(checkpoints).where(checkpoints.c.seq == 10))
        report = _verify(db, log, keys)
        assert report.valid and report.events == 8 and report.last_checkpoint_seq == 4
        with db.session() as session:
            # The auditor's copy of the checkpoint at seq 10, kept outside the store.
            session.add(AuditCheckpoint(**kept))
    seen: list[VerificationReport] = []
    log.on_verification_failure = seen.append
    report = _verify(db, log, keys)
    assert not report.valid, report
    assert report.first_bad_event == first_bad, report
    assert reason in report.reason, report
    assert seen == [report]


def test_forged_tail_after_last_checkpoint_is_unanchored(
    chain: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    # Well-linked events after the last checkpoint cannot be told from real ones until the
    # next checkpoint; the report says how many are not yet covered.
    _append(chain, log, 2)
    report = _verify(chain, log, keys)
    assert report.valid and report.events == 12
    assert "events 11..12 are not yet covered" in report.reason
    _checkpoint(chain, log, signer)
    assert "not yet covered" not in _verify(chain, log, keys).reason


# --------------------------------------------------------------------------- fail closed
def test_rejected_event_rolls_back_the_operation(db: Database, log: AuditLog) -> None:
    with pytest.raises(InvalidAuditEvent, match="bytes"), db.session() as session:
        session.add(Policy(name="dummy", value=1))
        log.append(
            session, event_type="key.create", actor="a", result="success", details={"k": b"s"}
        )
    with db.session() as session:
        assert session.get(Policy, "dummy") is None
        assert log.head(session) == (0, GENESIS_HASH)


def test_failed_operation_after_append_rolls_back_both(db: Database, log: AuditLog) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(Policy(name="dummy", value=1))
        log.append(session, event_type="key.create", actor="a", result="success")
        raise RuntimeError("the operation failed after its audit event")
    with db.session() as session:
        assert session.get(Policy, "dummy") is None
        assert log.head(session)[0] == 0
    with db.session() as session:
        session.add(Policy(name="dummy", value=1))
        log.append(session, event_type="key.create", actor="a", result="success")
    with db.session() as session:
        assert session.get(Policy, "dummy") is not None
        assert log.head(session)[0] == 1


def test_database_error_in_append_rolls_back_the_operation(db: Database, log: AuditLog) -> None:
    _append(db, log, 1)
    AuditEvent.__table__.drop(db.engine)
    try:
        with pytest.raises(AuditWriteError), db.session() as session:
            session.add(Policy(name="dummy", value=1))
            log.append(session, event_type="key.create", actor="a", result="success")
        with db.session() as session:
            assert session.get(Policy, "dummy") is None
    finally:
        AuditEvent.__table__.create(db.engine)


# --------------------------------------------------------------------------- query
class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def test_query_filters_and_pagination(
    db: Database, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "utcnow", _Clock())
    _append(db, log, 5)  # seq 1..5 at 00:01..00:05
    _append(db, log, 4, actor="client:bob", key_id="k2", event_type="key.sign")  # 6..9
    _append(db, log, 2, result="denied")  # 10..11

    def seqs(**filters: Any) -> list[int]:
        with db.session() as session:
            events, cursor = log.query(session, **filters)
            assert cursor is None
            return [e.seq for e in events]

    assert seqs() == list(range(1, 12))
    assert seqs(actor="client:bob") == [6, 7, 8, 9]
    assert seqs(key_id="k2", event_type="key.sign") == [6, 7, 8, 9]
    assert seqs(event_type="key.sign", actor="client:alice") == []
    assert seqs(result="denied") == [10, 11]
    minute = lambda m: datetime(2025, 3, 1, 0, m, tzinfo=UTC)  # noqa: E731
    assert seqs(since=minute(3), until=minute(6)) == [3, 4, 5]
    assert seqs(since=minute(10)) == [10, 11]
    assert seqs(descending=True, limit=100)[:3] == [11, 10, 9]

    for descending in (False, True):
        pages: list[list[int]] = []
        cursor = None
        while True:
            with db.session() as session:
                events, cursor = log.query(
                    session, limit=4, cursor=cursor, descending=descending, result="success"
                )
            pages.append([e.seq for e in events])
            if cursor is None:
                break
            assert isinstance(cursor, str) and "9" not in cursor.split(":")
        expected = [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
        if descending:
            expected = [[9, 8, 7, 6], [5, 4, 3, 2], [1]]
        assert pages == expected

    with db.session() as session:
        for bad in ({"cursor": "nope"}, {"cursor": "cXJjLWF1ZGl0Oi0x"}, {"limit": 0}):
            with pytest.raises(InvalidAuditQuery):
                log.query(session, **bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidAuditQuery):
            log.query(session, limit=1001)
        with pytest.raises(InvalidAuditQuery):
            log.query(session, since=datetime(2025, 1, 1))


# --------------------------------------------------------------------------- export
def _export(db: Database, log: AuditLog) -> list[str]:
    buffer = io.StringIO()
    with db.session() as session:
        count = log.export(session, buffer)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == count
    return lines


def test_export_verifies_offline(
    chain: Database, log: AuditLog, signer: SigningKey, keys: Any
) -> None:
    lines = _export(chain, log)
    assert json.loads(lines[0]) == {"format": "qrc-audit-export", "version": 1}
    kinds = [json.loads(line).get("type") for line in lines[1:]]
    assert kinds == ["event"] * 4 + ["checkpoint"] + ["event"] * 6 + ["checkpoint"]
    pem = public_key_to_pem(signer.public_key())
    for key in (pem, pem.decode(), signer.public_key(), keys):
        report = verify_export(lines, key)
        assert (report.valid, report.events, report.checkpoints_verified) == (True, 10, 2)
    assert verify_export((line.encode() for line in lines), pem).valid

    def edited(index: int, **changes: Any) -> list[str]:
        record = json.loads(lines[index])
        record.update(changes)
        return [*lines[:index], json.dumps(record), *lines[index + 1 :]]

    other = public_key_to_pem(get_signature("ML-DSA-65").generate().public_key())
    cases: list[tuple[list[str], int | None, str]] = [
        (edited(7, actor="client:mallory"), 6, "edited"),
        ([*lines[:7], *lines[8:]], 6, "missing"),
        ([*lines[:10], *lines[11:]], 9, "missing"),
        (lines[:-3], None, None),  # cut with its checkpoint: valid, but 5..8 unanchored
        (edited(7, details={"ratio": 0.5}), 6, "malformed"),
        (edited(7, extra=1), None, "malformed export"),
        (edited(12, signature="AAAA"), None, "signature"),
        ([*lines[:3], "{not json", *lines[3:]], None, "malformed export"),
        (lines[1:], None, "header"),
        (['{"format":"qrc-audit-export","version":true}', *lines[1:]], None, "header"),
        ([*lines[:6], lines[6][:-1] + ',"seq":5}', *lines[7:]], None, "duplicate"),
        ([], None, "empty"),
    ]
    for case, first_bad, reason in cases:
        report = verify_export(case, pem)
        if reason is None:
            assert report.valid and report.events == 8
            assert "events 5..8 are not yet covered" in report.reason
            continue
        assert not report.valid, (case, report)
        assert report.first_bad_event == first_bad, report
        assert reason in report.reason, report
    wrong = verify_export(lines, other)
    assert not wrong.valid and "signature" in wrong.reason


# --------------------------------------------------------------------------- concurrency
def _append_worker(url: str, start: Any, count: int, actor: str) -> None:
    database = Database(url)
    log = AuditLog()
    start.wait(30)
    for i in range(count):
        with database.session() as session:
            log.append(
                session,
                event_type="test.concurrent",
                actor=actor,
                result="success",
                details={"i": i},
            )
    database.dispose()


def test_concurrent_appenders_do_not_fork_the_chain(db: Database, keys: Any) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_append_worker, args=(db.url, start, 50, f"worker:{n}"))
        for n in range(2)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    log = AuditLog()
    with db.session() as session:
        report = log.verify(session, keys)
        actors = session.scalars(select(AuditEvent.actor)).all()
    assert (report.valid, report.events) == (True, 100), report
    assert sorted(actors) == ["worker:0"] * 50 + ["worker:1"] * 50


def test_verify_is_paged(db: Database, monkeypatch: pytest.MonkeyPatch, keys: Any) -> None:
    log = AuditLog(page_size=4)
    _append(db, log, 9)
    calls: list[str] = []
    real = Session.execute

    def counting(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(statement).split("FROM", 1)[1].split()[0])
        return real(self, statement, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", counting)
    assert _verify(db, log, keys).events == 9
    # 9 events in pages of 4: 3 pages; one (empty) checkpoint page.
    assert calls.count("qrc_audit_events") == 3
    assert calls.count("qrc_audit_checkpoints") == 1
