"""The Redis wrapper on the real Redis: strings, hashes, pipelines, moved and damaged values,
the key service unreachable."""

from __future__ import annotations

from typing import Any

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.data.cache import CacheLimits
from qrc.data.keysource import KeyServiceUnavailable, RemoteKeySource
from qrc.data.redis import EncryptedRedis
from qrc.data.sdk import DataEncryptor
from qrc.keys.service import KeyService
from qrc.transit.client import PQClient


@pytest.mark.parametrize("key", ["sym", "pq"])
def test_strings_and_hashes_round_trip(redis_client: Any, sdk: DataEncryptor, key: str) -> None:
    p = redis_client.qrc_prefix
    r = EncryptedRedis(redis_client, sdk, key)
    assert r.set(p + "s", b"secret value", ex=60)
    assert r.get(p + "s") == b"secret value" and r.get(p + "missing") is None
    raw = redis_client.get(p + "s")
    assert raw.startswith(b"QRD\x01") and b"secret" not in raw
    assert 0 < redis_client.ttl(p + "s") <= 60
    r.mset({p + "m1": "one", p + "m2": 2})
    assert r.mget([p + "m1", p + "m2", p + "none"]) == [b"one", b"2", None]
    r.hset(p + "h", mapping={"email": "a@x.org", "name": "Alice"})
    r.hset(p + "h", "age", 42)
    assert r.hget(p + "h", "email") == b"a@x.org"
    assert r.hmget(p + "h", ["name", "age", "nope"]) == [b"Alice", b"42", None]
    assert r.hgetall(p + "h") == {b"email": b"a@x.org", b"name": b"Alice", b"age": b"42"}
    assert b"a@x.org" not in redis_client.hget(p + "h", "email")


@pytest.mark.parametrize("transaction", [True, False])
def test_pipelines(redis_client: Any, sdk: DataEncryptor, transaction: bool) -> None:
    p = redis_client.qrc_prefix
    r = EncryptedRedis(redis_client, sdk, "sym")
    with r.pipeline(transaction=transaction) as pipe:
        pipe.set(p + "a", b"1").hset(p + "h", "f", "v").get(p + "a").hget(p + "h", "f")
        pipe.hgetall(p + "h").get(p + "nothing").delete(p + "gone")
        assert pipe.execute() == [True, 1, b"1", b"v", {b"f": b"v"}, None, 0]
    assert r.get(p + "a") == b"1"


@pytest.mark.parametrize("attack", ["other-key", "other-field", "truncated", "corrupt", "plain"])
def test_moved_or_damaged_values_fail_opaquely(
    redis_client: Any, sdk: DataEncryptor, attack: str
) -> None:
    p = redis_client.qrc_prefix
    r = EncryptedRedis(redis_client, sdk, "sym")
    r.set(p + "a", b"alpha")
    r.hset(p + "h", mapping={"f1": "one", "f2": "two"})
    raw = redis_client.get(p + "a")
    if attack == "other-key":
        redis_client.set(p + "b", raw)
        target = lambda: r.get(p + "b")  # noqa: E731
    elif attack == "other-field":
        redis_client.hset(p + "h", "f2", redis_client.hget(p + "h", "f1"))
        target = lambda: r.hget(p + "h", "f2")  # noqa: E731
    elif attack == "truncated":
        redis_client.set(p + "a", raw[:-1])
        target = lambda: r.get(p + "a")  # noqa: E731
    elif attack == "corrupt":
        redis_client.set(p + "a", raw[:-20] + bytes([raw[-20] ^ 1]) + raw[-19:])
        target = lambda: r.get(p + "a")  # noqa: E731
    else:
        redis_client.set(p + "a", b"written around the wrapper")
        target = lambda: r.get(p + "a")  # noqa: E731
    with pytest.raises(DecryptionError):
        target()
    with r.pipeline() as pipe, pytest.raises(DecryptionError):
        pipe.get(p + "a").hget(p + "h", "f2").get(p + "b")
        pipe.execute()


def test_unreachable_service_writes_nothing(redis_client: Any) -> None:
    p = redis_client.qrc_prefix
    sleeps: list[float] = []
    source = RemoteKeySource(
        PQClient("http://127.0.0.1:9", token="qrc_x", timeout=2), retries=2, sleep=sleeps.append
    )
    sdk = DataEncryptor(source, cache=CacheLimits())
    r = EncryptedRedis(redis_client, sdk, "sym")
    with pytest.raises(KeyServiceUnavailable, match=r"data key: the key service at http://127"):
        r.set(p + "a", b"must not be stored")
    with r.pipeline() as pipe, pytest.raises(KeyServiceUnavailable):
        pipe.set(p + "b", b"nor this")
    assert sleeps == [0.1, 0.2, 0.1, 0.2]  # retried with backoff
    assert redis_client.exists(p + "a", p + "b") == 0


def test_registered_values_are_in_the_index(
    redis_client: Any, sdk: DataEncryptor, service: KeyService
) -> None:
    p = redis_client.qrc_prefix
    r = EncryptedRedis(redis_client, sdk, "sym", register=True, identifier_prefix="cache1/")
    r.set(p + "a", b"x")
    r.hset(p + "h", mapping={"f": "y"})
    with r.pipeline() as pipe:
        pipe.set(p + "c", b"z")
        pipe.execute()
    records = service.data.under("sym")
    assert [rec.data_type for rec in records] == [
        "redis-string",
        "redis-hash-field",
        "redis-string",
    ]
    assert records[1].location == f"redis:{p.replace(':', '%3A')}h#f"
    assert records[0].identifier.startswith("cache1/redis:")


def test_decode_responses_is_refused(sdk: DataEncryptor) -> None:
    import redis

    with pytest.raises(ValueError):
        EncryptedRedis(redis.Redis(decode_responses=True), sdk, "sym")
