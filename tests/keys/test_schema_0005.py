"""Migration 0005: the story's columns (key strength; the security events' description,
quantum-threat flag and action taken), on SQLite and PostgreSQL, with rows already in the
store; the recording path that fills them; backups made before 0005 still restore."""

from __future__ import annotations

import json
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from qrc.crypto.envelope import seal_symmetric
from qrc.keys.audit.events import EVENT_DEFAULTS, EventType, Severity, query_events
from qrc.keys.backup import format as backup_format
from qrc.keys.backup.format import BackupCorrupted
from qrc.keys.backup.restore import _decode_row
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.keys.store.migrations import alembic_config
from qrc.keys.store.models import Key, SecurityEvent
from tests.keys.test_backup import target  # noqa: F401  (an empty store to restore into)

ACTOR = "test:schema"
T = "2026-01-01 00:00:00"
_NEW_EVENT_COLUMNS = ("description", "is_quantum_threat_related", "action_taken")


def _columns(db: Database, table: str) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns(table)}


def _insert_old_rows(db: Database) -> None:
    """Rows as a store at revision 0004 holds them (no 0005 columns)."""
    keys = [
        ("k_1", "hybrid", "X25519MLKEM768"),
        ("k_2", "classical", "X25519"),
        ("k_3", "sig87", "ML-DSA-87"),
        ("k_4", "gone", "Withdrawn-Algorithm-1"),
        ("k_5", "aead", "AES-256-GCM"),
    ]
    events = [
        ("classical_tls_handshake", "tls", "X25519"),
        ("key_compromise", "ops:alice", "ML-DSA-87"),
        ("some_future_type", "elsewhere", None),
    ]
    with db.engine.begin() as conn:
        for key_id, name, algorithm in keys:
            conn.execute(
                text(
                    "INSERT INTO qrc_keys (id, name, algorithm, purpose, status, "
                    "primary_version, min_decryption_version, labels, created_at, updated_at) "
                    "VALUES (:id, :name, :alg, 'encryption', 'active', 1, 1, '{}', :t, :t)"
                ),
                {"id": key_id, "name": name, "alg": algorithm, "t": T},
            )
        for event_type, source, algorithm in events:
            conn.execute(
                text(
                    "INSERT INTO qrc_security_events (at, event_type, severity, source, "
                    "algorithm, details) VALUES (:t, :type, 'medium', :source, :alg, '{}')"
                ),
                {"t": T, "type": event_type, "source": source, "alg": algorithm},
            )


def test_upgrade_from_0004_fills_existing_rows_and_downgrade_keeps_them(db: Database) -> None:
    config = alembic_config(db.engine)
    command.downgrade(config, "0004")
    assert "key_strength" not in _columns(db, "qrc_keys")
    _insert_old_rows(db)

    db.upgrade()

    with db.engine.connect() as conn:
        strength = dict(conn.execute(text("SELECT name, key_strength FROM qrc_keys")).all())
        rows = conn.execute(
            text(
                "SELECT event_type, source, description, is_quantum_threat_related, "
                "action_taken FROM qrc_security_events ORDER BY id"
            )
        ).all()
    # Categories from the registry; 0 for classical; an unknown ID stays NULL.
    assert strength == {"hybrid": 3, "classical": 0, "sig87": 5, "gone": None, "aead": 5}
    classical, compromise, future = rows
    defaults = EVENT_DEFAULTS[EventType.CLASSICAL_TLS_HANDSHAKE]
    assert classical[1:] == ("tls", defaults.description, True, defaults.action_taken)
    compromise_defaults = EVENT_DEFAULTS[EventType.KEY_COMPROMISE]
    assert compromise[2:] == (
        compromise_defaults.description,
        False,
        compromise_defaults.action_taken,
    )
    # A type the migration does not know: not quantum related, nothing invented.
    assert future[2:] == (None, False, None)

    # The ORM reads them, under the story's names too.
    with db.session() as session:
        event = session.scalars(
            select(SecurityEvent).where(SecurityEvent.is_quantum_threat_related.is_(True))
        ).one()
        assert event.source_component == "tls" and event.qrc_algorithm_involved == "X25519"

    command.downgrade(config, "0004")
    assert "key_strength" not in _columns(db, "qrc_keys")
    assert not set(_NEW_EVENT_COLUMNS) & _columns(db, "qrc_security_events")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM qrc_keys")).scalar() == 5
        assert conn.execute(text("SELECT COUNT(*) FROM qrc_security_events")).scalar() == 3
    db.upgrade()
    assert set(_NEW_EVENT_COLUMNS) <= _columns(db, "qrc_security_events")


def _strength(service: KeyService, name: str) -> int | None:
    with service.db.read_session() as session:
        return session.scalars(select(Key.key_strength).where(Key.name == name)).one()


def test_key_strength_follows_the_algorithm_on_create_and_rotate(service: KeyService) -> None:
    service.keys.create_key(
        name="move-me", purpose="encryption", algorithm="ML-KEM-768", actor=ACTOR
    )
    service.keys.create_key(name="signer", purpose="signing", algorithm="ML-DSA-44", actor=ACTOR)
    assert _strength(service, "move-me") == 3
    assert _strength(service, "signer") == 2
    service.keys.rotate("move-me", actor=ACTOR, algorithm="ML-KEM-1024")
    assert _strength(service, "move-me") == 5
    service.keys.rotate("move-me", actor=ACTOR)  # same algorithm: unchanged
    assert _strength(service, "move-me") == 5


class _Heard:
    def __init__(self) -> None:
        self.notices: list[SecurityNotice] = []

    def key_used(self, use: KeyUse) -> None:
        pass

    def security_event(self, notice: SecurityNotice) -> None:
        self.notices.append(notice)


def test_security_events_carry_the_story_fields_to_store_and_observers(
    service: KeyService,
) -> None:
    heard = _Heard()
    service.observers.add(heard)
    key = service.keys.create_key(name="victim", purpose="signing", actor=ACTOR)

    # A classical handshake: quantum related by its type; the group is the algorithm.
    service.audit.record_tls_event(
        EventType.CLASSICAL_TLS_HANDSHAKE, "X25519 (ecdsa_secp256r1_sha256, ECDSA-P256)"
    )
    # An existing caller that gives none of the new arguments still works.
    service.audit.record_auth_failure("10.0.0.9", "bad token", "/api/v1/security/qrc/keys")
    # A recorder that says more than the type's defaults.
    with service.db.session() as session:
        found = service.ctx.find(session, "victim")
        returned = service.ctx.security_event(
            session,
            EventType.KEY_COMPROMISE,
            Severity.CRITICAL,
            "qrc.monitor.feed",
            key=found,
            description="ML-DSA-44 reported broken by the feed",
            is_quantum_threat_related=True,
            action_taken="key rotated to ML-DSA-87",
        )
    assert returned.key_id == key.id and returned.algorithm == key.algorithm

    classical, auth, compromise = heard.notices
    assert classical.is_quantum_threat_related and classical.qrc_algorithm_involved == "X25519"
    assert classical.source_component == "tls"
    assert classical.description == EVENT_DEFAULTS[EventType.CLASSICAL_TLS_HANDSHAKE].description
    assert not auth.is_quantum_threat_related
    assert auth.action_taken == "request refused (401)"
    assert compromise == returned
    assert compromise.description == "ML-DSA-44 reported broken by the feed"
    assert compromise.action_taken == "key rotated to ML-DSA-87"

    with service.db.read_session() as session:
        quantum = query_events(session, quantum_threat_related=True)
        other = query_events(session, quantum_threat_related=False)
    assert [e.event_type for e in quantum] == ["classical_tls_handshake", "key_compromise"]
    assert [e.event_type for e in other] == ["authentication_failure"]
    stored = quantum[1]
    assert (stored.description, stored.action_taken, stored.algorithm) == (
        compromise.description,
        compromise.action_taken,
        key.algorithm,
    )


# --------------------------------------------------------------------------- old backups
def _as_before_0005(data: bytes, shares: Any) -> bytes:
    """The same backup as a release before 0005 wrote it: without the 0005 members."""
    header, body, backup_key = backup_format._open(data, shares)
    for row in body["tables"]["qrc_keys"]:
        del row["key_strength"]
    for row in body["tables"]["qrc_security_events"]:
        for column in _NEW_EVENT_COLUMNS:
            del row[column]
    header_bytes = data[: backup_format.HEADER_SIZE]
    envelope = seal_symmetric(
        backup_format._derive(backup_key, backup_format._ENVELOPE_LABEL, header.backup_id),
        backup_format._canonical_json(body),
        algorithm=backup_format.ENVELOPE_ALGORITHM,
        context=backup_format.CONTEXT + header_bytes,
        key_id=header.backup_id,
        key_version=1,
    )
    return header_bytes + envelope


def test_a_backup_from_before_0005_restores_with_the_columns_filled(
    service: KeyService,
    target: KeyService,  # noqa: F811
) -> None:
    service.keys.create_key(name="data", purpose="encryption", algorithm="ML-KEM-1024", actor=ACTOR)
    sealed = service.crypto.encrypt("data", b"kept", actor=ACTOR, context=b"c").ciphertext
    service.audit.record_tls_event(EventType.CLASSICAL_TLS_HANDSHAKE, "X25519")
    service.audit.record_auth_failure("10.0.0.9", "bad token", "/x")
    result = service.backups.create(threshold=2, shares=3, actor=ACTOR)
    old = _as_before_0005(result.data, result.shares[:2])
    _header, body, _key = backup_format._open(old, result.shares[:2])
    assert "key_strength" not in json.dumps(body["tables"]["qrc_keys"])  # really an old one

    target.backups.restore(old, result.shares[1:], actor=ACTOR)

    assert _strength(target, "data") == 5
    with target.db.read_session() as session:
        events = {e.event_type: e for e in query_events(session)}
    classical = events["classical_tls_handshake"]
    assert classical.is_quantum_threat_related is True
    assert classical.description == EVENT_DEFAULTS[EventType.CLASSICAL_TLS_HANDSHAKE].description
    assert events["authentication_failure"].is_quantum_threat_related is False
    assert events["authentication_failure"].action_taken == "request refused (401)"
    assert target.crypto.decrypt("data", sealed, actor=ACTOR, context=b"c") == b"kept"


def test_a_restored_event_flag_must_be_a_boolean() -> None:
    row = {
        "id": 1,
        "at": "2026-11-01T10:00:00.000000Z",
        "event_type": "classical_tls_handshake",
        "severity": "medium",
        "source": "tls",
        "key_id": None,
        "algorithm": None,
        "details": {},
        "description": "x",
        "is_quantum_threat_related": True,
        "action_taken": None,
    }
    decoded = _decode_row("qrc_security_events", SecurityEvent, dict(row))
    assert decoded["is_quantum_threat_related"] is True and decoded["description"] == "x"
    for bad in ("true", 1, None):
        with pytest.raises(BackupCorrupted):
            _decode_row(
                "qrc_security_events", SecurityEvent, {**row, "is_quantum_threat_related": bad}
            )
