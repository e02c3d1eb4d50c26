"""``monitor_quantum_threat_landscape`` on the example feed of docs/threat-feed.md (so the
documented feed is a valid one): statuses, advisories, dates ahead, and the day they come."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from qrc.crypto.base import SigningKey
from qrc.crypto.registry import Status
from qrc.keys.service import KeyService
from qrc.monitor.feed import ThreatFeed
from qrc.monitor.feed_format import Publisher, sign_feed
from qrc.monitor.landscape import monitor_quantum_threat_landscape
from tests.monitor.test_feed import NOW, custody, feed_service, publisher_key, stamp  # noqa: F401

DOC = Path(__file__).resolve().parents[2] / "docs" / "threat-feed.md"


def documented_feed() -> dict[str, Any]:
    """The example feed of docs/threat-feed.md, valid from now."""
    block = re.search(r"```json\n(\s*\{\s*\"publisher\".*?)```", DOC.read_text(), re.DOTALL)
    assert block, "docs/threat-feed.md has no example feed"
    feed: dict[str, Any] = json.loads(block.group(1))
    feed["issued_at"] = stamp(NOW - timedelta(minutes=1))
    feed["expires_at"] = stamp(NOW + timedelta(days=90))
    return feed


def test_the_documented_feed_and_its_landscape(
    feed_service: KeyService,  # noqa: F811
    publisher_key: SigningKey,  # noqa: F811
) -> None:
    keys = feed_service.keys
    keys.create_key(name="old", purpose="encryption", algorithm="ML-KEM-512", actor="t")
    clock = [NOW]
    feed = ThreatFeed(
        feed_service, Publisher.of(publisher_key.public_key()), clock=lambda: clock[0]
    )
    outcome = feed.submit(sign_feed(documented_feed(), publisher_key), actor="a", origin="docs")
    assert outcome.accepted and outcome.changes == []  # X25519, Ed25519: deprecated already

    landscape = monitor_quantum_threat_landscape(feed_service, feed, now=NOW)
    json.dumps(landscape.as_dict())
    assert landscape.errors == [] and landscape.configured
    statuses = {s["algorithm"]: s for s in landscape.statuses}
    assert statuses["X25519"]["in_force"] and statuses["X25519"]["policy_status"] == "deprecated"
    (advisory,) = landscape.advisories
    assert advisory["id"] == "EXAMPLE-2026-001" and advisory["affects_keys"] == ["ML-KEM-512"]
    today = NOW.date()
    dates = [item["date"] for item in landscape.upcoming]
    assert dates == sorted(dates) and all(d > today.isoformat() for d in dates)
    by_id = {item["id"]: item for item in landscape.upcoming + landscape.in_force}
    ecc = by_id["ir8547-128-disallowed"]
    assert ecc["days_left"] == (datetime(2036, 1, 1, tzinfo=UTC).date() - today).days
    assert ecc["status"] == "disallowed" and "X25519" in ecc["algorithms"]
    assert by_id["nsm10-2035"]["kind"] == "milestone"

    # 2036: the stored feed has long expired, but its IR 8547 dates hold.
    later = datetime(2036, 1, 2, tzinfo=UTC)
    clock[0] = later
    after = monitor_quantum_threat_landscape(feed_service, feed, now=later)
    changed = {c["algorithm"]: c["to"] for c in after.changes}
    assert changed == dict.fromkeys(
        ["ECDSA-P256", "ECDSA-P384", "Ed25519", "X25519", "P-256", "P-384"], "disallowed"
    )
    assert feed_service.policy.status("X25519") is Status.DISALLOWED
    assert any("expired" in w for w in after.warnings)
    assert {i["id"] for i in after.in_force} >= {"ir8547-128-disallowed", "ir8547-112-disallowed"}
    assert after.upcoming == []
    unknown = {s["algorithm"]: s["known"] for s in after.statuses}
    assert unknown["RSA-2048"] is False and unknown["X25519"] is True


def test_without_a_feed(feed_service: KeyService) -> None:  # noqa: F811
    landscape = monitor_quantum_threat_landscape(feed_service)
    assert not landscape.configured and landscape.feed is None
    assert any("QRC_FEED_PUBLISHER_KEY" in w for w in landscape.warnings)
    assert any("no threat feed has been accepted" in w for w in landscape.warnings)
