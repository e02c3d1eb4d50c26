"""A bounded cache of unwrapped data keys, like the AWS Encryption SDK's caching materials
manager.

Encryption reuses one DEK per managed key until it reaches its maximum age, messages or
bytes; decryption remembers the DEK of a wrapped key it has unwrapped. Every entry is
dropped when it expires, when the cache is over ``max_entries`` (least recently used first),
when the key is revoked, suspended, rotated, scheduled for destruction or destroyed (told at
once by the service in library mode, see :meth:`DataKeyCache.key_used`; found by a state
check at most every ``check_interval`` seconds per key in any mode), and on :meth:`clear`.

Python cannot wipe ``bytes``: "dropped" means no reference is kept here
(``docs/security-model.md``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qrc.data.format import header_bytes
from qrc.keys.cache import CacheStats
from qrc.keys.observers import KeyUse, SecurityNotice

__all__ = ["CacheLimits", "CachedKey", "DataKeyCache"]

_FOREVER: Final = float("inf")

# Operations after which a key's cached DEKs may no longer be used as they are.
_INVALIDATING: Final = frozenset(
    {
        "revoke",
        "suspend",
        "rotate",
        "expire",
        "schedule_destruction",
        "destroy",
        "min_decryption_version",
    }
)


@dataclass(frozen=True)
class CacheLimits:
    """Bounds of the cache (``max_entries=0`` turns it off)."""

    max_age: float = 300.0
    """Seconds a DEK stays usable after it was made or unwrapped."""
    max_messages: int = 1 << 20
    """Values one DEK may encrypt (far below AES-GCM's 2^32 with random nonces)."""
    max_bytes: int = 1 << 32
    """Plaintext bytes one DEK may encrypt."""
    max_entries: int = 1000
    """DEKs kept, encryption and decryption together."""
    check_interval: float = 30.0
    """Seconds between checks of a cached key's state with the service."""


@dataclass
class CachedKey:
    """A DEK in use: its cipher, the wrapped form and what it has encrypted so far."""

    cipher: AESGCM
    wrapped: bytes
    key_id: str
    key_version: int
    made_at: float
    messages: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        self.key_id_raw = self.key_id.encode("ascii")
        # What every value under this DEK starts with (built once, not per value).
        self.header = header_bytes(self.key_id, self.key_version, self.wrapped)

    def __repr__(self) -> str:  # never the DEK
        return f"CachedKey(key_id={self.key_id!r}, key_version={self.key_version})"


class DataKeyCache:
    """Unwrapped DEKs for encryption (by key reference) and decryption (by wrapped DEK)."""

    def __init__(
        self, limits: CacheLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or CacheLimits()
        self._clock = clock
        self._encrypting: OrderedDict[str, CachedKey] = OrderedDict()
        self._decrypting: OrderedDict[bytes, CachedKey] = OrderedDict()
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0
        # Counts every removal of a decryption DEK (expiry, limits, key changes, clear):
        # a reader that remembered an entry (:class:`qrc.data.sdk.DataEncryptor`'s fast path)
        # may use it without a lookup only while this has not moved.
        self.generation = 0

    @property
    def enabled(self) -> bool:
        return self.limits.max_entries > 0

    # ------------------------------------------------------------------ encryption
    def for_encryption(self, ref: str, size: int) -> CachedKey | None:
        """A cached DEK of ``ref`` that may encrypt ``size`` more bytes (counted now)."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._encrypting.get(ref)
            if entry is not None and not self._fresh(entry, size):
                del self._encrypting[ref]
                self.evictions += 1
                entry = None
            if entry is None:
                self.misses += 1
                return None
            entry.messages += 1
            entry.bytes += size
            self._encrypting.move_to_end(ref)
            self.hits += 1
            return entry

    def _fresh(self, entry: CachedKey, size: int) -> bool:
        limits = self.limits
        return (
            self._clock() - entry.made_at < limits.max_age
            and entry.messages < limits.max_messages
            and entry.bytes + size <= limits.max_bytes
        )

    def keep_for_encryption(self, ref: str, entry: CachedKey, size: int) -> None:
        """Keep a new DEK of ``ref`` (which has just encrypted ``size`` bytes)."""
        if not self.enabled:
            return
        entry.messages, entry.bytes = 1, size
        with self._lock:
            self._encrypting[ref] = entry
            self._decrypting[entry.wrapped] = entry  # read-your-writes
            self._bound()

    # ------------------------------------------------------------------ decryption
    def for_decryption(self, wrapped: bytes) -> tuple[CachedKey | None, bool]:
        """The cached DEK of ``wrapped`` (if any and not expired), and whether its key's
        state is due for a check (then not again for ``check_interval``): one lock, as
        this runs for every value read."""
        if not self.enabled:
            return None, False
        now = self._clock()
        # The common case without the lock (a dict lookup is atomic): fresh, and its key
        # checked recently. Hits found here do not move in the LRU order (the oldest DEK
        # goes first), and the counters may miss a hit under heavy concurrency.
        entry = self._decrypting.get(wrapped)
        if (
            entry is not None
            and now - entry.made_at < self.limits.max_age
            and now - self._checked.get(entry.key_id, -_FOREVER) < self.limits.check_interval
        ):
            self.hits += 1
            return entry, False
        with self._lock:
            entry = self._decrypting.get(wrapped)
            if entry is not None and now - entry.made_at >= self.limits.max_age:
                del self._decrypting[wrapped]
                self.evictions += 1
                self.generation += 1
                entry = None
            if entry is None:
                self.misses += 1
                return None, False
            self._decrypting.move_to_end(wrapped)
            self.hits += 1
            last = self._checked.get(entry.key_id)
            due = last is None or now - last >= self.limits.check_interval
            if due:
                self._checked[entry.key_id] = now
            return entry, due

    def keep_for_decryption(self, entry: CachedKey) -> None:
        """Keep a DEK just unwrapped."""
        if not self.enabled:
            return
        with self._lock:
            self._decrypting[entry.wrapped] = entry
            self._bound()

    def usable_until(self, entry: CachedKey) -> float:
        """Until when (this cache's clock) ``entry`` may decrypt without a lookup: before it
        expires and before its key is due for a state check; then ask :meth:`for_decryption`
        again. Valid only as long as :attr:`generation` stays what it was before the lookup
        that returned ``entry``."""
        checked = self._checked.get(entry.key_id, -_FOREVER)
        return min(entry.made_at + self.limits.max_age, checked + self.limits.check_interval)

    # ------------------------------------------------------------------ dropping
    def _bound(self) -> None:
        while len(self._encrypting) + len(self._decrypting) > self.limits.max_entries:
            # The decryption side goes first: an encryption DEK is the one saving calls.
            side: OrderedDict[str, CachedKey] | OrderedDict[bytes, CachedKey]
            side = self._decrypting if self._decrypting else self._encrypting
            side.popitem(last=False)
            self.evictions += 1
            self.generation += 1

    def drop_key(self, key_id: str, *, below_version: int | None = None) -> int:
        """Drop the DEKs under ``key_id`` (only versions below ``below_version`` if given)."""

        def doomed(entry: CachedKey) -> bool:
            return entry.key_id == key_id and (
                below_version is None or entry.key_version < below_version
            )

        with self._lock:
            dropped = 0
            for side in (self._encrypting, self._decrypting):
                for name in [name for name, entry in side.items() if doomed(entry)]:
                    del side[name]  # type: ignore[arg-type]
                    dropped += 1
            self.evictions += dropped
            self.generation += 1
            self._checked.pop(key_id, None)
            return dropped

    def drop_encryption(self, key_id: str) -> None:
        """Stop encrypting with the cached DEKs of ``key_id`` (rotated: use the new version)."""
        with self._lock:
            for ref in [r for r, e in self._encrypting.items() if e.key_id == key_id]:
                del self._encrypting[ref]
                self.evictions += 1

    def encryption_versions(self, key_id: str) -> set[int]:
        """The versions of ``key_id`` that cached encryption DEKs are wrapped under."""
        with self._lock:
            return {e.key_version for e in self._encrypting.values() if e.key_id == key_id}

    def clear(self) -> None:
        """Drop everything (``close()``)."""
        with self._lock:
            self.evictions += len(self._encrypting) + len(self._decrypting)
            self._encrypting.clear()
            self._decrypting.clear()
            self._checked.clear()
            self.generation += 1

    # ------------------------------------------------------------------ key state
    def due_for_check(self, key_id: str) -> bool:
        """Whether ``key_id``'s state should be checked now (then not again for a while)."""
        now = self._clock()
        with self._lock:
            last = self._checked.get(key_id)
            if last is not None and now - last < self.limits.check_interval:
                return False
            self._checked[key_id] = now
            return True

    def key_used(self, use: KeyUse) -> None:
        """Observer of the service (library mode): a change to a key drops its DEKs at once."""
        if use.key_id is None or use.result != "success" or use.operation not in _INVALIDATING:
            return
        if use.operation == "rotate":
            self.drop_encryption(use.key_id)  # new values under the new version; old ones read
        else:
            self.drop_key(use.key_id)

    def security_event(self, notice: SecurityNotice) -> None:
        """Observer of the service: a security event about a key drops its DEKs."""
        if notice.key_id is not None:
            self.drop_key(notice.key_id)

    # ------------------------------------------------------------------ metrics
    def __len__(self) -> int:
        return len(self._encrypting) + len(self._decrypting)

    def stats(self) -> CacheStats:
        """Size, hits, misses and evictions (expiry, limits, key changes, ``close()``)."""
        with self._lock:
            return CacheStats(
                "data_keys",
                len(self._encrypting) + len(self._decrypting),
                self.limits.max_entries,
                self.hits,
                self.misses,
                self.evictions,
            )
