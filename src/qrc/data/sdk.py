"""The envelope SDK: encrypt application values under keys the service manages.

::

    from qrc.data import DataEncryptor
    sdk = DataEncryptor.local(service)           # library mode (qrc.keys.factory.open_service)
    sdk = DataEncryptor.remote(url, token=..., ca_file=...)   # the service over PQ TLS
    blob = sdk.encrypt("customers", b"alice@example.com", context=b"customers/42/email")
    sdk.decrypt(blob, context=b"customers/42/email")

Each value gets a DEK (fresh, or reused from the bounded cache within its limits) wrapped
under the key's primary version; the envelope (``docs/formats.md``, "Data envelope") carries
the wrapped DEK, key ID and version, and binds the context. Every failure to decrypt is the
one opaque ``DecryptionError``.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qrc.crypto.envelope import parse_header
from qrc.crypto.errors import DecryptionError
from qrc.data.cache import CachedKey, CacheLimits, DataKeyCache
from qrc.data.format import (
    DEK_SIZE,
    MAX_TEXT_SIZE,
    MIN_BODY_SIZE,
    TEXT_PREFIX,
    DataHeader,
    from_text,
    open_body,
    parse,
    replace_wrapped,
    seal_after_header,
    split,
)
from qrc.data.index import IndexClient, LocalIndex, RemoteIndex
from qrc.data.keysource import KeySource, LocalKeySource, RemoteKeySource
from qrc.keys.cache import CacheStats
from qrc.keys.errors import KeyNotFound

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = ["DataEncryptor", "Rewrapped", "TextReader", "integrity_hash"]


def integrity_hash(envelope: bytes) -> str:
    """``sha256:<hex>`` of a data envelope's bytes (the index's integrity hash; for a
    column value, of the bytes its text form decodes to)."""
    return "sha256:" + hashlib.sha256(envelope).hexdigest()


@dataclass(frozen=True, slots=True)
class _Remembered:
    """A DEK found for the last value read, usable for the next values with its header
    while the cache has dropped nothing (``generation``) and until ``until``."""

    entry: CachedKey
    generation: int
    until: float

    def live(self, cache: DataKeyCache) -> bool:
        return cache.generation == self.generation and cache._clock() < self.until


@dataclass(frozen=True)
class Rewrapped:
    """A value with its DEK rewrapped: the new bytes and the version they name now."""

    data: bytes
    key_id: str
    key_version: int
    changed: bool


class DataEncryptor:
    """Envelope encryption with a bounded DEK cache, over a :class:`KeySource`."""

    def __init__(
        self,
        source: KeySource,
        *,
        cache: CacheLimits | None = None,
        index: IndexClient | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.cache = DataKeyCache(cache)
        self.index = index
        self._on_close = on_close
        self._closed = False
        self._last: _Remembered | None = None

    @classmethod
    def local(
        cls, service: KeyService, *, cache: CacheLimits | None = None, actor: str = "qrc.data"
    ) -> DataEncryptor:
        """Library mode: the key service in this process. Key changes made through it drop
        cached DEKs at once (the cache observes the service)."""
        sdk = cls(
            LocalKeySource(service, actor=actor),
            cache=cache,
            index=LocalIndex(service, actor=actor),
        )
        service.observers.add(sdk.cache)
        sdk._on_close = lambda: service.observers.remove(sdk.cache)
        return sdk

    @classmethod
    def remote(
        cls,
        url: str,
        *,
        token: str,
        ca_file: str | None = None,
        cache: CacheLimits | None = None,
        timeout: float = 10.0,
    ) -> DataEncryptor:
        """The key service's API at ``url`` (``https://`` over PQ TLS trusting ``ca_file``)."""
        source = RemoteKeySource.connect(url, token=token, ca_file=ca_file, timeout=timeout)
        return cls(source, cache=cache, index=RemoteIndex(source))

    # ------------------------------------------------------------------ encryption
    def encrypt(self, key: str, plaintext: bytes, *, context: bytes = b"") -> bytes:
        """The data envelope of ``plaintext`` under ``key`` (ID or name), bound to
        ``context``. Raises before anything is returned if the key service cannot be
        reached (:class:`qrc.data.keysource.KeyServiceUnavailable`) or refuses the key."""
        self._open()
        size = len(plaintext)
        entry = self.cache.for_encryption(key, size)
        if entry is not None and self.cache.due_for_check(entry.key_id):
            self._check(entry.key_id)
            entry = self.cache.for_encryption(key, size)
        if entry is None:
            made = self.source.data_key(key)
            if len(made.plaintext) != DEK_SIZE:
                raise RuntimeError("the key service returned a data key of the wrong size")
            entry = CachedKey(
                AESGCM(made.plaintext), made.wrapped, made.key_id, made.key_version, self._now()
            )
            self.cache.keep_for_encryption(key, entry, size)
            self.cache.due_for_check(made.key_id)  # just asked the service: fresh
        return seal_after_header(entry.cipher, entry.header, plaintext, context)

    def _now(self) -> float:
        return self.cache._clock()

    # ------------------------------------------------------------------ decryption
    def decrypt(self, data: bytes, *, context: bytes = b"") -> bytes:
        """The plaintext of a data envelope made with the same ``context``.

        Raises:
            DecryptionError: for every way the value or its wrapped DEK fails (opaque).
            OperationNotPermitted: the key's state or version no longer allows decryption.
        """
        # The values one DEK wrote share its header: the last one seen is compared with
        # the value's first bytes instead of parsing them and looking the DEK up again.
        memo = self._last
        if (
            memo is not None
            and data.startswith(memo.entry.header)
            and memo.live(self.cache)
            and len(data) >= len(memo.entry.header) + MIN_BODY_SIZE
        ):
            self.cache.hits += 1
            return open_body(memo.entry.cipher, data, len(memo.entry.header), context)
        plaintext, self._last = self._decrypt(data, context)
        return plaintext

    def text_reader(self) -> TextReader:
        """A decryptor of text-form values (``qrcd1:…``) for one stream of reads, such as
        a column's: faster than ``decrypt(from_text(value))`` over values one DEK wrote."""
        return TextReader(self)

    def _decrypt(self, data: bytes, context: bytes) -> tuple[bytes, _Remembered | None]:
        """The plaintext, and what a later value under the same DEK may skip to (if cached)."""
        if self._closed:
            raise RuntimeError("this DataEncryptor is closed")
        generation = self.cache.generation  # before the lookup: a drop meanwhile voids it
        raw_id, version, wrapped, body = split(data)
        # The cached path does no more than it must: it runs for every value read.
        entry, due = self.cache.for_decryption(wrapped)
        if entry is not None:
            if entry.key_id_raw != raw_id or entry.key_version != version:
                raise DecryptionError  # a known wrapped DEK under edited header fields
            if due:
                self._check(entry.key_id)
                entry, _ = self.cache.for_decryption(wrapped)  # gone if the state says so
        if entry is None:
            entry = self._unwrap(parse(data))
        plaintext = open_body(entry.cipher, data, body, context)
        if not self.cache.enabled:
            return plaintext, None
        return plaintext, _Remembered(entry, generation, self.cache.usable_until(entry))

    def _unwrap(self, header: DataHeader) -> CachedKey:
        """The DEK of ``header``, unwrapped by the service (audited) and cached."""
        inner = parse_header(header.wrapped_key)
        if inner.key_id != header.key_id or inner.key_version != header.key_version:
            raise DecryptionError
        try:
            dek = self.source.unwrap(header.key_id, header.wrapped_key)
        except KeyNotFound:  # a forged header naming no key: as opaque as any other
            raise DecryptionError from None
        entry = CachedKey(
            AESGCM(dek), header.wrapped_key, header.key_id, header.key_version, self._now()
        )
        self.cache.keep_for_decryption(entry)
        self.cache.due_for_check(header.key_id)
        return entry

    def _check(self, key_id: str) -> None:
        """Ask the service about a cached key; drop what its state no longer allows."""
        try:
            status = self.source.status(key_id)
        except Exception:
            self.cache.drop_key(key_id)  # cannot tell: trust nothing cached
            raise
        if not status.decrypts:
            self.cache.drop_key(key_id)
            return
        self.cache.drop_key(key_id, below_version=status.min_decryption_version)
        if not status.encrypts:
            self.cache.drop_encryption(key_id)
        elif self.cache.encryption_versions(key_id) - {status.primary_version}:
            self.cache.drop_encryption(key_id)  # rotated elsewhere: use the new version

    # ------------------------------------------------------------------ rewrap
    def rewrap(self, data: bytes) -> Rewrapped:
        """``data`` with its DEK rewrapped (by the service) under the primary version of
        its key; the value's ciphertext is untouched and its plaintext never seen.

        Values already under the primary version come back unchanged (``changed`` false).
        """
        self._open()
        header = parse(data)
        status = self.source.status(header.key_id)
        if header.key_version == status.primary_version:
            return Rewrapped(data, header.key_id, header.key_version, False)
        wrapped, key_id, version = self.source.rewrap(header.key_id, header.wrapped_key)
        return Rewrapped(replace_wrapped(data, key_id, version, wrapped), key_id, version, True)

    # ------------------------------------------------------------------ lifecycle
    def cache_stats(self) -> CacheStats:
        """Hits, misses, evictions and size of the DEK cache."""
        return self.cache.stats()

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError("this DataEncryptor is closed")

    def close(self) -> None:
        """Drop every cached DEK and let go of the key service."""
        if self._closed:
            return
        self._closed = True
        self.cache.clear()
        if self._on_close is not None:
            self._on_close()
        self.source.close()

    def __enter__(self) -> DataEncryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TextReader:
    """Decrypts text-form values one after another (a column's, as rows are read).

    The text form is base64, so values under one DEK share the text of their header's
    first ``3k`` bytes: the reader remembers it, with the DEK, and decodes only the rest
    of each value (the last header bytes, the nonce, the ciphertext and the tag), whose
    header bytes must then match too. Anything else takes the full path of
    :meth:`DataEncryptor.decrypt`; failures are the same opaque ``DecryptionError``.
    """

    __slots__ = ("_memo", "sdk")

    def __init__(self, sdk: DataEncryptor) -> None:
        self.sdk = sdk
        self._memo: tuple[str, bytes, _Remembered] | None = None

    def decrypt(self, text: str, context: bytes = b"") -> bytes:
        """The plaintext of ``text`` (a data envelope's text form) bound to ``context``."""
        memo = self._memo
        if memo is not None and text.startswith(memo[0]) and len(text) <= MAX_TEXT_SIZE:
            prefix, rest, remembered = memo
            cache = self.sdk.cache
            if cache.generation == remembered.generation and cache._clock() < remembered.until:
                try:
                    tail = binascii.a2b_base64(text[len(prefix) :], strict_mode=True)
                except (binascii.Error, ValueError):
                    raise DecryptionError from None
                at = len(rest)
                if tail[:at] == rest and len(tail) >= at + MIN_BODY_SIZE:
                    cache.hits += 1
                    return open_body(remembered.entry.cipher, tail, at, context)
        plaintext, found = self.sdk._decrypt(from_text(text), context)
        if found is not None:
            header = found.entry.header
            whole = len(header) - len(header) % 3  # bytes of complete base64 groups
            prefix = TEXT_PREFIX + binascii.b2a_base64(header[:whole], newline=False).decode()
            self._memo = (prefix, header[whole:], found)
        return plaintext
