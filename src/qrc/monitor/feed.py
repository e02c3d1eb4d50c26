"""The threat feed of a key service: accept signed feeds, keep the last, apply what they say.

:class:`ThreatFeed` takes a signed document (threat feed v1, :mod:`.feed_format`) submitted
through the API or the command line, or fetched from its ``source`` (a file or an HTTPS URL,
:mod:`.feed_fetch`), and:

1. verifies it under the one configured publisher key, and refuses it if its sequence is
   not above the last accepted one. The last accepted sequence, digest and document live in
   the store (``qrc_policies``, row ``threat_feed``), so a restarted service, or another node
   on the same database, still refuses a rollback or a replay. A refusal changes nothing and
   is recorded as a ``threat_feed_refused`` security event (and an audit event);
2. claims the new sequence in the store (``threat_feed_accepted``), then
3. applies each algorithm status the feed gives for today (its own statuses and the
   transitions whose date has come) through :meth:`KeyService.update_policy`, the path
   ``POST /protocols/update`` takes, so whatever watches policy changes sees these too.
   Each change is an ``algorithm_status_changed`` security event.

A feed only tightens: it moves an algorithm from active towards deprecated or disallowed,
never back. Loosening is an operator's decision (``POST /protocols/update``), which a feed
does not undo: each status of a feed is applied once (the row remembers what it applied), so
only a new feed, or a transition date coming, applies again. A pass (:meth:`ThreatFeed.apply`)
therefore also finishes an application that a crash interrupted after step 2.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qrc.crypto.registry import Status
from qrc.keys.audit.events import EVENT_DEFAULTS, EventType, Severity, record_event
from qrc.keys.observers import SecurityNotice
from qrc.keys.policy import PolicyUpdate
from qrc.keys.store.db import after_commit
from qrc.keys.store.models import Policy
from qrc.monitor.feed_fetch import FeedUnavailable, fetch_document
from qrc.monitor.feed_format import (
    STATUS_RANK,
    Feed,
    FeedRefused,
    Publisher,
    VerifiedFeed,
    check_sequence,
    known_algorithm,
    parse_json,
    verify_document,
)

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "ALGORITHM_STATUS_CHANGED",
    "FEED_ACCEPTED",
    "FEED_REFUSED",
    "FEED_ROW",
    "AppliedChange",
    "FeedOutcome",
    "StoredFeed",
    "ThreatFeed",
    "attach_feed",
    "feed_for",
    "read_stored_feed",
]

logger = logging.getLogger(__name__)

FEED_ROW: Final = "threat_feed"
# Security event types of the feed (their story fields: qrc.keys.audit.events).
FEED_REFUSED: Final = EventType.THREAT_FEED_REFUSED
FEED_ACCEPTED: Final = EventType.THREAT_FEED_ACCEPTED
ALGORITHM_STATUS_CHANGED: Final = EventType.ALGORITHM_STATUS_CHANGED
_REFUSAL_SEVERITY: Final = {
    "signature": Severity.HIGH,
    "rollback": Severity.HIGH,
    "replay": Severity.MEDIUM,
    "expired": Severity.MEDIUM,
    "not_yet_valid": Severity.MEDIUM,
    "malformed": Severity.MEDIUM,
}
_HISTORY: Final = 100


@dataclass(frozen=True)
class AppliedChange:
    """An algorithm status a feed changed."""

    algorithm: str
    before: str
    after: str
    reason: str
    sequence: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "from": self.before,
            "to": self.after,
            "reason": self.reason,
            "sequence": self.sequence,
        }


@dataclass
class FeedOutcome:
    """What one submission or pass did."""

    accepted: bool = False
    sequence: int | None = None
    changes: list[AppliedChange] = field(default_factory=list)


@dataclass(frozen=True)
class StoredFeed:
    """The last accepted feed as the store keeps it."""

    feed: Feed
    digest: str
    accepted_at: str
    accepted_by: str
    applied: dict[str, str]
    history: list[dict[str, Any]]


def read_stored_feed(session: Session) -> StoredFeed | None:
    """The last accepted feed (None before the first). Verified when it was accepted."""
    row = session.get(Policy, FEED_ROW)
    if row is None or not isinstance(row.value, dict):
        return None
    value = row.value
    feed = Feed.model_validate(parse_json(str(value["document"]).encode("utf-8"))["feed"])
    return StoredFeed(
        feed=feed,
        digest=str(value["digest"]),
        accepted_at=str(value["accepted_at"]),
        accepted_by=str(value["accepted_by"]),
        applied=dict(value.get("applied") or {}),
        history=list(value.get("history") or []),
    )


# A server attaches its configured feed to its service, so the API finds it (weakly held:
# a closed service takes its feed with it).
_ATTACHED: weakref.WeakKeyDictionary[KeyService, ThreatFeed] = weakref.WeakKeyDictionary()


def attach_feed(service: KeyService, feed: ThreatFeed) -> None:
    """Make ``feed`` the one :func:`feed_for` returns for ``service``."""
    _ATTACHED[service] = feed


def feed_for(service: KeyService) -> ThreatFeed | None:
    """The feed attached to ``service``, if a publisher key is configured."""
    return _ATTACHED.get(service)


class ThreatFeed:
    """Signed feeds for one key service, under one publisher key (see the module docstring)."""

    def __init__(
        self,
        service: KeyService,
        publisher: Publisher,
        *,
        source: str | None = None,
        ca_file: Path | None = None,
        timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.source = source
        self.ca_file = ca_file
        self.timeout = timeout
        self.clock = clock or service.clock
        self.last_error: str | None = None
        self.last_checked: datetime | None = None
        self._refused_digest: str | None = None  # the source's last refused document
        self._lock = threading.Lock()  # one submission or pass at a time in this process

    # ------------------------------------------------------------------ entry points
    def submit(self, document: bytes, *, actor: str, origin: str) -> FeedOutcome:
        """Verify, accept and apply a signed document.

        Raises:
            FeedRefused: the document is refused (recorded as a security event); nothing
                changed.
        """
        with self._lock:
            now = self.clock()
            try:
                verified = verify_document(document, self.publisher, now)
                self._claim(verified, actor, origin)
            except FeedRefused as exc:
                self._record_refusal(exc, actor, origin, document)
                raise
            outcome = FeedOutcome(accepted=True, sequence=verified.feed.sequence)
            outcome.changes = self._apply_pending(actor)
            return outcome

    def refresh(self, *, actor: str = "threat-feed") -> FeedOutcome:
        """One pass: fetch from ``source`` (if any) and submit it, then apply what is due.

        A fetched feed equal to the accepted one is not a refusal (the source still serves
        it); other refusals are recorded and kept in :attr:`last_error`.

        Raises:
            FeedUnavailable: the source could not be read (nothing changed).
        """
        self.last_checked = self.clock()
        outcome = FeedOutcome()
        if self.source is not None:
            try:
                document = fetch_document(self.source, ca_file=self.ca_file, timeout=self.timeout)
            except FeedUnavailable as exc:
                self.last_error = str(exc)
                raise
            digest = hashlib.sha256(document).hexdigest()
            if self._is_current(digest):
                self.last_error = None
            elif digest == self._refused_digest:
                pass  # refused and recorded once already: a source that keeps serving it
            else:
                try:
                    outcome = self.submit(document, actor=actor, origin=self.source)
                    self.last_error = None
                except FeedRefused as exc:
                    self.last_error = str(exc)
                    self._refused_digest = digest
        outcome.changes += self.apply(actor=actor)
        return outcome

    def apply(self, *, actor: str = "threat-feed") -> list[AppliedChange]:
        """Apply what the accepted feed says for today and was not applied yet."""
        with self._lock:
            return self._apply_pending(actor)

    # ------------------------------------------------------------------ steps
    def _is_current(self, digest: str) -> bool:
        with self.service.db.read_session() as session:
            row = session.get(Policy, FEED_ROW)
            return row is not None and isinstance(row.value, dict) and row.value["digest"] == digest

    def _claim(self, verified: VerifiedFeed, actor: str, origin: str) -> None:
        """Record ``verified`` as the last accepted feed, if its sequence is new.

        The row is read under a lock (``FOR UPDATE``; SQLite's writer lock), so two nodes
        cannot both accept one sequence. Before the first feed there is no row to lock: two
        first feeds at once collide on the primary key, and the loser tries again against
        the winner's row.
        """
        try:
            self._claim_once(verified, actor, origin)
        except IntegrityError:
            self._claim_once(verified, actor, origin)

    def _claim_once(self, verified: VerifiedFeed, actor: str, origin: str) -> None:
        feed = verified.feed
        with self.service.db.session() as session:
            row = session.get(Policy, FEED_ROW, with_for_update=True)
            last = int(row.value["sequence"]) if row is not None else 0
            check_sequence(feed, last)
            now = self.clock()
            value = {
                "sequence": feed.sequence,
                "digest": verified.digest,
                "publisher": feed.publisher,
                "publisher_key_id": feed.publisher_key_id,
                "accepted_at": now.isoformat(),
                "accepted_by": actor,
                "document": verified.document.decode("utf-8"),
                "applied": {},
                "history": list(row.value.get("history") or []) if row is not None else [],
            }
            if row is None:
                session.add(Policy(name=FEED_ROW, value=value, updated_at=now, updated_by=actor))
            else:
                row.value, row.updated_at, row.updated_by = value, now, actor
            details = {
                "sequence": feed.sequence,
                "previous_sequence": last,
                "publisher": feed.publisher,
                "digest": verified.digest,
                "advisories": len(feed.advisories),
                "origin": origin[:300],
            }
            self._event(session, FEED_ACCEPTED, Severity.LOW, actor, details=details)

    def _apply_pending(self, actor: str) -> list[AppliedChange]:
        service = self.service
        with service.db.read_session() as session:
            stored = read_stored_feed(session)
            service.policy.refresh(session, force=True)
        if stored is None:
            return []
        feed = stored.feed
        wanted: dict[str, tuple[str, str]] = {}
        already: dict[str, str] = {}
        for name, (status, why) in feed.statuses_at(self.clock().date()).items():
            algorithm = known_algorithm(name)
            if algorithm is None or stored.applied.get(algorithm) == status:
                continue  # a name this version does not know, or applied before
            current = service.policy.status(algorithm).value
            if STATUS_RANK[status] > STATUS_RANK[current]:
                wanted[algorithm] = (status, why)
            else:
                already[algorithm] = status  # as strict already (or looser: never loosened)
        if not wanted and not already:
            return []
        changes = [
            AppliedChange(a, service.policy.status(a).value, s, why, feed.sequence)
            for a, (s, why) in sorted(wanted.items())
        ]
        if changes:
            update = PolicyUpdate(algorithm_status={c.algorithm: c.after for c in changes})
            service.update_policy(update, actor=f"{actor} (threat feed {feed.sequence})")
        with service.db.session() as session:
            row = session.get(Policy, FEED_ROW, with_for_update=True)
            if row is None or int(row.value["sequence"]) != feed.sequence:
                return changes  # a newer feed was accepted meanwhile: it applies itself
            value = dict(row.value)
            value["applied"] = {**value.get("applied", {}), **already}
            value["applied"].update({c.algorithm: c.after for c in changes})
            at = self.clock().isoformat()
            history = list(value.get("history") or [])
            history += [{**c.as_dict(), "at": at} for c in changes]
            value["history"] = history[-_HISTORY:]
            row.value = value
            for change in changes:
                severity = Severity.HIGH if change.after == Status.DISALLOWED else Severity.MEDIUM
                self._event(
                    session,
                    ALGORITHM_STATUS_CHANGED,
                    severity,
                    actor,
                    algorithm=change.algorithm,
                    details=change.as_dict(),
                )
        for change in changes:
            logger.warning(
                "threat feed %d: %s %s -> %s (%s)",
                change.sequence, change.algorithm, change.before, change.after, change.reason,
            )  # fmt: skip
        return changes

    # ------------------------------------------------------------------ recording
    def _record_refusal(self, exc: FeedRefused, actor: str, origin: str, document: bytes) -> None:
        logger.warning("threat feed from %s refused (%s): %s", origin[:200], exc.reason, exc.detail)
        details = {
            "reason": exc.reason,
            "detail": exc.detail[:300],
            "origin": origin[:300],
            "digest": hashlib.sha256(document).hexdigest(),
            "size": len(document),
        }
        try:
            with self.service.db.session() as session:
                severity = _REFUSAL_SEVERITY.get(exc.reason, Severity.MEDIUM)
                self._event(session, FEED_REFUSED, severity, actor, details=details)
        except Exception:  # the refusal itself must reach the caller
            logger.exception("could not record a refused threat feed")

    def _event(
        self,
        session: Session,
        event_type: EventType,
        severity: Severity,
        actor: str,
        *,
        algorithm: str | None = None,
        details: dict[str, Any],
    ) -> None:
        """A security event and its audit event, in ``session``'s transaction."""
        source = f"threat-feed:{actor}"[:200]
        defaults = EVENT_DEFAULTS[event_type]
        description, action = defaults.description, defaults.action_taken
        if event_type == ALGORITHM_STATUS_CHANGED:
            description = f"{details['algorithm']}: {details['from']} -> {details['to']}"
        elif event_type == FEED_REFUSED:
            description = f"threat feed refused ({details['reason']}): {details['detail']}"
        record_event(
            session,
            event_type,
            severity,
            source,
            algorithm=algorithm,
            details=details,
            description=description[:500],
            is_quantum_threat_related=True,
            action_taken=action,
        )
        result = "denied" if event_type == FEED_REFUSED else "success"
        self.service.ctx.record(
            session, f"threat_feed.{event_type}", actor, result=result, details=details
        )
        notice = SecurityNotice(event_type.value, severity.value, source, None, algorithm, details)
        observers = self.service.observers
        after_commit(session, lambda: observers.security_event(notice))
