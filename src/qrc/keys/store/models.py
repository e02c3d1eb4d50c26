"""The tables of the key store (SQLAlchemy 2 declarative models).

The story's tables (``qrc_keys``, ``qrc_encrypted_data_index``, ``qrc_security_events``)
plus what they lacked: key versions, the audit chain and its checkpoints, API clients,
policies and root-KEK records. No column ever holds unwrapped private key
material: ``qrc_key_versions.wrapped_private`` is a wrapped-key blob (``docs/formats.md``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, synonym, validates

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import get_info
from qrc.keys.store.db import Base, UTCDateTime, utcnow

__all__ = [
    "ApiClient",
    "AuditCheckpoint",
    "AuditEvent",
    "EncryptedDataIndex",
    "KekRecord",
    "Key",
    "KeyVersion",
    "Policy",
    "SecurityEvent",
    "key_strength",
]


def key_strength(algorithm: str) -> int | None:
    """The NIST security category (1-5) of ``algorithm`` from the registry.

    0 for a classical algorithm (no post-quantum category: Shor's algorithm breaks it), None
    for an ID the registry does not know.
    """
    try:
        return get_info(algorithm).nist_level or 0
    except UnsupportedAlgorithm:
        return None


class Key(Base):
    """A managed key: identity, purpose, lifecycle state; its material is in versions."""

    __tablename__ = "qrc_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    algorithm: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    primary_version: Mapped[int] = mapped_column(Integer, default=1)
    min_decryption_version: Mapped[int] = mapped_column(Integer, default=1)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotation_period_seconds: Mapped[int | None] = mapped_column(BigInteger)
    next_rotation_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(40))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    destruction_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    status_before_destruction: Mapped[str | None] = mapped_column(String(20))
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The story's key_strength: the NIST category of the primary version's algorithm, kept
    # in step with ``algorithm`` on create and rotate (see key_strength()).
    key_strength: Mapped[int | None] = mapped_column(Integer)

    versions: Mapped[list[KeyVersion]] = relationship(
        back_populates="key", order_by="KeyVersion.version", cascade="all, delete-orphan"
    )

    @validates("algorithm")
    def _algorithm_sets_strength(self, _name: str, algorithm: str) -> str:
        self.key_strength = key_strength(algorithm)
        return algorithm


class KeyVersion(Base):
    """One version of a key's material: the public key and the wrapped private key."""

    __tablename__ = "qrc_key_versions"
    __table_args__ = (UniqueConstraint("key_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("qrc_keys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapped_private: Mapped[bytes | None] = mapped_column(LargeBinary)
    kek_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    key: Mapped[Key] = relationship(back_populates="versions")


class EncryptedDataIndex(Base):
    """Where data encrypted under a key lives, so rotation, rewrap and shredding can find it.

    ``data_ref`` is the object's identifier (unique; ``identifier`` and the story's
    ``data_identifier`` are the same column);
    ``location`` is where a rewrap target finds it (``sql:TABLE/COLUMN/PK``,
    ``redis:KEY[#FIELD]``, see ``docs/data-at-rest.md``); ``integrity_hash`` is
    ``sha256:<hex>`` of the stored ciphertext as last registered or rewrapped. Columns added
    after the first release are nullable so that older rows and backups stay valid.
    """

    __tablename__ = "qrc_encrypted_data_index"
    __table_args__ = (Index("ix_qrc_encrypted_data_index_key", "key_id", "key_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("qrc_keys.id", ondelete="CASCADE"))
    key_version: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(String(64))
    data_ref: Mapped[str] = mapped_column(String(500), unique=True)
    data_class: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data_type: Mapped[str | None] = mapped_column(String(40))
    location: Mapped[str | None] = mapped_column(String(1000))
    integrity_hash: Mapped[str | None] = mapped_column(String(80))
    rewrapped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    identifier = synonym("data_ref")
    data_identifier = synonym("data_ref")


class SecurityEvent(Base):
    """A security-relevant event: authentication failure, decryption burst, HSM offline...

    The story's ``source_component`` and ``qrc_algorithm_involved`` are ``source`` and
    ``algorithm`` (synonyms below, one column each); ``description``,
    ``is_quantum_threat_related`` and ``action_taken`` came with migration 0005.
    """

    __tablename__ = "qrc_security_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event_type: Mapped[str] = mapped_column(String(60), index=True)
    severity: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    algorithm: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    is_quantum_threat_related: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    action_taken: Mapped[str | None] = mapped_column(Text)

    source_component = synonym("source")
    qrc_algorithm_involved = synonym("algorithm")


class AuditEvent(Base):
    """One link of the audit hash chain (``docs/formats.md``, "Audit event")."""

    __tablename__ = "qrc_audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    event_type: Mapped[str] = mapped_column(String(60), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    key_version: Mapped[int | None] = mapped_column(Integer)
    algorithm: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # HMAC of the hash under the service's audit MAC key: proof that the service wrote it
    # (None before that key existed). Not part of the hashed event.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)


class AuditCheckpoint(Base):
    """A signature over the chain head at ``seq``, by the service's audit key."""

    __tablename__ = "qrc_audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    algorithm: Mapped[str] = mapped_column(String(64))
    signer_key_id: Mapped[str] = mapped_column(String(40))
    signer_key_version: Mapped[int] = mapped_column(Integer)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class ApiClient(Base):
    """An API token holder: role, allowed keys; the token itself is stored only as a hash."""

    __tablename__ = "qrc_api_clients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    allowed_keys: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Policy(Base):
    """A named policy value (default algorithms per purpose, algorithm status overrides...)."""

    __tablename__ = "qrc_policies"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="system")


class KekRecord(Base):
    """A root key encryption key known to the store (never the key itself)."""

    __tablename__ = "qrc_keks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    custody: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_qrc_keks_status", "status"),)


# The relay's table lives in its own module; importing it here puts every table of the
# store in Base.metadata, which the migrations are checked against.
from qrc.keys.store.relay_messages import RelayMessage  # noqa: E402

__all__ += ["RelayMessage"]
