"""The threat feed: what is accepted and applied, and every way an attacker might try to get
a feed past the service (forged, re-signed, tampered, rolled back, replayed, stale, malformed)
while the policy stays exactly as it was. On SQLite and PostgreSQL, across restarts."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from qrc.crypto import get_signature
from qrc.crypto.base import SigningKey
from qrc.crypto.registry import Status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.policy import AlgorithmPolicy, PolicyUpdate
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.keys.store.models import AuditEvent, Policy, SecurityEvent
from qrc.monitor.feed import (
    ALGORITHM_STATUS_CHANGED,
    FEED_ACCEPTED,
    FEED_REFUSED,
    ThreatFeed,
    read_stored_feed,
)
from qrc.monitor.feed_format import (
    CONTEXT,
    SIGNED_TAG,
    FeedRefused,
    Publisher,
    canonical,
    publisher_key_id,
    sign_feed,
)
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def body(sequence: int, **extra: Any) -> dict[str, Any]:
    """An unsigned feed valid now: ML-KEM-512 deprecated, HQC-128 disallowed, one advisory."""
    feed: dict[str, Any] = {
        "publisher": "Test Security Team",
        "sequence": sequence,
        "issued_at": stamp(NOW - timedelta(hours=1)),
        "expires_at": stamp(NOW + timedelta(days=30)),
        "algorithms": [
            {"id": "ML-KEM-512", "status": "deprecated", "reason": "category 1 only"},
            {"id": "HQC-128", "status": "disallowed", "reason": "test advisory QRC-T-1"},
            {"id": "RSA-2048", "status": "deprecated", "reason": "not in this registry"},
        ],
        "advisories": [
            {
                "id": "QRC-T-1",
                "title": "Test advisory",
                "severity": "high",
                "algorithms": ["HQC-128"],
                "published": (NOW - timedelta(days=2)).date().isoformat(),
                "link": "https://example.org/advisories/QRC-T-1",
            }
        ],
    }
    feed.update(extra)
    return feed


def raw_sign(feed: dict[str, Any], key: SigningKey, algorithm: str | None = None) -> bytes:
    """Sign ``feed`` exactly as given (no checks): how an attacker with a key would."""
    signature = key.sign(SIGNED_TAG + canonical(feed), CONTEXT)
    document = {
        "feed": feed,
        "signature": {
            "algorithm": algorithm or key.algorithm,
            "value": base64.b64encode(signature).decode(),
        },
    }
    return json.dumps(document).encode()


@pytest.fixture(scope="session")
def publisher_key() -> SigningKey:
    return get_signature("ML-DSA-65").generate()


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return get_signature("ML-DSA-65").generate()


@pytest.fixture
def sign(publisher_key: SigningKey) -> Callable[..., bytes]:
    def signed(sequence: int, **extra: Any) -> bytes:
        return sign_feed(body(sequence, **extra), publisher_key)

    return signed


def open_service(url: str, custody: LocalCustody) -> KeyService:
    """A key service whose policy writes statuses to a table of its own (not the registry)."""
    db = Database(url)
    db.upgrade()
    statuses: dict[str, Status] = {}
    policy = AlgorithmPolicy(apply=statuses.__setitem__)
    return KeyService(db, Keyring(custody), policy=policy)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'qrc.db'}"
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def custody(tmp_path: Path) -> LocalCustody:
    return LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)


@pytest.fixture
def feed_service(tmp_path: Path, custody: LocalCustody) -> Iterator[KeyService]:
    service = open_service(f"sqlite:///{tmp_path / 'feed.db'}", custody)
    yield service
    service.close()


def policy_rows(service: KeyService) -> dict[str, Any]:
    with service.db.read_session() as session:
        return {r.name: (r.value, r.updated_at) for r in session.scalars(select(Policy))}


def events(service: KeyService, event_type: str) -> list[SecurityEvent]:
    with service.db.read_session() as session:
        query = select(SecurityEvent).where(SecurityEvent.event_type == event_type)
        return list(session.scalars(query.order_by(SecurityEvent.id)))


def test_accepted_feed_changes_policy_through_update_policy(
    feed_service: KeyService, publisher_key: SigningKey, sign: Callable[..., bytes]
) -> None:
    feed = ThreatFeed(feed_service, Publisher.of(publisher_key.public_key()))
    outcome = feed.submit(sign(3), actor="admin:test", origin="test")
    assert outcome.accepted and outcome.sequence == 3
    assert {(c.algorithm, c.before, c.after) for c in outcome.changes} == {
        ("ML-KEM-512", "active", "deprecated"),
        ("HQC-128", "experimental", "disallowed"),
    }
    policy = feed_service.current_policy()["algorithm_status"]
    assert policy == {"ML-KEM-512": "deprecated", "HQC-128": "disallowed"}
    assert feed_service.policy.status("HQC-128") is Status.DISALLOWED
    # The change went the way POST /protocols/update goes: a policy.update audit event.
    with feed_service.db.read_session() as session:
        updates = list(
            session.scalars(select(AuditEvent).where(AuditEvent.event_type == "policy.update"))
        )
    assert len(updates) == 1 and "threat feed 3" in updates[0].actor
    changed = events(feed_service, ALGORITHM_STATUS_CHANGED)
    assert {(e.algorithm, e.details["to"], e.severity) for e in changed} == {
        ("ML-KEM-512", "deprecated", "medium"),
        ("HQC-128", "disallowed", "high"),
    }
    (accepted,) = events(feed_service, FEED_ACCEPTED)
    assert accepted.details["sequence"] == 3
    # New keys under a deprecated algorithm are now refused by the key service itself.
    with pytest.raises(Exception, match="deprecated"):
        feed_service.keys.create_key(
            name="k", purpose="encryption", algorithm="ML-KEM-512", actor="t"
        )


def _flip_signature(document: bytes) -> bytes:
    data = json.loads(document)
    raw = bytearray(base64.b64decode(data["signature"]["value"]))
    raw[100] ^= 0x01
    data["signature"]["value"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(data).encode()


def _tamper(document: bytes) -> bytes:
    """Loosen the signed statuses after signing: ML-KEM-512 back to active."""
    data = json.loads(document)
    data["feed"]["algorithms"][0]["status"] = "active"
    return json.dumps(data).encode()


def _add_member(document: bytes, where: str, name: str, value: object) -> bytes:
    data = json.loads(document)
    target = data if where == "top" else data[where]
    target[name] = value
    return json.dumps(data).encode()


# name -> (how the attacker builds the document from (sign, publisher key, other key), reason)
Attack = Callable[[Callable[..., bytes], SigningKey, SigningKey], bytes]
ATTACKS: dict[str, tuple[Attack, str]] = {
    "flipped signature bit": (lambda s, p, o: _flip_signature(s(9)), "signature"),
    "signed by another key": (lambda s, p, o: sign_feed(body(9), o), "signature"),
    "another key claiming ours": (
        lambda s, p, o: raw_sign(
            {**json.loads(s(9))["feed"], "publisher_key_id": publisher_key_id(p.public_key())}, o
        ),
        "signature",
    ),
    "tampered after signing": (lambda s, p, o: _tamper(s(9)), "signature"),
    "algorithm relabelled": (
        lambda s, p, o: raw_sign(json.loads(s(9))["feed"], p, "ML-DSA-87"),
        "signature",
    ),
    "signature not base64": (
        lambda s, p, o: json.dumps(
            {
                "feed": json.loads(s(9))["feed"],
                "signature": {"algorithm": "ML-DSA-65", "value": "%%%"},
            }
        ).encode(),
        "signature",
    ),
    "rollback": (lambda s, p, o: s(4), "rollback"),
    "replay of the accepted feed": (lambda s, p, o: s(5), "replay"),
    "same sequence, other content": (lambda s, p, o: s(5, publisher="Someone else"), "replay"),
    "expired": (
        lambda s, p, o: s(
            9,
            issued_at=stamp(NOW - timedelta(days=40)),
            expires_at=stamp(NOW - timedelta(seconds=1)),
        ),
        "expired",
    ),
    "issued in the future": (
        lambda s, p, o: s(9, issued_at=stamp(NOW + timedelta(hours=1))),
        "not_yet_valid",
    ),
    "not JSON": (lambda s, p, o: b"\x00not json", "malformed"),
    "not UTF-8": (lambda s, p, o: b'{"feed": "\xff"}', "malformed"),
    "duplicate member": (
        lambda s, p, o: s(9).replace(b'"sequence": 9,', b'"sequence": 9, "sequence": 99,'),
        "malformed",
    ),
    "a float": (lambda s, p, o: raw_sign({**body(9), "sequence": 9.0}, p), "malformed"),
    "extra top-level member": (lambda s, p, o: _add_member(s(9), "top", "note", "x"), "malformed"),
    "extra signature member": (
        lambda s, p, o: _add_member(s(9), "signature", "key_id", "x"),
        "malformed",
    ),
    "no signature": (lambda s, p, o: json.dumps({"feed": body(9)}).encode(), "malformed"),
    "too large": (lambda s, p, o: b'{"feed":"' + b"a" * (1 << 20) + b'"}', "malformed"),
    "too deep": (lambda s, p, o: b"[" * 50 + b"]" * 50, "malformed"),
    # Signed by the publisher's key, but not following the format: still refused.
    "signed, unknown member": (
        lambda s, p, o: raw_sign({**json.loads(s(9))["feed"], "extra": 1}, p),
        "malformed",
    ),
    "signed, plain-http link": (
        lambda s, p, o: raw_sign(
            {
                **json.loads(s(9))["feed"],
                "advisories": [{**body(9)["advisories"][0], "link": "http://example.org/x"}],
            },
            p,
        ),
        "malformed",
    ),
    "signed, control character": (
        lambda s, p, o: raw_sign({**json.loads(s(9))["feed"], "publisher": "a\u2028b"}, p),
        "malformed",
    ),
    "signed, unknown status": (
        lambda s, p, o: raw_sign(
            {**json.loads(s(9))["feed"], "algorithms": [{"id": "ML-KEM-512", "status": "ok"}]}, p
        ),
        "malformed",
    ),
    "signed, version true": (
        lambda s, p, o: raw_sign({**json.loads(s(9))["feed"], "version": True}, p),
        "malformed",
    ),
    "signed, version 2": (
        lambda s, p, o: raw_sign({**json.loads(s(9))["feed"], "version": 2}, p),
        "malformed",
    ),
    "signed, other publisher id": (
        lambda s, p, o: raw_sign({**json.loads(s(9))["feed"], "publisher_key_id": "0" * 64}, p),
        "malformed",
    ),
    "signed, valid for years": (
        lambda s, p, o: raw_sign(
            {**json.loads(s(9))["feed"], "expires_at": stamp(NOW + timedelta(days=800))}, p
        ),
        "malformed",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_refused_feeds_change_nothing_and_are_recorded(
    feed_service: KeyService,
    publisher_key: SigningKey,
    other_key: SigningKey,
    sign: Callable[..., bytes],
    attack: str,
) -> None:
    feed = ThreatFeed(feed_service, Publisher.of(publisher_key.public_key()))
    feed.submit(
        sign(5, algorithms=[{"id": "ML-KEM-512", "status": "deprecated"}]),
        actor="admin:test",
        origin="test",
    )
    before = policy_rows(feed_service)
    build, reason = ATTACKS[attack]
    document = build(sign, publisher_key, other_key)
    # Every attack but the replays would loosen or tighten something if accepted.
    with pytest.raises(FeedRefused) as refused:
        feed.submit(document, actor="admin:attacker", origin="api")
    assert refused.value.reason == reason, refused.value
    assert policy_rows(feed_service) == before  # the policy and the stored feed: untouched
    assert feed_service.policy.status("HQC-128") is Status.EXPERIMENTAL
    assert feed_service.policy.status("ML-KEM-512") is Status.DEPRECATED
    (event,) = events(feed_service, FEED_REFUSED)
    assert event.details["reason"] == reason and event.source == "threat-feed:admin:attacker"
    assert event.severity in ("medium", "high")
    assert event.is_quantum_threat_related and f"refused ({reason})" in (event.description or "")
    with feed_service.db.read_session() as session:
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "threat_feed." + FEED_REFUSED)
        ).one()
    assert audited.result == "denied"


def test_the_genuine_next_feed_is_still_accepted_after_attacks(
    feed_service: KeyService, publisher_key: SigningKey, sign: Callable[..., bytes]
) -> None:
    """Refusals do not wedge the feed: the publisher's next sequence goes through."""
    feed = ThreatFeed(feed_service, Publisher.of(publisher_key.public_key()))
    feed.submit(sign(5), actor="a", origin="t")
    with pytest.raises(FeedRefused):
        feed.submit(_flip_signature(sign(6)), actor="a", origin="t")
    assert feed.submit(sign(6), actor="a", origin="t").accepted


def test_rollback_is_refused_after_a_restart(
    store_url: str, custody: LocalCustody, publisher_key: SigningKey, sign: Callable[..., bytes]
) -> None:
    publisher = Publisher.of(publisher_key.public_key())
    first = open_service(store_url, custody)
    try:
        ThreatFeed(first, publisher).submit(sign(7), actor="a", origin="t")
    finally:
        first.close()
    # A new process (a new service on the same store) remembers sequence 7.
    second = open_service(store_url, custody)
    try:
        feed = ThreatFeed(second, publisher)
        before = policy_rows(second)
        for sequence, reason in ((6, "rollback"), (7, "replay"), (1, "rollback")):
            with pytest.raises(FeedRefused) as refused:
                feed.submit(sign(sequence), actor="a", origin="t")
            assert refused.value.reason == reason
        assert policy_rows(second) == before
        # The stored policy takes effect in the new process too.
        with second.db.read_session() as session:
            second.policy.refresh(session, force=True)
        assert second.policy.status("ML-KEM-512") is Status.DEPRECATED
        assert feed.submit(sign(8), actor="a", origin="t").accepted
        assert len(events(second, FEED_REFUSED)) == 3
    finally:
        second.close()


def test_a_feed_only_tightens_and_applies_each_status_once(
    feed_service: KeyService, publisher_key: SigningKey, sign: Callable[..., bytes]
) -> None:
    feed = ThreatFeed(feed_service, Publisher.of(publisher_key.public_key()))
    # X25519 is deprecated here: a feed calling it active does not loosen it.
    loosen = [{"id": "X25519", "status": "active"}, {"id": "ML-KEM-512", "status": "deprecated"}]
    outcome = feed.submit(sign(1, algorithms=loosen), actor="a", origin="t")
    assert [c.algorithm for c in outcome.changes] == ["ML-KEM-512"]
    assert feed_service.policy.status("X25519") is Status.DEPRECATED
    # The operator overrules the feed; the next pass leaves that decision alone...
    feed_service.update_policy(
        PolicyUpdate(algorithm_status={"ML-KEM-512": "active"}), actor="admin:ops"
    )
    assert feed.apply() == []
    assert feed_service.policy.status("ML-KEM-512") is Status.ACTIVE
    # ... until the publisher says it again in a new feed.
    again = feed.submit(sign(2, algorithms=loosen), actor="a", origin="t")
    assert [(c.algorithm, c.after) for c in again.changes] == [("ML-KEM-512", "deprecated")]


def test_transitions_apply_when_their_date_comes(
    feed_service: KeyService, publisher_key: SigningKey
) -> None:
    clock = [datetime(2030, 6, 1, tzinfo=UTC)]
    feed = ThreatFeed(
        feed_service, Publisher.of(publisher_key.public_key()), clock=lambda: clock[0]
    )
    transitions = [
        {
            "id": "ir8547-ecdsa-128",
            "title": "ECDSA (128-bit and above) disallowed after 2035",
            "algorithms": ["ECDSA-P256", "ECDSA-P384"],
            "status": "disallowed",
            "effective": "2036-01-01",
            "source": "NIST IR 8547 ipd, Table 2",
        },
    ]
    document = sign_feed(
        {
            "publisher": "t",
            "sequence": 1,
            "issued_at": "2030-05-31T00:00:00Z",
            "expires_at": "2031-05-31T00:00:00Z",
            "transitions": transitions,
        },
        publisher_key,
    )
    assert feed.submit(document, actor="a", origin="t").changes == []
    assert feed_service.policy.status("ECDSA-P256") is Status.DEPRECATED
    clock[0] = datetime(2035, 12, 31, 23, 59, tzinfo=UTC)
    assert feed.apply() == []
    clock[0] = datetime(2036, 1, 1, tzinfo=UTC)  # the stored feed expired; its dates hold
    changed = feed.apply()
    assert {(c.algorithm, c.after) for c in changed} == {
        ("ECDSA-P256", "disallowed"),
        ("ECDSA-P384", "disallowed"),
    }
    assert feed_service.policy.status("ECDSA-P384") is Status.DISALLOWED
    assert feed.apply() == []  # applied once
    assert len(events(feed_service, ALGORITHM_STATUS_CHANGED)) == 2


def test_an_interrupted_application_is_finished_by_the_next_pass(
    feed_service: KeyService, publisher_key: SigningKey, sign: Callable[..., bytes]
) -> None:
    """A crash after the sequence was claimed, before the policy changed: the next pass (a
    new process) applies it; the sequence stays claimed, so a replay is still refused."""
    publisher = Publisher.of(publisher_key.public_key())
    from qrc.monitor.feed_format import verify_document

    crashed = ThreatFeed(feed_service, publisher)
    crashed._claim(verify_document(sign(2), publisher, NOW), "a", "t")
    assert feed_service.policy.status("ML-KEM-512") is Status.ACTIVE
    restarted = ThreatFeed(feed_service, publisher)
    assert {c.algorithm for c in restarted.apply()} == {"ML-KEM-512", "HQC-128"}
    with pytest.raises(FeedRefused, match="replay"):
        restarted.submit(sign(2), actor="a", origin="t")


def _race(feeds: list[ThreatFeed], documents: list[bytes]) -> list[object]:
    """Submit one document on each node at the same moment; each one's sequence or reason."""
    start = threading.Barrier(len(feeds))
    results: list[object] = [None] * len(feeds)

    def submit(i: int) -> None:
        start.wait()
        try:
            results[i] = feeds[i].submit(documents[i], actor=f"node{i}", origin="t").sequence
        except FeedRefused as exc:
            results[i] = exc.reason

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(feeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_nodes_cannot_both_accept_one_sequence(
    store_url: str, custody: LocalCustody, publisher_key: SigningKey, sign: Callable[..., bytes]
) -> None:
    """Two services on one store (two nodes) take the same feed at the same moment, before
    any feed exists (no row to lock yet): exactly one accepts it, the other refuses a replay."""
    publisher = Publisher.of(publisher_key.public_key())
    nodes = [open_service(store_url, custody) for _ in range(2)]
    try:
        feeds = [ThreatFeed(node, publisher) for node in nodes]
        same = _race(feeds, [sign(1)] * 2)
        assert sorted(map(str, same)) == ["1", "replay"], same
        # 3 first refuses 2 as a rollback; 2 first lets 3 through as well.
        ordered = _race(feeds, [sign(3), sign(2)])
        assert set(ordered) in ({3, "rollback"}, {2, 3}), ordered
        with nodes[0].db.read_session() as session:
            stored = read_stored_feed(session)
        assert stored is not None and stored.feed.sequence == 3
        assert len(events(nodes[0], ALGORITHM_STATUS_CHANGED)) == 2  # applied once, not twice
    finally:
        for node in nodes:
            node.close()
