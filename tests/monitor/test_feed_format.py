"""Threat feed v1 parsing (property tests): any input is either a verified feed or one
``FeedRefused``; signing and verifying round-trip; layout and member order do not matter,
content does."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrc.crypto import get_signature
from qrc.monitor.feed_format import FeedRefused, Publisher, sign_feed, verify_document
from tests.monitor.test_feed import NOW, body, stamp

KEY = get_signature("ML-DSA-44").generate()
PUBLISHER = Publisher.of(KEY.public_key())
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def refused_or_verified(raw: bytes) -> None:
    try:
        verify_document(raw, PUBLISHER, NOW)
    except FeedRefused as exc:
        assert exc.reason in ("malformed", "signature", "expired", "not_yet_valid")


@QUICK
@given(st.binary(max_size=300))
def test_any_bytes_are_refused_cleanly(raw: bytes) -> None:
    refused_or_verified(raw)


@QUICK
@given(json_values, json_values)
def test_any_json_is_refused_cleanly(feed: Any, signature: Any) -> None:
    refused_or_verified(json.dumps({"feed": feed, "signature": signature}).encode())
    refused_or_verified(json.dumps(feed).encode())


statuses = st.lists(
    st.tuples(
        st.sampled_from(["ML-KEM-512", "HQC-128", "X25519", "Not-An-Algorithm", "ECDSA-P256"]),
        st.sampled_from(["active", "experimental", "deprecated", "disallowed"]),
        st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30),
    ),
    max_size=5,
    unique_by=lambda t: t[0],
)


@QUICK
@given(st.integers(1, (1 << 53) - 1), statuses, st.integers(1, 399), st.booleans())
def test_sign_verify_round_trip_and_layout_independence(
    sequence: int, entries: list[tuple[str, str, str]], days: int, compact: bool
) -> None:
    feed = body(
        sequence,
        algorithms=[{"id": a, "status": s, "reason": r} for a, s, r in entries],
        expires_at=stamp(NOW + timedelta(days=days) - timedelta(hours=1)),
    )
    document = sign_feed(feed, KEY)
    verified = verify_document(document, PUBLISHER, NOW)
    assert verified.feed.sequence == sequence
    assert [(e.id, e.status, e.reason) for e in verified.feed.algorithms] == entries
    # Another layout and member order of the same values: the signature still holds.
    parsed = json.loads(document)
    reordered = {"signature": parsed["signature"], "feed": dict(reversed(parsed["feed"].items()))}
    text = json.dumps(reordered, separators=(",", ":") if compact else (", ", ": "),
                      ensure_ascii=compact)  # fmt: skip
    assert verify_document(text.encode(), PUBLISHER, NOW).feed == verified.feed
    # Any change of content: refused.
    parsed["feed"]["sequence"] = sequence + 1 if sequence < (1 << 53) - 1 else 1
    try:
        verify_document(json.dumps(parsed).encode(), PUBLISHER, NOW)
    except FeedRefused as exc:
        assert exc.reason == "signature"
    else:
        raise AssertionError("a changed feed verified")


def test_slh_dsa_publishers_and_algorithm_confusion() -> None:
    slh = get_signature("SLH-DSA-SHA2-128f").generate()
    document = sign_feed(body(1), slh)
    assert verify_document(document, Publisher.of(slh.public_key()), NOW).feed.sequence == 1
    # An SLH-DSA feed shown to an ML-DSA publisher (and the other way round): refused.
    for raw, publisher in (
        (document, PUBLISHER),
        (sign_feed(body(1), KEY), Publisher.of(slh.public_key())),
    ):
        try:
            verify_document(raw, publisher, NOW)
        except FeedRefused as exc:
            assert exc.reason == "signature"
        else:
            raise AssertionError("a feed verified under another publisher's key")
