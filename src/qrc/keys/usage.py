"""Group commit of key uses: the audit events of concurrent crypto operations, written together.

A crypto operation (encrypt, decrypt, sign, verify, data key, rewrap) reads its key and does
its crypto work outside any write transaction; what it records is one audit event. Each
event must commit before the operation answers (fail closed), and on SQLite every commit
takes the store's single write lock. :class:`UsageRecorder` lets concurrent operations share
that transaction: the first to arrive leads, takes every event waiting (up to
``max_batch``), and in one transaction takes the audit lock, reads the keys again, checks
that each key still allows its operation (a key revoked or retired meanwhile refuses the
operation: the result is never returned), appends the events that pass with one head read
and one insert, and commits. The others wait for that commit; then the next waiting
operation leads the next batch. Alone, an operation leads a batch of one.

A batch fails as a whole when the database refuses it (every operation in it raises, none
answers), and each event is checked on its own (one refused operation does not stop the
others).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select

from qrc.keys.audit.log import EventFields
from qrc.keys.context import ServiceContext
from qrc.keys.errors import KeyNotFound
from qrc.keys.observers import KeyUse, with_request_source
from qrc.keys.store.db import after_commit
from qrc.keys.store.models import Key

__all__ = ["DEFAULT_MAX_BATCH", "KeyUseEvent", "UsageRecorder"]

DEFAULT_MAX_BATCH = 64

_KEYS = select(Key).where(Key.id.in_(bindparam("ids", expanding=True)))


@dataclass(eq=False)
class KeyUseEvent:
    """One operation's audit event, and the check its key must still pass when it commits."""

    key_id: str
    event_type: str
    actor: str
    key_version: int | None
    details: dict[str, Any] | None = None
    result: str = "success"
    check: Callable[[Key], None] | None = None
    """Raises (e.g. ``OperationNotPermitted``) if the key, as committed now, forbids the use."""

    error: BaseException | None = field(default=None, init=False)
    _done: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lead: bool = field(default=False, init=False, repr=False)


class UsageRecorder:
    """Commits :class:`KeyUseEvent` s in shared transactions (``service.usage``)."""

    def __init__(self, ctx: ServiceContext, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self.ctx = ctx
        self.max_batch = max_batch
        self._mutex = threading.Lock()
        self._waiting: list[KeyUseEvent] = []
        self._leading = False
        self.batches = 0
        """Transactions committed or attempted so far (each holds one or more events)."""
        self.events = 0
        """Events handed to those transactions."""

    @property
    def waiting(self) -> int:
        """Events waiting for a transaction now."""
        with self._mutex:
            return len(self._waiting)

    def record(self, event: KeyUseEvent) -> None:
        """Commit ``event`` (with others waiting); return once committed, or raise why not."""
        # In the caller's thread: the batch may be committed by another request's thread.
        event.details = with_request_source(event.event_type, event.details)
        with self._mutex:
            self._waiting.append(event)
            lead = not self._leading
            self._leading = True
        if not lead:
            event._done.wait()
            if not event._lead:  # committed (or refused) in another operation's batch
                self._raise_for(event)
                return
        try:
            with self._mutex:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                self.batches += 1
                self.events += len(batch)
            self._commit(batch)
        finally:
            with self._mutex:
                if self._waiting:
                    following = self._waiting[0]
                    following._lead = True
                    following._done.set()
                else:
                    self._leading = False
        self._raise_for(event)

    @staticmethod
    def _raise_for(event: KeyUseEvent) -> None:
        if event.error is not None:
            raise event.error

    def _commit(self, batch: list[KeyUseEvent]) -> None:
        try:
            with self.ctx.db.session() as session:
                # The lock first: a change to a key commits before it (and is seen below)
                # or after these events (and follows them in the chain).
                self.ctx.audit_log.lock(session)
                self.ctx.policy.refresh(session)
                ids = sorted({event.key_id for event in batch})
                keys = {key.id: key for key in session.scalars(_KEYS, {"ids": ids})}
                accepted = [event for event in batch if self._still_allowed(event, keys)]
                fields = [self._fields(event, keys[event.key_id]) for event in accepted]
                if fields:
                    self.ctx.audit_log.append_many(session, fields)
                for event in accepted:
                    use = self._use(event, keys[event.key_id])
                    after_commit(session, functools.partial(self.ctx.observers.key_used, use))
        except BaseException as exc:  # fail closed: no operation of the batch answers
            for event in batch:
                if event.error is None:
                    event.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for event in batch:
                event._done.set()

    def _still_allowed(self, event: KeyUseEvent, keys: dict[str, Key]) -> bool:
        key = keys.get(event.key_id)
        try:
            if key is None:  # purged meanwhile
                raise KeyNotFound("no key with that ID or name")
            self.ctx.policy.check_allowed(key.algorithm)
            if event.check is not None:
                event.check(key)
        except Exception as exc:
            event.error = exc
            return False
        return True

    @staticmethod
    def _fields(event: KeyUseEvent, key: Key) -> EventFields:
        return EventFields(
            event_type=event.event_type,
            actor=event.actor,
            result=event.result,
            key_id=key.id,
            key_version=event.key_version,
            algorithm=key.algorithm,
            details=event.details,
        )

    @staticmethod
    def _use(event: KeyUseEvent, key: Key) -> KeyUse:
        return KeyUse(
            operation=event.event_type.removeprefix("key."),
            result=event.result,
            actor=event.actor,
            key_id=key.id,
            algorithm=key.algorithm,
            key_version=event.key_version,
            source=(event.details or {}).get("source"),
        )
