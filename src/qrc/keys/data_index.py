"""The encrypted-data index (``service.data``): what was encrypted under which key, where.

Applications register the objects they encrypt through ``qrc.data`` (identifier, data type,
location, key ID and version, integrity hash); rewrap jobs page through the objects under
a key and record what they moved; the shred report lists what a destroyed key took with
it. The index holds no key material and no data: ciphertexts stay where they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qrc.keys.context import ServiceContext
from qrc.keys.errors import Conflict, InvalidRequest
from qrc.keys.states import KeyState
from qrc.keys.store.models import EncryptedDataIndex, Key

__all__ = ["MAX_PAGE", "DataIndex", "IndexEntry", "IndexRecord", "ShredReport"]

MAX_PAGE: Final = 1000
MAX_BATCH: Final = 1000
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_TYPE = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class IndexEntry:
    """One object to register (or re-register after it was encrypted again)."""

    identifier: str
    key: str
    key_version: int
    data_type: str
    location: str | None = None
    integrity_hash: str | None = None
    data_class: str | None = None


@dataclass(frozen=True)
class IndexRecord:
    """One registered object, as shown by the API and the command line."""

    identifier: str
    data_type: str | None
    location: str | None
    key_id: str
    key_version: int
    algorithm: str
    integrity_hash: str | None
    data_class: str | None
    created_at: datetime
    rewrapped_at: datetime | None
    seq: int

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True)
class ShredReport:
    """What destroying a key made unrecoverable (``shredded`` once it is destroyed)."""

    key_id: str
    key_name: str
    status: str
    shredded: bool
    destroyed_at: datetime | None
    objects: list[IndexRecord]
    next_after: int | None


def _record(row: EncryptedDataIndex) -> IndexRecord:
    return IndexRecord(
        identifier=row.data_ref,
        data_type=row.data_type,
        location=row.location,
        key_id=row.key_id,
        key_version=row.key_version,
        algorithm=row.algorithm,
        integrity_hash=row.integrity_hash,
        data_class=row.data_class,
        created_at=row.created_at,
        rewrapped_at=row.rewrapped_at,
        seq=row.id,
    )


def _text(value: str | None, name: str, limit: int, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required")
        return
    if not value or len(value) > limit or _CONTROL.search(value):
        raise InvalidRequest(f"{name} must be 1..{limit} printable characters")


def _check(entry: IndexEntry) -> None:
    _text(entry.identifier, "identifier", 500, required=True)
    _text(entry.location, "location", 1000)
    _text(entry.data_class, "data_class", 100)
    if not _TYPE.fullmatch(entry.data_type):
        raise InvalidRequest("data_type must be a short lower-case name (e.g. sql-column)")
    if entry.integrity_hash is not None and not _HASH.fullmatch(entry.integrity_hash):
        raise InvalidRequest("integrity_hash must be sha256:<64 hex digits>")
    if not 1 <= entry.key_version <= 0xFFFFFFFF:
        raise InvalidRequest("key_version out of range")


class DataIndex:
    """The encrypted-data index (``service.data``)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def _version_of(self, key: Key, version: int) -> None:
        if version > key.primary_version:
            raise InvalidRequest(f"key {key.name!r} has no version {version}")

    def register(self, entries: Sequence[IndexEntry], *, actor: str) -> int:
        """Register (or update, by identifier) up to 1000 objects; one audit event."""
        if len(entries) > MAX_BATCH:
            raise InvalidRequest(f"at most {MAX_BATCH} objects per call")
        for entry in entries:
            _check(entry)
        if not entries:
            return 0
        try:
            self._register(entries, actor)
        except IntegrityError:
            # Another writer registered one of these identifiers at the same moment.
            raise Conflict("an identifier was registered concurrently: retry") from None
        return len(entries)

    def _register(self, entries: Sequence[IndexEntry], actor: str) -> None:
        now = self.ctx.clock()
        keys: dict[str, Key] = {}
        with self.ctx.db.session() as session:
            for entry in entries:
                key = keys.get(entry.key) or self.ctx.find(session, entry.key)
                keys[entry.key] = key
                self._version_of(key, entry.key_version)
                row = self._row(session, entry.identifier)
                if row is None:
                    row = EncryptedDataIndex(data_ref=entry.identifier, created_at=now)
                    session.add(row)
                row.key_id, row.algorithm = key.id, key.algorithm
                row.key_version = entry.key_version
                row.data_type, row.location = entry.data_type, entry.location
                row.integrity_hash, row.data_class = entry.integrity_hash, entry.data_class
            for key in keys.values():
                count = sum(1 for e in entries if keys[e.key] is key)
                self.ctx.record(
                    session, "data.register", actor, key=key, details={"objects": count}
                )

    @staticmethod
    def _row(session: Session, identifier: str) -> EncryptedDataIndex | None:
        statement = select(EncryptedDataIndex).where(EncryptedDataIndex.data_ref == identifier)
        return session.scalars(statement).first()

    def get(self, identifier: str) -> IndexRecord:
        """One object by identifier (``LookupError`` if none is registered under it)."""
        with self.ctx.db.read_session() as session:
            row = self._row(session, identifier)
            if row is None:
                raise LookupError(f"no indexed object {identifier!r}")
            return _record(row)

    def under(
        self,
        ref: str,
        *,
        below_version: int | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[IndexRecord]:
        """Objects under a key (only versions below ``below_version`` if given), in
        registration order after sequence number ``after``."""
        limit = max(1, min(limit, MAX_PAGE))
        with self.ctx.db.read_session() as session:
            key = self.ctx.find(session, ref)
            statement = select(EncryptedDataIndex).where(
                EncryptedDataIndex.key_id == key.id, EncryptedDataIndex.id > after
            )
            if below_version is not None:
                statement = statement.where(EncryptedDataIndex.key_version < below_version)
            rows = session.scalars(statement.order_by(EncryptedDataIndex.id).limit(limit))
            return [_record(row) for row in rows]

    def mark_rewrapped(
        self,
        moved: Iterable[tuple[str, int, str | None]],
        *,
        key: str,
        actor: str,
    ) -> int:
        """Record objects moved to a new version: (identifier, version, integrity hash).

        One ``data.rewrap`` audit event per call (the DEK rewraps themselves are audited
        as ``key.rewrap`` by the service).
        """
        moved = list(moved)
        if len(moved) > MAX_BATCH:
            raise InvalidRequest(f"at most {MAX_BATCH} objects per call")
        now = self.ctx.clock()
        with self.ctx.db.session() as session:
            found = self.ctx.find(session, key)
            versions: dict[int, int] = {}
            for identifier, version, digest in moved:
                if digest is not None and not _HASH.fullmatch(digest):
                    raise InvalidRequest("integrity_hash must be sha256:<64 hex digits>")
                self._version_of(found, version)
                row = self._row(session, identifier)
                if row is None or row.key_id != found.id:
                    raise InvalidRequest(f"{identifier!r} is not indexed under this key")
                versions[row.key_version] = versions.get(row.key_version, 0) + 1
                row.key_version, row.integrity_hash, row.rewrapped_at = version, digest, now
            self.ctx.record(
                session,
                "data.rewrap",
                actor,
                key=found,
                key_version=found.primary_version,
                details={"objects": len(moved), "from_versions": sorted(versions)},
            )
        return len(moved)

    def forget(self, identifiers: Sequence[str], *, actor: str) -> int:
        """Remove objects that no longer exist (deleted rows, expired Redis keys)."""
        with self.ctx.db.session() as session:
            removed = 0
            for identifier in identifiers:
                row = self._row(session, identifier)
                if row is not None:
                    session.delete(row)
                    removed += 1
            self.ctx.record(session, "data.forget", actor, details={"objects": removed})
        return removed

    def shred_report(self, ref: str, *, after: int = 0, limit: int = MAX_PAGE) -> ShredReport:
        """What destroying ``ref`` made (or will make) unrecoverable."""
        with self.ctx.db.read_session() as session:
            key = self.ctx.find(session, ref)
            key_id, name, status = key.id, key.name, key.status
            destroyed_at = key.destroyed_at
        objects = self.under(key_id, after=after, limit=limit)
        return ShredReport(
            key_id=key_id,
            key_name=name,
            status=status,
            shredded=status == KeyState.DESTROYED,
            destroyed_at=destroyed_at,
            objects=objects,
            next_after=objects[-1].seq if len(objects) == max(1, min(limit, MAX_PAGE)) else None,
        )
