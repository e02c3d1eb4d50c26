"""Bounded caches: memory stays bounded however many keys and tokens a process touches."""

from __future__ import annotations

from qrc.keys.cache import BoundedCache
from qrc.keys.service import KeyService


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_goes_first_and_is_counted() -> None:
    cache: BoundedCache[int, str] = BoundedCache("t", 3)
    for i in range(3):
        cache.put(i, str(i))
    assert cache.get(0) == "0"  # 0 is now the most recently used
    cache.put(3, "3")
    assert cache.get(1) is None and [cache.get(i) for i in (0, 2, 3)] == ["0", "2", "3"]
    for i in range(10_000):
        cache.put(100 + i, "x")
    stats = cache.stats()
    assert len(cache) == stats.size == 3 and stats.max_size == 3
    assert stats.evictions == 1 + 10_000 and stats.hits == 4 and stats.misses == 1


def test_entries_expire() -> None:
    clock = Clock()
    cache: BoundedCache[str, int] = BoundedCache("t", 10, ttl=5.0, clock=clock)
    cache.put("a", 1)
    clock.now = 4.9
    assert cache.get("a") == 1
    clock.now = 5.0
    assert cache.get("a") is None and len(cache) == 0


def test_a_weight_budget_bounds_large_values() -> None:
    cache: BoundedCache[int, bytes] = BoundedCache("t", 1000, weigh=len, max_weight=10_000)
    for i in range(100):
        cache.put(i, bytes(1_000))
    assert len(cache) == 10 and cache.stats().evictions == 90
    cache.put(-1, bytes(50_000))  # larger than the budget: kept alone, the rest goes
    assert len(cache) == 1 and cache.get(-1) is not None
    cache.put(-1, b"small")  # replacing an entry re-weighs it
    cache.put(-2, bytes(9_000))
    assert len(cache) == 2


def test_the_service_reports_every_cache(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    for _ in range(3):
        service.crypto.encrypt("k", b"x", actor="t")
    stats = {s.name: s for s in service.cache_stats()}
    assert set(stats) == {"private_keys", "public_keys", "key_snapshots", "tokens"}
    assert stats["public_keys"].hits >= 2 and stats["public_keys"].size >= 1
    assert all(s.size <= s.max_size for s in stats.values())
