"""Rewrap every indexed object under a key's primary version, without touching bulk data.

An object's wrapped DEK lives in the object itself (the data envelope's header), so the job
needs to reach the object: each index entry has a ``location`` whose scheme names a
:class:`RewrapTarget` (``sql:TABLE/COLUMN/PK`` for columns, ``redis:KEY[#FIELD]`` for Redis
values). For each object under an older version the job reads the stored value, has the
service rewrap its DEK (``key.rewrap``, audited; once per distinct wrapped DEK), splices the
new header onto the unchanged ciphertext, writes it back only if the object is still what it
read (compare and set), then records the move in the index (``data.rewrap``, audited).

Crash-safe and resumable: a run killed before a write changed nothing; one killed between
the write and the index update leaves an object already under the primary version, which
the next run recognises from its header and records without rewrapping again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote

from sqlalchemy import MetaData, Table, and_, select, update
from sqlalchemy.engine import Engine

from qrc.crypto.errors import DecryptionError
from qrc.data.format import from_text, parse, replace_wrapped, to_text
from qrc.data.index import IndexRecord
from qrc.data.sdk import DataEncryptor, integrity_hash

__all__ = [
    "RedisTarget",
    "RewrapReport",
    "RewrapTarget",
    "SqlTarget",
    "open_targets",
    "redis_location",
    "rewrap_key",
]

Progress = Callable[[int, int], None]
_MEMO_LIMIT = 10_000


class RewrapTarget(Protocol):
    """Where objects of one location scheme live."""

    def read(self, location: str) -> bytes | None:
        """The stored data envelope, or ``None`` if the object is gone."""

    def write_if_unchanged(self, location: str, old: bytes, new: bytes) -> bool:
        """Store ``new`` if the object still holds ``old``; whether it did."""


def _split(location: str, scheme: str) -> str:
    prefix = scheme + ":"
    if not location.startswith(prefix):
        raise ValueError(f"not a {scheme} location: {location!r}")
    return location[len(prefix) :]


class SqlTarget:
    """Column values, at ``sql:TABLE/COLUMN/PK`` (the value in the text form)."""

    scheme = "sql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tables: dict[str, Table] = {}

    def _where(self, location: str) -> tuple[Table, Any, Any, Any]:
        table_name, column, pk_text = _split(location, self.scheme).split("/", 2)
        table = self._tables.get(table_name)
        if table is None:
            schema, _, name = table_name.rpartition(".")
            table = Table(name, MetaData(), autoload_with=self.engine, schema=schema or None)
            self._tables[table_name] = table
        (pk,) = table.primary_key.columns
        try:
            value: Any = pk.type.python_type(pk_text)
        except NotImplementedError:
            value = pk_text
        return table, pk, value, table.c[column]

    def read(self, location: str) -> bytes | None:
        _table, pk, value, col = self._where(location)
        with self.engine.connect() as conn:
            stored = conn.scalar(select(col).where(pk == value))
        return None if stored is None else from_text(stored)

    def write_if_unchanged(self, location: str, old: bytes, new: bytes) -> bool:
        table, pk, value, col = self._where(location)
        with self.engine.begin() as conn:
            statement = update(table).where(and_(pk == value, col == to_text(old)))
            return bool(conn.execute(statement.values({col: to_text(new)})).rowcount)


def redis_location(name: bytes | str, field: bytes | str | None = None) -> str:
    """Where the index finds a Redis value: ``redis:KEY`` or ``redis:KEY#FIELD``
    (percent-encoded)."""
    location = "redis:" + quote(name, safe="")
    return location if field is None else location + "#" + quote(field, safe="")


class RedisTarget:
    """Redis strings and hash fields, at ``redis:KEY[#FIELD]`` (raw client, no wrapper)."""

    scheme = "redis"

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def _where(location: str) -> tuple[bytes, bytes | None]:
        name, _, field = _split(location, "redis").partition("#")
        return unquote(name).encode(), unquote(field).encode() if field else None

    def read(self, location: str) -> bytes | None:
        name, field = self._where(location)
        value = self.client.get(name) if field is None else self.client.hget(name, field)
        return None if value is None else bytes(value)

    def write_if_unchanged(self, location: str, old: bytes, new: bytes) -> bool:
        import redis  # noqa: PLC0415

        name, field = self._where(location)
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(name)
                current = pipe.get(name) if field is None else pipe.hget(name, field)
                if current != old:
                    return False
                pipe.multi()
                if field is None:
                    pipe.set(name, new, keepttl=True)
                else:
                    pipe.hset(name, field, new)
                pipe.execute()
            except redis.WatchError:
                return False
        return True


@dataclass
class RewrapReport:
    """What a rewrap run did."""

    key: str
    primary_version: int
    examined: int = 0
    rewrapped: int = 0
    already_current: int = 0
    dek_rewraps: int = 0
    missing: int = 0
    changed_meanwhile: int = 0
    unreadable: int = 0
    no_target: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Job:
    """One run: the report, and the DEKs already rewrapped (by wrapped DEK digest)."""

    def __init__(
        self,
        encryptor: DataEncryptor,
        targets: Mapping[str, RewrapTarget],
        report: RewrapReport,
        after_write: Callable[[], None] | None,
    ) -> None:
        self.encryptor, self.targets, self.report = encryptor, targets, report
        self.after_write = after_write
        self.memo: dict[bytes, tuple[bytes, str, int]] = {}

    def _rewrapped(self, key_id: str, wrapped: bytes) -> tuple[bytes, str, int]:
        digest = hashlib.sha256(wrapped).digest()
        fresh = self.memo.get(digest)
        if fresh is None:
            fresh = self.encryptor.source.rewrap(key_id, wrapped)
            self.report.dek_rewraps += 1
            if len(self.memo) >= _MEMO_LIMIT:
                self.memo.clear()
            self.memo[digest] = fresh
        return fresh

    def move(self, record: IndexRecord) -> tuple[str, int, str | None] | None:
        """Move one object; what the index should now say about it, if anything."""
        report = self.report
        report.examined += 1
        location = record.location or ""
        scheme = location.partition(":")[0] or "none"
        target = self.targets.get(scheme)
        if target is None:
            report.no_target[scheme] = report.no_target.get(scheme, 0) + 1
            return None
        try:
            old = target.read(location)
            header = parse(old) if old is not None else None
        except DecryptionError:
            header = None
            old = b""
        if old is None:
            report.missing += 1
            return None
        if header is None or header.key_id != report.key:
            report.unreadable += 1
            return None
        if header.key_version >= report.primary_version:
            report.already_current += 1
            return record.identifier, header.key_version, integrity_hash(old)
        wrapped, key_id, version = self._rewrapped(header.key_id, header.wrapped_key)
        new = replace_wrapped(old, key_id, version, wrapped)
        if not target.write_if_unchanged(location, old, new):
            report.changed_meanwhile += 1
            return None
        if self.after_write is not None:
            self.after_write()
        report.rewrapped += 1
        return record.identifier, version, integrity_hash(new)


def rewrap_key(
    encryptor: DataEncryptor,
    key: str,
    targets: Mapping[str, RewrapTarget],
    *,
    batch_size: int = 100,
    progress: Progress | None = None,
    after_write: Callable[[], None] | None = None,
) -> RewrapReport:
    """Move every indexed object under ``key`` to its primary version (module docstring).

    ``after_write`` runs after each object is written, before the index hears of it (the
    crash tests kill the job there).
    """
    index = encryptor.index
    if index is None:
        raise ValueError("the encryptor has no index to read")
    status = encryptor.source.status(key)
    primary = status.primary_version
    job = _Job(encryptor, targets, RewrapReport(status.key_id, primary), after_write)
    total = len(index.under(key, below_version=primary, limit=1000))
    after = 0
    if progress is not None:
        progress(0, total)
    while True:
        records = index.under(key, below_version=primary, after=after, limit=batch_size)
        if not records:
            break
        after = records[-1].seq
        moved = [m for m in (job.move(record) for record in records) if m is not None]
        if moved:
            index.mark_rewrapped(moved, key=key)
        if progress is not None:
            progress(job.report.rewrapped + job.report.already_current, total)
    return job.report


def open_targets(
    *, sql_url: str | None = None, redis_url: str | None = None
) -> tuple[dict[str, RewrapTarget], Callable[[], None]]:
    """Targets for ``sql:`` locations in the database at ``sql_url`` and ``redis:`` ones in
    the Redis at ``redis_url``, and a function that closes them."""
    targets: dict[str, RewrapTarget] = {}
    closers: list[Callable[[], None]] = []
    if sql_url:
        from sqlalchemy import create_engine  # noqa: PLC0415

        engine = create_engine(sql_url)
        targets["sql"] = SqlTarget(engine)
        closers.append(engine.dispose)
    if redis_url:
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(redis_url)
        targets["redis"] = RedisTarget(client)
        closers.append(client.close)

    def close() -> None:
        for closer in closers:
            closer()

    return targets, close
