"""API tokens: shown once, stored as hashes, roles, key limits, expiry, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from qrc.keys.clients import ClientStore, Role, hash_token
from qrc.keys.db import Database
from qrc.keys.errors import InvalidRequest, KeyNotFound
from qrc.keys.models import ApiClient


def test_token_round_trip_and_only_hash_stored(db: Database) -> None:
    store = ClientStore(db)
    client, token = store.create(name="svc-payments", role="crypto_user", keys=["payments"])
    assert token.startswith("qrc_") and len(token) > 40
    found = store.authenticate(token)
    assert found == client and found.role is Role.CRYPTO_USER
    assert found.may_use("k_x", "payments") and not found.may_use("k_y", "other")
    with db.session() as session:
        row = session.scalars(select(ApiClient)).one()
    assert row.token_hash == hash_token(token) and token.encode() not in repr(row.__dict__).encode()
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate("Bearer nonsense") is None


def test_revocation_and_expiry(db: Database) -> None:
    store = ClientStore(db, cache_seconds=60)
    client, token = store.create(name="t", role="viewer")
    assert store.authenticate(token) is not None  # now cached
    store.revoke(client.id)
    assert store.authenticate(token) is None  # the cache does not outlive a revocation
    _, short = store.create(name="s", role="viewer", expires_in=timedelta(microseconds=1))
    assert store.authenticate(short) is None
    with pytest.raises(KeyNotFound):
        store.revoke("c_missing")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "x", "role": "root"}, "unknown role"),
        ({"name": "", "role": "viewer"}, "1-200"),
        ({"name": "x", "role": "viewer", "keys": ["k"]}, "only crypto_user"),
        ({"name": "x", "role": "admin", "expires_in": timedelta(0)}, "positive"),
    ],
)
def test_bad_requests(db: Database, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        ClientStore(db).create(**kwargs)  # type: ignore[arg-type]
