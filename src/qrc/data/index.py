"""The encrypted-data index as the SDK and the jobs see it, in this process or over the API.

The index itself lives in the key service (``service.data``, :mod:`qrc.keys.data_index`);
:class:`LocalIndex` calls it directly, :class:`RemoteIndex` through ``/data/index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from qrc.keys.data_index import IndexEntry, IndexRecord, ShredReport

if TYPE_CHECKING:
    from qrc.data.keysource import RemoteKeySource
    from qrc.keys.service import KeyService

__all__ = ["IndexClient", "IndexEntry", "IndexRecord", "LocalIndex", "RemoteIndex", "ShredReport"]


class IndexClient(Protocol):
    """Register objects, page through them by key, record rewraps, report shredding."""

    def register(self, entries: Sequence[IndexEntry]) -> int: ...

    def get(self, identifier: str) -> IndexRecord: ...

    def under(
        self, key: str, *, below_version: int | None = None, after: int = 0, limit: int = 100
    ) -> list[IndexRecord]: ...

    def mark_rewrapped(self, moved: Sequence[tuple[str, int, str | None]], *, key: str) -> int: ...

    def shred_report(self, key: str, *, after: int = 0, limit: int = 1000) -> ShredReport: ...


class LocalIndex:
    """``service.data`` of a key service in this process."""

    def __init__(self, service: KeyService, *, actor: str) -> None:
        self.service, self.actor = service, actor

    def register(self, entries: Sequence[IndexEntry]) -> int:
        return self.service.data.register(entries, actor=self.actor)

    def get(self, identifier: str) -> IndexRecord:
        return self.service.data.get(identifier)

    def under(
        self, key: str, *, below_version: int | None = None, after: int = 0, limit: int = 100
    ) -> list[IndexRecord]:
        return self.service.data.under(key, below_version=below_version, after=after, limit=limit)

    def mark_rewrapped(self, moved: Sequence[tuple[str, int, str | None]], *, key: str) -> int:
        return self.service.data.mark_rewrapped(moved, key=key, actor=self.actor)

    def shred_report(self, key: str, *, after: int = 0, limit: int = 1000) -> ShredReport:
        return self.service.data.shred_report(key, after=after, limit=limit)


def _record(item: dict[str, Any]) -> IndexRecord:
    rewrapped = item.get("rewrapped_at")
    return IndexRecord(
        identifier=item["identifier"],
        data_type=item.get("data_type"),
        location=item.get("location"),
        key_id=item["key_id"],
        key_version=int(item["key_version"]),
        algorithm=item["algorithm"],
        integrity_hash=item.get("integrity_hash"),
        data_class=item.get("data_class"),
        created_at=datetime.fromisoformat(item["created_at"]),
        rewrapped_at=datetime.fromisoformat(rewrapped) if rewrapped else None,
        seq=int(item["seq"]),
    )


class RemoteIndex:
    """The index through the key service's API (``/data/index``, ``/data/shred-report``)."""

    def __init__(self, source: RemoteKeySource) -> None:
        self.source = source

    def register(self, entries: Sequence[IndexEntry]) -> int:
        body = {
            "objects": [
                {
                    "identifier": e.identifier,
                    "key": e.key,
                    "key_version": e.key_version,
                    "data_type": e.data_type,
                    "location": e.location,
                    "integrity_hash": e.integrity_hash,
                    "data_class": e.data_class,
                }
                for e in entries
            ]
        }
        answer = self.source.call("index register", "POST", "/data/index", body)
        return int(answer["registered"])

    def get(self, identifier: str) -> IndexRecord:
        query = urlencode({"identifier": identifier})
        return _record(self.source.call("index show", "GET", "/data/index/object?" + query))

    def under(
        self, key: str, *, below_version: int | None = None, after: int = 0, limit: int = 100
    ) -> list[IndexRecord]:
        query = {"key": key, "after": after, "limit": limit}
        if below_version is not None:
            query["below_version"] = below_version
        answer = self.source.call("index list", "GET", "/data/index?" + urlencode(query))
        return [_record(item) for item in answer["objects"]]

    def mark_rewrapped(self, moved: Sequence[tuple[str, int, str | None]], *, key: str) -> int:
        body = {
            "key": key,
            "objects": [
                {"identifier": i, "key_version": v, "integrity_hash": h} for i, v, h in moved
            ],
        }
        answer = self.source.call("index rewrap", "POST", "/data/index/rewrapped", body)
        return int(answer["rewrapped"])

    def shred_report(self, key: str, *, after: int = 0, limit: int = 1000) -> ShredReport:
        query = urlencode({"key": key, "after": after, "limit": limit})
        answer = self.source.call("shred report", "GET", "/data/shred-report?" + query)
        destroyed = answer.get("destroyed_at")
        return ShredReport(
            key_id=answer["key_id"],
            key_name=answer["key_name"],
            status=answer["status"],
            shredded=bool(answer["shredded"]),
            destroyed_at=datetime.fromisoformat(destroyed) if destroyed else None,
            objects=[_record(item) for item in answer["objects"]],
            next_after=answer.get("next_after"),
        )
