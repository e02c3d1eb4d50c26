"""Key material: generated, wrapped under the root KEK, unwrapped only in memory when used.

Unwrapped material is cached by (key, version) for a few minutes so that the KEK (an HSM
round trip) is not asked on every use; every use still re-reads the key's state from the
store, so a key destroyed or revoked by another process stops working everywhere at once.
The cache is dropped at once when the KEK is found unreachable. Both caches (private
material, public keys) are bounded: memory does not grow with the number of keys touched.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey
from qrc.crypto.registry import Kind, get_info
from qrc.crypto.schemes import get_kem, get_scheme, get_signature
from qrc.crypto.selftest import generate_private_key
from qrc.keys.cache import BoundedCache, CacheStats
from qrc.keys.custody.base import CustodyUnavailable
from qrc.keys.custody.keyring import Keyring
from qrc.keys.errors import KeyNotFound
from qrc.keys.store.keks import register_kek
from qrc.keys.store.models import KekRecord, Key, KeyVersion

__all__ = ["KeyMaterial", "PrivateMaterial"]

PrivateMaterial = KemPrivateKey | SigningKey | bytes  # bytes: a symmetric (AEAD) key

_MAX_PRIVATE = 1024
# A public key object costs a few KiB (ML-KEM, ML-DSA, McEliece's far more): enough for the
# keys a busy node uses, bounded whatever a client walks through.
_MAX_PUBLIC = 2048
_MAX_PUBLIC_BYTES = 32 << 20  # Classic McEliece keys are up to 1.4 MB each
_KEK_CHECK_SECONDS = 5.0


class KeyMaterial:
    """Makes, wraps, unwraps and caches the material of key versions."""

    def __init__(
        self, keyring: Keyring, clock: Callable[[], datetime], *, cache_seconds: float = 300.0
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        self._private: BoundedCache[tuple[str, int], PrivateMaterial] = BoundedCache(
            "private_keys", _MAX_PRIVATE, ttl=cache_seconds
        )
        self._public: BoundedCache[tuple[str, int], KemPublicKey | VerifyingKey] = BoundedCache(
            "public_keys", _MAX_PUBLIC
        )
        self._kek_checked_at = -float("inf")

    def cache_stats(self) -> list[CacheStats]:
        """How the material caches do."""
        return [self._private.stats(), self._public.stats()]

    # ------------------------------------------------------------------ new material
    def follow_active_kek(self, session: Session) -> None:
        """Wrap under the KEK the store says is active (another process may have rotated).

        Checked at most every few seconds; a KEK this process cannot open stops new key
        material from being made under a retiring KEK.
        """
        now = time.monotonic()
        if now - self._kek_checked_at < _KEK_CHECK_SECONDS:
            return
        active = session.scalar(select(KekRecord.id).where(KekRecord.status == "active"))
        self._kek_checked_at = now
        if active is None:  # a new store: record the KEK it starts with
            register_kek(session, self.keyring.current)
            return
        if active == self.keyring.current.kek_id:
            return
        custody = self.keyring.get(active)
        if custody is None:
            raise CustodyUnavailable(
                f"the root KEK was rotated to {active}, which this process cannot open; "
                "restart it with access to the new KEK"
            )
        self.keyring.set_current(custody)

    def new_version(
        self, session: Session, key_id: str, version: int, algorithm: str
    ) -> KeyVersion:
        """Generate, pairwise-check and wrap fresh material for one version (not yet added)."""
        info = get_info(algorithm)
        self.follow_active_kek(session)
        if info.kind is Kind.AEAD:
            material = secrets.token_bytes(info.private_key_size)
            public = None
        else:
            private = generate_private_key(algorithm)  # includes the pairwise check
            material = private.private_bytes()
            public = private.public_key().public_bytes()
        blob, kek_id = self.keyring.wrap(key_id, version, algorithm, material)
        return KeyVersion(
            key_id=key_id,
            version=version,
            algorithm=algorithm,
            public_key=public,
            wrapped_private=blob,
            kek_id=kek_id,
            created_at=self.clock(),
        )

    # ------------------------------------------------------------------ use
    @staticmethod
    def version_row(session: Session, key: Key, version: int) -> KeyVersion:
        """The stored row of one version of ``key``."""
        row = session.scalars(
            select(KeyVersion).where(KeyVersion.key_id == key.id, KeyVersion.version == version)
        ).first()
        if row is None:
            raise KeyNotFound(f"key {key.name!r} has no version {version}")
        return row

    def public_key(self, session: Session, key: Key, version: int) -> KemPublicKey | VerifyingKey:
        """The public key of one version (cached: public keys never change)."""
        cache_key = (key.id, version)
        cached = self._public.get(cache_key)
        if cached is not None:
            return cached
        row = self.version_row(session, key, version)
        if row.public_key is None:
            raise KeyNotFound(f"key {key.name!r} version {version} has no public key")
        info = get_info(row.algorithm)
        scheme = get_kem(info.id) if info.kind is Kind.KEM else get_signature(info.id)
        public = scheme.load_public(row.public_key)
        self._public.put(cache_key, public)
        return public

    def private(self, session: Session, key: Key, version: int) -> PrivateMaterial:
        """Unwrapped material of one version (callers have checked the key's state)."""
        cache_key = (key.id, version)
        cached = self._private.get(cache_key)
        if cached is not None:
            return cached
        row = self.version_row(session, key, version)
        if row.wrapped_private is None:
            raise KeyNotFound(f"key {key.name!r} version {version} has been destroyed")
        raw = self.keyring.unwrap(key.id, version, row.algorithm, row.wrapped_private)
        material: PrivateMaterial
        if get_info(row.algorithm).kind is Kind.AEAD:
            material = raw
        else:
            material = get_scheme(row.algorithm).load_private(raw)  # type: ignore[attr-defined]
        self._private.put(cache_key, material)
        return material

    def forget(self, key_id: str) -> None:
        """Drop every cached object of a key (destroyed, compromised)."""
        self._private.discard(lambda cache_key: cache_key[0] == key_id)
        self._public.discard(lambda cache_key: cache_key[0] == key_id)

    def forget_all_private(self) -> None:
        """Drop every unwrapped key (the KEK is gone: nothing under it stays usable here)."""
        self._private.clear()
