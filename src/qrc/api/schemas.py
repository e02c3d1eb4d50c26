"""Request and response bodies. Binary values travel as standard base64.

No response model has a field that could hold private key material: ``DataKeyOut`` carries
a *data* key the caller asked for, never a managed key.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from qrc.keys.access.tokens import MAX_TOKEN_NAME

__all__ = [name for name in dir() if not name.startswith("_")]

MAX_DATA = 1 << 20  # 1 MiB of binary input per field (the body limit applies too)


def _decode_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    if len(value) > (MAX_DATA * 4) // 3 + 4:
        raise ValueError("too long")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid standard base64") from None


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64"}),
]


def _rfc3339(value: Any) -> Any:
    # pydantic would also take a number (Unix time); the documented form is RFC 3339 only.
    if not isinstance(value, datetime) and not (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ].+", value)
    ):
        raise ValueError("give an RFC 3339 time with a time zone, e.g. 2026-11-29T12:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""An RFC 3339 date and time with a time zone (a naive time cannot be compared)."""


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


KeyRef = Annotated[str, Field(min_length=1, max_length=200, description="Key ID or name")]
Context = Annotated[str, Field(max_length=1024, description="Bound to the ciphertext/signature")]
Purpose = Literal["encryption", "signing", "key_wrapping"]
Reason = Literal["key_compromise", "superseded", "cessation_of_operation"]
Role = Literal["admin", "key_manager", "crypto_user", "auditor", "viewer"]


class Strict(BaseModel):
    """Unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class KeyCreate(Strict):
    name: Annotated[
        str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    ]
    purpose: Purpose
    algorithm: Annotated[str | None, Field(max_length=64)] = None
    expires_at: Timestamp | None = None
    rotation_period_days: Annotated[StrictInt | None, Field(ge=1, le=3650)] = None
    labels: Annotated[
        dict[str, Annotated[str, Field(max_length=500)]] | None, Field(max_length=64)
    ] = None
    activate: StrictBool = True


class KeyOut(BaseModel):
    id: str
    name: str
    algorithm: str
    purpose: str
    status: str
    version: int
    public_key: str | None = Field(None, description="SPKI PEM; absent for symmetric keys")
    min_decryption_version: int
    labels: dict[str, str] = {}
    created_at: datetime
    expires_at: datetime | None = None
    rotation_period_seconds: int | None = None
    next_rotation_at: datetime | None = None
    revocation_reason: str | None = None
    revoked_at: datetime | None = None
    destruction_due_at: datetime | None = None
    destroyed_at: datetime | None = None
    system: bool = Field(
        False, description="One of the service's own keys (audit, CA): no generic route uses it"
    )


class KeyVersionOut(BaseModel):
    version: int
    algorithm: str
    state: str = Field(description="primary, active (decrypts and verifies), retired, destroyed")
    created_at: datetime
    destroyed_at: datetime | None = None


class KeyVersionList(BaseModel):
    versions: list[KeyVersionOut] = Field(description="Newest first")


class KeyList(BaseModel):
    keys: list[KeyOut]
    next_cursor: str | None = None


class RevokeIn(Strict):
    reason: Reason


Version = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]


class RotateIn(Strict):
    """Conditional rotation (``expected_version``) and/or a move to another ``algorithm``."""

    expected_version: Version | None = None
    algorithm: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=64,
            description="The new version's algorithm (default: the key's)",
        ),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _given(cls, data: Any) -> Any:
        # A body says something: no empty object, no explicit nulls (omit the field).
        if isinstance(data, dict) and (not data or None in data.values()):
            raise ValueError("give expected_version and/or algorithm; omit the body otherwise")
        return data


class MinDecryptionVersionIn(Strict):
    version: Version = Field(description="Versions below this no longer decrypt or verify")


class EncryptIn(Strict):
    key: KeyRef
    plaintext: Base64Bytes
    context: Context = ""


class CiphertextOut(BaseModel):
    ciphertext: str
    key_id: str
    key_version: int


class DecryptIn(Strict):
    key: KeyRef
    ciphertext: Base64Bytes
    context: Context = ""
    recovery: StrictBool = Field(False, description="Admin only: decrypt with a compromised key")


class PlaintextOut(BaseModel):
    plaintext: str


class SignIn(Strict):
    key: KeyRef
    message: Base64Bytes
    context: Context = ""


class SignatureOut(BaseModel):
    signature: str
    key_id: str
    key_version: int


class VerifyIn(Strict):
    key: KeyRef
    message: Base64Bytes
    signature: Base64Bytes
    context: Context = ""
    key_version: Annotated[
        StrictInt | None,
        Field(
            ge=1,
            le=2**31 - 1,
            description="The version that signed (as /sign answered); without it the 8 "
            "newest versions allowed to verify are tried",
        ),
    ] = None


class VerifyOut(BaseModel):
    valid: bool
    key_version: int | None = None


class RewrapIn(Strict):
    key: KeyRef
    ciphertext: Base64Bytes
    context: Context = ""


class DataKeyIn(Strict):
    key: KeyRef
    context: Context = ""
    include_plaintext: StrictBool = True


class DataKeyOut(BaseModel):
    plaintext_key: str | None = None
    wrapped_key: str
    key_id: str
    key_version: int


BatchSize = Field(min_length=1, max_length=100)


class EncryptBatchIn(Strict):
    items: Annotated[list[EncryptIn], BatchSize]


class DecryptBatchIn(Strict):
    items: Annotated[list[DecryptIn], BatchSize]


class SignBatchIn(Strict):
    items: Annotated[list[SignIn], BatchSize]


class VerifyBatchIn(Strict):
    items: Annotated[list[VerifyIn], BatchSize]


class ProblemOut(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None


class BatchItemOut(BaseModel):
    ok: bool
    result: dict[str, Any] | None = None
    error: ProblemOut | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class TokenCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_NAME)]
    role: Role
    keys: Annotated[list[KeyRef] | None, Field(max_length=1000)] = None
    expires_in: Annotated[
        StrictInt | None, Field(ge=60, le=10 * 365 * 86400, description="seconds")
    ] = None


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    keys: list[str] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; store it now")


class TokenList(BaseModel):
    tokens: list[TokenOut]


class AlgorithmStatus(BaseModel):
    id: str
    type: Literal["key_exchange", "digital_signature", "encryption"]
    family: str
    nist_level: int | None
    status: str
    standard: str
    provider: str
    quantum_safe: bool
    sizes: dict[str, int]
    benchmark: dict[str, Any] | None = None


class AlgorithmList(BaseModel):
    algorithms: list[AlgorithmStatus]


class ProtocolUpdate(Strict):
    default_algorithms: Annotated[
        dict[Purpose, Annotated[str, Field(max_length=64)]], Field(max_length=3)
    ] = {}
    algorithm_status: Annotated[
        dict[
            Annotated[str, Field(max_length=64)],
            Literal["active", "experimental", "deprecated", "disallowed"],
        ],
        Field(max_length=64),
    ] = {}
    tls_mode: Literal["pq-only", "hybrid-preferred"] | None = None
    dry_run: StrictBool = False


class AffectedKeyOut(BaseModel):
    id: str
    name: str
    algorithm: str
    status: str
    action: str


class ProtocolPlan(BaseModel):
    applied: bool
    changes: list[str]
    affected_keys: list[AffectedKeyOut]
    policy: dict[str, Any]
    # Follow-ups: GET .../migration/plan?algorithm=ALG for each algorithm the update
    # deprecates or disallows (qrc.monitor.migration_plan).
    migration_plans: list[str] = []


class AuditEventOut(BaseModel):
    seq: int
    at: datetime
    event_type: str
    actor: str
    result: str
    key_id: str | None = None
    key_version: int | None = None
    algorithm: str | None = None
    details: dict[str, Any] = {}
    hash: str


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None = None


class AuditVerifyOut(BaseModel):
    valid: bool
    events: int
    first_bad_event: int | None = None
    checkpoints_verified: int
    reason: str


class SecurityEventOut(BaseModel):
    id: int
    at: datetime
    event_type: str
    severity: str
    source: str
    key_id: str | None = None
    algorithm: str | None = None
    details: dict[str, Any] = {}
    # The story's names: description, is_quantum_threat_related, action_taken are columns;
    # source_component and qrc_algorithm_involved repeat source and algorithm.
    description: str | None = None
    is_quantum_threat_related: bool = False
    action_taken: str | None = None
    source_component: str | None = None
    qrc_algorithm_involved: str | None = None


class SecurityEventPage(BaseModel):
    events: list[SecurityEventOut]
    next_after: int | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


# --------------------------------------------------------------------------- data index
Sha256Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
IndexIdentifier = Annotated[str, Field(min_length=1, max_length=500)]


class IndexObjectIn(Strict):
    identifier: IndexIdentifier
    key: KeyRef
    key_version: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
    data_type: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$")]
    location: Annotated[str | None, Field(min_length=1, max_length=1000)] = None
    integrity_hash: Sha256Digest | None = None
    data_class: Annotated[str | None, Field(min_length=1, max_length=100)] = None


class IndexRegisterIn(Strict):
    objects: Annotated[list[IndexObjectIn], Field(min_length=1, max_length=1000)]


class IndexRegistered(BaseModel):
    registered: int


class IndexObjectOut(BaseModel):
    identifier: str
    data_type: str | None = None
    location: str | None = None
    key_id: str
    key_version: int
    algorithm: str
    integrity_hash: str | None = None
    data_class: str | None = None
    created_at: datetime
    rewrapped_at: datetime | None = None
    seq: int


class IndexPage(BaseModel):
    objects: list[IndexObjectOut]
    next_after: int | None = None


class RewrappedObjectIn(Strict):
    identifier: IndexIdentifier
    key_version: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]
    integrity_hash: Sha256Digest | None = None


class IndexRewrappedIn(Strict):
    key: KeyRef
    objects: Annotated[list[RewrappedObjectIn], Field(min_length=1, max_length=1000)]


class IndexRewrapped(BaseModel):
    rewrapped: int


class ShredReportOut(BaseModel):
    key_id: str
    key_name: str
    status: str
    shredded: bool
    destroyed_at: datetime | None = None
    objects: list[IndexObjectOut]
    next_after: int | None = None


# --------------------------------------------------------------------------- agent relay
AgentId = Annotated[str, Field(min_length=1, max_length=200, description="Agent ID")]
RelayMessageId = Annotated[str, Field(pattern=r"^m_[0-9a-f]{32}$")]


class RelaySendIn(Strict):
    message: Base64Bytes  # an agent message v1 (docs/formats.md); the relay cannot open it


class RelayQueued(BaseModel):
    id: str
    recipient: str
    size: int
    queued_at: datetime
    expires_at: datetime


class RelayMessageOut(BaseModel):
    id: str
    message: str  # base64
    size: int
    queued_at: datetime
    expires_at: datetime
    seq: int


class RelayPage(BaseModel):
    messages: list[RelayMessageOut]
    next_after: int | None = None


class RelayAckIn(Strict):
    recipient: AgentId
    ids: Annotated[list[RelayMessageId], Field(min_length=1, max_length=1000)]


class RelayAcked(BaseModel):
    acknowledged: int
