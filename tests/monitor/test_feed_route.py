"""``POST`` and ``GET /api/v1/security/qrc/protocols/feed``: who may, what a refusal answers."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from qrc.api.app import API_PREFIX, create_app
from qrc.api.deps import AppState
from qrc.crypto.base import SigningKey
from qrc.crypto.registry import Status
from qrc.keys.service import KeyService
from qrc.monitor.feed import FEED_REFUSED, ThreatFeed, attach_feed
from qrc.monitor.feed_format import Publisher
from tests.monitor.test_feed import (  # noqa: F401 (fixtures)
    _flip_signature,
    custody,
    events,
    feed_service,
    publisher_key,
    sign,
)

URL = API_PREFIX + "/protocols/feed"


def test_submit_and_read_through_the_api(
    feed_service: KeyService,  # noqa: F811 (the fixture)
    publisher_key: SigningKey,  # noqa: F811
    sign: Callable[..., bytes],  # noqa: F811
) -> None:
    http = TestClient(create_app(AppState(feed_service)))

    def bearer(role: str) -> dict[str, str]:
        _, token = feed_service.tokens.create(name=f"t-{role}", role=role, actor="test")
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    admin = bearer("admin")
    # No publisher key configured: the service cannot verify a feed, and says what to set.
    answer = http.post(URL, content=sign(1), headers=admin)
    assert answer.status_code == 409 and "QRC_FEED_PUBLISHER_KEY" in answer.json()["detail"]
    assert http.get(URL, headers=bearer("viewer")).json()["configured"] is False

    attach_feed(feed_service, ThreatFeed(feed_service, Publisher.of(publisher_key.public_key())))
    accepted = http.post(URL, content=sign(2), headers=admin)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["sequence"] == 2
    assert {c["algorithm"] for c in accepted.json()["changes"]} == {"ML-KEM-512", "HQC-128"}
    assert feed_service.policy.status("ML-KEM-512") is Status.DEPRECATED

    for document, status, reason in (
        (sign(2), 409, "replay"),
        (sign(1), 409, "rollback"),
        (_flip_signature(sign(3)), 422, "signature"),
        (b'{"feed": 1.5}', 422, "malformed"),
        (b"[" * 5000, 422, "malformed"),
    ):
        refused = http.post(URL, content=document, headers=admin)
        assert refused.status_code == status, refused.text
        problem = refused.json()
        assert problem["reason"] == reason and "Traceback" not in refused.text
    assert len(events(feed_service, FEED_REFUSED)) == 5
    form = {**admin, "Content-Type": "text/plain"}
    assert http.post(URL, content=sign(3), headers=form).status_code == 415

    for role in ("key_manager", "auditor", "viewer", "crypto_user"):
        assert http.post(URL, content=sign(3), headers=bearer(role)).status_code == 403, role
    assert http.get(URL, headers=bearer("crypto_user")).status_code == 403
    assert http.get(URL).status_code == 401

    landscape = http.get(URL, headers=bearer("auditor")).json()
    assert landscape["configured"] is True and landscape["feed"]["sequence"] == 2
    assert [a["id"] for a in landscape["advisories"]] == ["QRC-T-1"]
    statuses = {s["algorithm"]: s for s in landscape["statuses"]}
    assert statuses["HQC-128"]["in_force"] and statuses["HQC-128"]["policy_status"] == "disallowed"
    assert statuses["RSA-2048"]["known"] is False
    json.dumps(landscape)  # JSON all through
