"""The envelope SDK in library mode: round trips, context binding, tampering, the DEK cache
and its invalidation, what is audited."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from qrc.crypto.errors import DecryptionError
from qrc.data.cache import CacheLimits
from qrc.data.format import from_text, looks_encrypted, parse, to_text
from qrc.data.sdk import DataEncryptor
from qrc.keys.errors import OperationNotPermitted
from qrc.keys.service import KeyService
from qrc.keys.store.models import AuditEvent
from tests.data.conftest import ACTOR, destroy_now


def _events(service: KeyService, event_type: str) -> int:
    with service.db.read_session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type))
        return len(list(rows))


@pytest.mark.parametrize("key", ["sym", "pq"])
def test_round_trip_and_header(sdk: DataEncryptor, service: KeyService, key: str) -> None:
    blob = sdk.encrypt(key, b"alice@example.com", context=b"customers/42/email")
    header = parse(blob)
    assert header.key_id == service.keys.get_key(key).id and header.key_version == 1
    assert b"alice" not in blob
    assert sdk.decrypt(blob, context=b"customers/42/email") == b"alice@example.com"
    assert from_text(to_text(blob)) == blob and looks_encrypted(to_text(blob), header.key_id)


@pytest.mark.parametrize("key", ["sym", "pq"])
def test_moved_tampered_or_swapped_values_fail_opaquely(sdk: DataEncryptor, key: str) -> None:
    one = sdk.encrypt(key, b"one", context=b"row/1")
    fresh = DataEncryptor(sdk.source, cache=CacheLimits(max_entries=0))  # no shared DEK
    other = fresh.encrypt(key, b"two", context=b"row/2")
    with pytest.raises(DecryptionError):
        sdk.decrypt(one, context=b"row/2")  # copied to another row
    # Every byte of the header and the value; every 16th of a (long) wrapped DEK.
    header_end = len(one) - len(parse(one).body) - len(parse(one).wrapped_key)
    for i in [*range(header_end + 64), *range(header_end + 64, len(one) - 64, 16),
              *range(len(one) - 64, len(one))]:  # fmt: skip
        changed = bytearray(one)
        changed[i] ^= 0x01
        with pytest.raises(DecryptionError):
            fresh.decrypt(bytes(changed), context=b"row/1")
    for cut in (0, 5, 20, len(one) - 1):
        with pytest.raises(DecryptionError):
            fresh.decrypt(one[:cut], context=b"row/1")
    # The wrapped DEK of another value spliced in: its own tag cannot pass.
    a, b = parse(one), parse(other)
    swapped = one[: len(one) - len(a.body) - len(a.wrapped_key) - 2]
    swapped += len(b.wrapped_key).to_bytes(2, "big") + b.wrapped_key + a.body
    with pytest.raises(DecryptionError):
        fresh.decrypt(swapped, context=b"row/1")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(DecryptionError):
        parse(data)
    assert not looks_encrypted(b"QRD\x01" + data[:3])


def test_cache_counts_and_limits(service: KeyService) -> None:
    sdk = DataEncryptor.local(service, cache=CacheLimits(max_messages=3))
    before = _events(service, "key.datakey")
    blobs = [sdk.encrypt("sym", b"v%d" % i) for i in range(7)]
    # 7 values, 3 per DEK: 3 hand-outs, each audited; the hits are not.
    assert _events(service, "key.datakey") - before == 3
    assert len({parse(b).wrapped_key for b in blobs}) == 3
    stats = sdk.cache_stats()
    assert stats.misses >= 3 and stats.hits >= 4
    decrypts = _events(service, "key.decrypt")
    assert [sdk.decrypt(b) for b in blobs] == [b"v%d" % i for i in range(7)]
    assert _events(service, "key.decrypt") == decrypts  # read-your-writes from the cache
    cold = DataEncryptor.local(service)
    assert [cold.decrypt(b) for b in blobs] == [b"v%d" % i for i in range(7)]
    assert _events(service, "key.decrypt") - decrypts == 3  # one unwrap per distinct DEK
    cold.close()
    sdk.close()
    assert sdk.cache_stats().size == 0
    with pytest.raises(RuntimeError):
        sdk.encrypt("sym", b"after close")


def test_cache_off_asks_every_time(service: KeyService) -> None:
    sdk = DataEncryptor.local(service, cache=CacheLimits(max_entries=0))
    before = _events(service, "key.datakey")
    for i in range(4):
        sdk.encrypt("sym", b"%d" % i)
    assert _events(service, "key.datakey") - before == 4
    sdk.close()


def test_max_entries_and_max_age(service: KeyService) -> None:
    now = [0.0]
    sdk = DataEncryptor.local(service, cache=CacheLimits(max_entries=2, max_age=10))
    sdk.cache._clock = lambda: now[0]
    blobs = [DataEncryptor(sdk.source, cache=CacheLimits(max_entries=0)).encrypt("sym", b"x")
             for _ in range(3)]  # fmt: skip
    for blob in blobs:
        sdk.decrypt(blob)
    assert len(sdk.cache) == 2 and sdk.cache_stats().evictions == 1
    sdk.encrypt("sym", b"y")
    now[0] = 11.0  # past max_age: the next use misses and asks again
    misses = sdk.cache_stats().misses
    sdk.encrypt("sym", b"z")
    assert sdk.cache_stats().misses == misses + 1
    sdk.close()


@pytest.mark.parametrize("change", ["revoke", "suspend", "destroy", "rotate", "min_version"])
def test_key_changes_drop_cached_keys_at_once(service: KeyService, change: str) -> None:
    sdk = DataEncryptor.local(service)
    blob = sdk.encrypt("sym", b"secret")
    assert len(sdk.cache) == 2  # one DEK, on both sides
    if change == "revoke":
        service.keys.revoke("sym", "key_compromise", actor=ACTOR)
    elif change == "suspend":
        service.keys.suspend("sym", actor=ACTOR)
    elif change == "destroy":
        destroy_now(service, "sym")
    elif change == "rotate":
        service.keys.rotate("sym", actor=ACTOR)
    else:
        service.keys.rotate("sym", actor=ACTOR)
        service.keys.set_min_decryption_version("sym", 2, actor=ACTOR)
    if change == "rotate":  # only the encryption side goes; reading needs no new unwrap
        assert len(sdk.cache) == 1
        misses = sdk.cache_stats().misses
        assert sdk.decrypt(blob) == b"secret"
        assert sdk.cache_stats().misses == misses
        assert parse(sdk.encrypt("sym", b"new")).key_version == 2
    else:
        assert len(sdk.cache) == 0
        with pytest.raises(OperationNotPermitted):
            sdk.decrypt(blob)
    sdk.close()


def test_state_checked_every_interval_without_observer(service: KeyService) -> None:
    """Another process changes the key: the cache finds out at its next check."""
    now = [0.0]
    sdk = DataEncryptor(DataEncryptor.local(service).source, cache=CacheLimits(check_interval=5))
    sdk.cache._clock = lambda: now[0]
    blob = sdk.encrypt("sym", b"secret")
    service.keys.revoke("sym", "key_compromise", actor=ACTOR)  # sdk does not observe
    assert sdk.decrypt(blob) == b"secret"  # within the interval: still cached
    now[0] = 6.0
    with pytest.raises(OperationNotPermitted):
        sdk.decrypt(blob)
    assert len(sdk.cache) == 0
    sdk.close()


def test_destroyed_key_shreds_every_value(service: KeyService, sdk: DataEncryptor) -> None:
    blobs = [sdk.encrypt("pq", b"%d" % i, context=b"c") for i in range(5)]
    destroy_now(service, "pq")
    fresh = DataEncryptor.local(service)
    for blob in blobs:
        with pytest.raises((OperationNotPermitted, DecryptionError)):
            fresh.decrypt(blob, context=b"c")
    fresh.close()


def test_forged_header_naming_an_unknown_key_is_opaque(sdk: DataEncryptor) -> None:
    blob = sdk.encrypt("sym", b"x")
    header = parse(blob)
    forged = blob.replace(header.key_id.encode(), b"k_" + b"0" * 32)
    with pytest.raises(DecryptionError):
        DataEncryptor(sdk.source, cache=CacheLimits(max_entries=0)).decrypt(forged)


@pytest.mark.parametrize("key", ["sym", "pq"])
def test_rewrap_keeps_the_body_and_moves_the_version(
    service: KeyService, sdk: DataEncryptor, key: str
) -> None:
    blob = sdk.encrypt(key, b"payload", context=b"ctx")
    same = sdk.rewrap(blob)
    assert not same.changed and same.data == blob
    service.keys.rotate(key, actor=ACTOR)
    moved = sdk.rewrap(blob)
    assert moved.changed and moved.key_version == 2
    assert parse(moved.data).body == parse(blob).body  # bulk untouched
    service.keys.set_min_decryption_version(key, 2, actor=ACTOR)
    fresh = DataEncryptor.local(service)
    assert fresh.decrypt(moved.data, context=b"ctx") == b"payload"
    with pytest.raises(OperationNotPermitted):
        fresh.decrypt(blob, context=b"ctx")
    fresh.close()
