"""A bounded, thread-safe LRU cache with an optional time to live, and its counters.

Every cache of the key service is one of these, so that memory stays bounded however many
keys and tokens a long-running process touches, and ``/metrics`` can show how each one does
(hits, misses, evictions, size).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "CacheStats"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


@dataclass(frozen=True)
class CacheStats:
    """How a cache is doing."""

    name: str
    size: int
    max_size: int
    hits: int
    misses: int
    evictions: int


class BoundedCache(Generic[_K, _V]):
    """At most ``max_size`` entries (and, with ``weigh``, at most ``max_weight`` in all),
    least recently used dropped first; entries older than ``ttl`` seconds (if given) count
    as missing."""

    def __init__(
        self,
        name: str,
        max_size: int,
        *,
        ttl: float | None = None,
        weigh: Callable[[_V], int] | None = None,
        max_weight: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.name = name
        self.max_size = max_size
        self.ttl = ttl
        self._weigh = weigh
        self._max_weight = max_weight
        self._weight = 0
        self._clock = clock
        self._items: OrderedDict[_K, tuple[float, _V]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: _K) -> _V | None:
        """The value of ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            found = self._items.get(key)
            if found is not None and (self.ttl is None or self._clock() - found[0] < self.ttl):
                self._items.move_to_end(key)
                self._hits += 1
                return found[1]
            if found is not None:  # expired
                self._drop(key)
            self._misses += 1
            return None

    def _drop(self, key: _K) -> None:
        _, value = self._items.pop(key)
        if self._weigh is not None:
            self._weight -= self._weigh(value)

    def put(self, key: _K, value: _V) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used beyond the bound."""
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (self._clock(), value)
            if self._weigh is not None:
                self._weight += self._weigh(value)
            while len(self._items) > self.max_size or (
                self._max_weight is not None
                and self._weight > self._max_weight
                and len(self._items) > 1
            ):
                self._drop(next(iter(self._items)))
                self._evictions += 1

    def discard(self, predicate: Callable[[_K], bool]) -> None:
        """Drop every entry whose key satisfies ``predicate``."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                self._drop(key)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self._weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> CacheStats:
        """The counters so far."""
        with self._lock:
            return CacheStats(
                self.name,
                len(self._items),
                self.max_size,
                self._hits,
                self._misses,
                self._evictions,
            )
