"""API tokens: shown once, stored as hashes, roles, key limits, expiry, revocation, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from qrc.keys.access.tokens import MAX_TOKEN_NAME, Role, hash_token
from qrc.keys.audit.log import AuditWriteError
from qrc.keys.errors import InvalidRequest, KeyNotFound
from qrc.keys.service import KeyService
from qrc.keys.store.models import ApiClient, AuditEvent
from tests.keys.conftest import refuse_audit_writes


def _count(service: KeyService, model: type[ApiClient] | type[AuditEvent]) -> int:
    with service.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_token_round_trip_and_only_hash_stored(service: KeyService) -> None:
    store = service.tokens
    payments = service.keys.create_key(name="payments", purpose="encryption", actor="admin")
    client, token = store.create(
        name="svc-payments", role="crypto_user", keys=["payments"], actor="admin"
    )
    assert client.allowed_keys == (payments.id,)  # the scope binds the ID, not the name
    assert token.startswith("qrc_") and len(token) > 40
    found = store.authenticate(token)
    assert found == client and found.role is Role.CRYPTO_USER
    assert found.may_use(payments.id) and not found.may_use("k_" + "0" * 32)
    with service.db.session() as session:
        row = session.scalars(select(ApiClient)).one()
    assert row.allowed_keys == [payments.id]
    assert row.token_hash == hash_token(token) and token.encode() not in repr(row.__dict__).encode()
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate("Bearer nonsense") is None


def test_creation_and_revocation_are_audited(service: KeyService) -> None:
    client, _ = service.tokens.create(name="ops", role="viewer", actor="admin:alice")
    service.tokens.revoke(client.id, actor="admin:bob")
    events, _ = service.audit.query(event_type="token.create")
    assert [(e.actor, e.details["client_id"]) for e in events] == [("admin:alice", client.id)]
    events, _ = service.audit.query(event_type="token.revoke")
    assert [(e.actor, e.details["client_id"]) for e in events] == [("admin:bob", client.id)]


def test_no_token_without_its_audit_event(service: KeyService) -> None:
    """Fail closed: if the audit event cannot be written, the token does not exist."""
    kept, kept_token = service.tokens.create(name="kept", role="viewer", actor="admin")
    refuse_audit_writes(service.db)
    before = _count(service, ApiClient)
    with pytest.raises(AuditWriteError):
        service.tokens.create(name="ghost", role="admin", actor="admin")
    assert _count(service, ApiClient) == before
    with pytest.raises(AuditWriteError):
        service.tokens.revoke(kept.id, actor="admin")
    assert service.tokens.authenticate(kept_token) is not None  # the revocation did not happen
    assert [c.name for c, revoked in service.tokens.list() if revoked is None] == ["kept"]


def test_revocation_and_expiry(service: KeyService) -> None:
    store = service.tokens
    store.cache_seconds = 60
    client, token = store.create(name="t", role="viewer", actor="admin")
    assert store.authenticate(token) is not None  # now cached
    store.revoke(client.id, actor="admin")
    assert store.authenticate(token) is None  # the cache does not outlive a revocation
    _, short = store.create(
        name="s", role="viewer", expires_in=timedelta(microseconds=1), actor="admin"
    )
    assert store.authenticate(short) is None
    with pytest.raises(KeyNotFound):
        store.revoke("c_missing", actor="admin")


def test_every_accepted_name_leaves_the_token_usable_and_audited(service: KeyService) -> None:
    """The longest name still fits the audit actor of every use of the token."""
    client, token = service.tokens.create(name="n" * MAX_TOKEN_NAME, role="viewer", actor="a")
    assert service.tokens.authenticate(token) == client
    assert len(client.actor) <= 200
    service.audit.record_forbidden(client.actor, "GET", "/x")  # its actor is auditable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "x", "role": "root"}, "unknown role"),
        ({"name": "", "role": "viewer"}, f"1-{MAX_TOKEN_NAME}"),
        ({"name": "n" * (MAX_TOKEN_NAME + 1), "role": "viewer"}, f"1-{MAX_TOKEN_NAME}"),
        ({"name": "bad\nname", "role": "viewer"}, "control"),
        ({"name": "x", "role": "viewer", "keys": ["k"]}, "only crypto_user"),
        ({"name": "x", "role": "admin", "expires_in": timedelta(0)}, "positive"),
    ],
)
def test_bad_requests(service: KeyService, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        service.tokens.create(actor="admin", **kwargs)  # type: ignore[arg-type]
    assert _count(service, ApiClient) == 0


def test_names_and_ids_are_disjoint(service: KeyService) -> None:
    """A key manager cannot create a key whose name is another key's ID."""
    victim = service.keys.create_key(name="victim", purpose="encryption", actor="km")
    with pytest.raises(InvalidRequest, match="look like a key ID"):
        service.keys.create_key(name=victim.id, purpose="encryption", actor="km")
    with pytest.raises(InvalidRequest, match="look like a key ID"):
        service.keys.create_key(name="k_" + "a" * 32, purpose="encryption", actor="km")
    assert service.keys.get_key(victim.id).name == "victim"
    with pytest.raises(InvalidRequest, match="no key"):
        service.tokens.create(name="t", role="crypto_user", keys=["missing"], actor="admin")
