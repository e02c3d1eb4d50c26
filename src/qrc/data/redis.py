"""Redis values encrypted under a managed key, transparently (redis-py).

::

    plain = redis.Redis(...)                        # decode_responses must stay off
    r = EncryptedRedis(plain, sdk, "sessions")
    r.set("session:42", b"...", ex=3600); r.get("session:42")
    r.hset("user:7", mapping={"email": "a@x.org"}); r.hget("user:7", "email")
    with r.pipeline() as pipe:
        pipe.set("a", b"1").get("a").hgetall("user:7")
        pipe.execute()                             # values decrypted in the results

Each value is a data envelope (``docs/formats.md``) bound to the Redis key name, and for
hash fields to the field name too: a value copied under another name or field fails with
the one ``DecryptionError``. Names, fields, TTLs and sizes stay visible to whoever reads
Redis; only values are encrypted. Commands not wrapped here go to ``.raw`` and see
ciphertext.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from qrc.data.format import parse
from qrc.data.index import IndexEntry
from qrc.data.rewrap import redis_location
from qrc.data.sdk import DataEncryptor, integrity_hash

__all__ = ["EncryptedPipeline", "EncryptedRedis", "redis_context"]

Name = str | bytes
Value = str | bytes | int | float
_Decode = Callable[[Any], Any]


def _bytes(value: Name | Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    raise TypeError(f"Redis values are bytes, str or numbers, not {type(value).__name__}")


def redis_context(name: Name, field: Name | None = None) -> bytes:
    """The context a Redis value is bound to: key name, and hash field if any."""
    parts = [b"qrc.redis/v1", _bytes(name)]
    if field is not None:
        parts.append(_bytes(field))
    return b"\x00".join(parts)


class _Codec:
    """Encryption and decryption of values for one key, and their index entries."""

    def __init__(
        self, encryptor: DataEncryptor, key: str, register: bool, identifier_prefix: str
    ) -> None:
        self.encryptor, self.key = encryptor, key
        self.register, self.prefix = register, identifier_prefix
        self.pending: list[IndexEntry] = []

    def seal(self, name: Name, value: Value, field: Name | None = None) -> bytes:
        data = self.encryptor.encrypt(self.key, _bytes(value), context=redis_context(name, field))
        if self.register:
            location = redis_location(_bytes(name), None if field is None else _bytes(field))
            self.pending.append(
                IndexEntry(
                    self.prefix + location,
                    self.key,
                    parse(data).key_version,
                    "redis-hash-field" if field is not None else "redis-string",
                    location=location,
                    integrity_hash=integrity_hash(data),
                )
            )
        return data

    def open(self, name: Name, value: bytes | None, field: Name | None = None) -> bytes | None:
        if value is None:
            return None
        return self.encryptor.decrypt(bytes(value), context=redis_context(name, field))

    def flush(self) -> None:
        """Register what was written (after the write: a failed write registers nothing)."""
        pending, self.pending = self.pending, []
        index = self.encryptor.index
        for start in range(0, len(pending), 1000):
            if index is not None:
                index.register(pending[start : start + 1000])

    def drop_pending(self) -> None:
        self.pending = []


def _hash_items(field: Name | None, value: Value | None, mapping: Mapping[Any, Any] | None):  # type: ignore[no-untyped-def]
    items: list[tuple[Name, Value]] = []
    if field is not None:
        if value is None:
            raise ValueError("hset with a field needs a value")
        items.append((field, value))
    items.extend((mapping or {}).items())
    if not items:
        raise ValueError("hset needs a field and value, or a mapping")
    return items


class EncryptedRedis:
    """A redis-py client whose string and hash values are encrypted under ``key``.

    Args:
        register: register each value written in the encrypted-data index (one service call
            per command or pipeline; identifiers are ``identifier_prefix`` + location).
    """

    def __init__(
        self,
        client: Any,
        encryptor: DataEncryptor,
        key: str,
        *,
        register: bool = False,
        identifier_prefix: str = "",
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("use a client with decode_responses=False: values are binary")
        self.raw = client
        self._codec = _Codec(encryptor, key, register, identifier_prefix)

    # ------------------------------------------------------------------ strings
    def set(self, name: Name, value: Value, **options: Any) -> Any:
        """SET with the value encrypted (``ex``, ``px``, ``nx``, ``xx``, ``keepttl`` as usual)."""
        sealed = self._codec.seal(name, value)
        try:
            result = self.raw.set(name, sealed, **options)
        except Exception:
            self._codec.drop_pending()
            raise
        self._codec.flush()
        return result

    def get(self, name: Name) -> bytes | None:
        """GET, decrypted (``None`` if there is no such key)."""
        return self._codec.open(name, self.raw.get(name))

    def mset(self, mapping: Mapping[Name, Value]) -> Any:
        sealed = {name: self._codec.seal(name, value) for name, value in mapping.items()}
        result = self.raw.mset(sealed)
        self._codec.flush()
        return result

    def mget(self, names: Iterable[Name]) -> list[bytes | None]:
        names = list(names)
        return [self._codec.open(n, v) for n, v in zip(names, self.raw.mget(names), strict=True)]

    # ------------------------------------------------------------------ hashes
    def hset(
        self,
        name: Name,
        field: Name | None = None,
        value: Value | None = None,
        mapping: Mapping[Name, Value] | None = None,
    ) -> Any:
        """HSET of one field or a mapping, values encrypted (bound to name and field)."""
        items = _hash_items(field, value, mapping)
        sealed = {f: self._codec.seal(name, v, f) for f, v in items}
        result = self.raw.hset(name, mapping=sealed)
        self._codec.flush()
        return result

    def hget(self, name: Name, field: Name) -> bytes | None:
        return self._codec.open(name, self.raw.hget(name, field), field)

    def hmget(self, name: Name, fields: Iterable[Name]) -> list[bytes | None]:
        fields = list(fields)
        values = self.raw.hmget(name, fields)
        return [self._codec.open(name, v, f) for f, v in zip(fields, values, strict=True)]

    def hgetall(self, name: Name) -> dict[bytes, bytes]:
        return {
            bytes(f): self._codec.open(name, v, f) or b"" for f, v in self.raw.hgetall(name).items()
        }

    # ------------------------------------------------------------------ the rest
    def delete(self, *names: Name) -> Any:
        return self.raw.delete(*names)

    def pipeline(self, transaction: bool = True) -> EncryptedPipeline:
        """A pipeline whose results come back decrypted from :meth:`EncryptedPipeline.execute`."""
        return EncryptedPipeline(self.raw.pipeline(transaction=transaction), self._codec)


class EncryptedPipeline:
    """Queued commands of :class:`EncryptedRedis`; ``execute`` decrypts each result."""

    def __init__(self, pipe: Any, codec: _Codec) -> None:
        self.pipe, self._codec = pipe, codec
        self._decoders: list[_Decode] = []

    def _queue(self, decode: _Decode) -> EncryptedPipeline:
        self._decoders.append(decode)
        return self

    def set(self, name: Name, value: Value, **options: Any) -> EncryptedPipeline:
        self.pipe.set(name, self._codec.seal(name, value), **options)
        return self._queue(lambda result: result)

    def get(self, name: Name) -> EncryptedPipeline:
        self.pipe.get(name)
        return self._queue(lambda result: self._codec.open(name, result))

    def hset(
        self,
        name: Name,
        field: Name | None = None,
        value: Value | None = None,
        mapping: Mapping[Name, Value] | None = None,
    ) -> EncryptedPipeline:
        items = _hash_items(field, value, mapping)
        self.pipe.hset(name, mapping={f: self._codec.seal(name, v, f) for f, v in items})
        return self._queue(lambda result: result)

    def hget(self, name: Name, field: Name) -> EncryptedPipeline:
        self.pipe.hget(name, field)
        return self._queue(lambda result: self._codec.open(name, result, field))

    def hgetall(self, name: Name) -> EncryptedPipeline:
        self.pipe.hgetall(name)
        return self._queue(
            lambda result: {bytes(f): self._codec.open(name, v, f) for f, v in result.items()}
        )

    def delete(self, *names: Name) -> EncryptedPipeline:
        self.pipe.delete(*names)
        return self._queue(lambda result: result)

    def execute(self) -> list[Any]:
        """Run the queued commands; results in order, values decrypted."""
        decoders, self._decoders = self._decoders, []
        try:
            results = self.pipe.execute()
        except Exception:
            self._codec.drop_pending()
            raise
        self._codec.flush()
        return [decode(result) for decode, result in zip(decoders, results, strict=True)]

    def reset(self) -> None:
        self._decoders = []
        self._codec.drop_pending()
        self.pipe.reset()

    def __enter__(self) -> EncryptedPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()
