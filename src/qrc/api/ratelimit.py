"""Rate limits: a token bucket per key (a client, a source address), answered with 429.

Buckets live in this process's memory. A bucket that has refilled is the same as no bucket,
so idle buckets are dropped (swept at most every ``sweep_seconds``), and at most
``max_keys`` are kept (the least recently used go first): a flood of new keys (source
addresses, guessed tokens) costs bounded memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``rate`` requests per second on average, bursts of up to ``burst``, per key."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        sweep_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst = rate, burst
        self.max_keys, self.sweep_seconds = max_keys, sweep_seconds
        self._clock = clock
        # key -> (tokens, last update), least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._swept = clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def take(self, key: str) -> float:
        """Spend one token; returns 0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            self._maybe_sweep(now)
            tokens = self._tokens(key, now)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0.0 if allowed else (1 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may spend a token (0: now), spending nothing."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            if key not in self._buckets:
                return 0.0
            tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def sweep(self) -> int:
        """Drop every bucket that has refilled; returns how many were dropped."""
        with self._lock:
            return self._sweep(self._clock())

    def _maybe_sweep(self, now: float) -> None:
        if now - self._swept >= self.sweep_seconds:
            self._sweep(now)

    def _sweep(self, now: float) -> int:
        self._swept = now
        full = [key for key in self._buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        return len(full)
