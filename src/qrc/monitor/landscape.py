"""The quantum threat landscape of a key service: the story's ``monitor_quantum_threat_landscape``.

One pass (:func:`monitor_quantum_threat_landscape`) refreshes the threat feed if one is
configured (fetches it from its source, verifies it, applies the statuses it gives for
today, :mod:`qrc.monitor.feed`) and returns where the service stands::

    from qrc.monitor.landscape import monitor_quantum_threat_landscape

    landscape = monitor_quantum_threat_landscape(service)   # the feed attached by the server
    for item in landscape.upcoming:                          # NIST IR 8547, CNSA 2.0 dates
        print(item["date"], item["days_left"], item["title"])
    landscape.as_dict()                                      # JSON-ready, as GET /protocols/feed

``refresh=False, apply=False`` only reads (what ``GET /protocols/feed`` and ``qrc feed
status`` do); the server's feed job runs full passes on its interval. The story declares it
``async``; it does blocking I/O (the store, the fetch), so an event loop runs it in a thread:
``await asyncio.to_thread(monitor_quantum_threat_landscape, service)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from qrc.keys.states import KeyState
from qrc.keys.store.models import Key
from qrc.monitor.feed import ThreatFeed, feed_for, read_stored_feed
from qrc.monitor.feed_fetch import FeedUnavailable
from qrc.monitor.feed_format import SEVERITIES, STATUS_RANK, known_algorithm

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = ["Landscape", "monitor_quantum_threat_landscape"]


@dataclass
class Landscape:
    """Where the service stands against the quantum threat, by its threat feed.

    ``feed``: the accepted feed's identity and validity (None before the first);
    ``statuses``: each algorithm the feed rates, its feed status today and the policy's;
    ``advisories``: published advisories, most severe first, with the algorithms of live
    keys they affect; ``upcoming``: transitions and milestones still ahead, soonest first,
    with days left; ``changes``: statuses this pass applied; ``errors`` and ``warnings``:
    what an operator should look at.
    """

    at: datetime
    configured: bool
    source: str | None
    feed: dict[str, Any] | None
    statuses: list[dict[str, Any]] = field(default_factory=list)
    advisories: list[dict[str, Any]] = field(default_factory=list)
    upcoming: list[dict[str, Any]] = field(default_factory=list)
    in_force: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times ISO 8601)."""
        return {
            "at": self.at.isoformat(),
            "configured": self.configured,
            "source": self.source,
            "feed": self.feed,
            "statuses": self.statuses,
            "advisories": self.advisories,
            "upcoming": self.upcoming,
            "in_force": self.in_force,
            "changes": self.changes,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def monitor_quantum_threat_landscape(
    service: KeyService,
    feed: ThreatFeed | None = None,
    *,
    refresh: bool = True,
    apply: bool = True,
    now: datetime | None = None,
) -> Landscape:
    """One pass: refresh the feed, apply accepted changes, return the landscape.

    Args:
        service: the key service.
        feed: the threat feed to refresh (default: the one the server attached to
            ``service``; without one the stored feed is only read).
        refresh: fetch from the feed's source (if it has one) and submit what it serves.
        apply: apply the statuses of the accepted feed that are due and not yet applied.
        now: the time the landscape is for (default: the service's clock).

    A fetch that fails or a feed that is refused does not raise: it is in ``errors`` (and
    a refusal is a security event); the policy stays as it was.
    """
    feed = feed if feed is not None else feed_for(service)
    now = now or service.clock()
    landscape = Landscape(
        at=now,
        configured=feed is not None,
        source=feed.source if feed is not None else None,
        feed=None,
    )
    if feed is None:
        landscape.warnings.append(
            "no threat feed publisher key is configured (QRC_FEED_PUBLISHER_KEY): "
            "statuses change only through POST /protocols/update"
        )
    elif refresh:
        try:
            outcome = feed.refresh()
            landscape.changes += [c.as_dict() for c in outcome.changes]
        except FeedUnavailable as exc:
            landscape.errors.append(f"the feed could not be fetched: {exc}")
            if apply:
                landscape.changes += [c.as_dict() for c in feed.apply()]
        if feed.last_error and not landscape.errors:
            landscape.errors.append(feed.last_error)
    elif apply:
        landscape.changes += [c.as_dict() for c in feed.apply()]
    _describe(service, landscape, now)
    return landscape


def _describe(service: KeyService, landscape: Landscape, now: datetime) -> None:
    with service.db.read_session() as session:
        stored = read_stored_feed(session)
        live = select(Key.algorithm).where(Key.status != KeyState.DESTROYED.value).distinct()
        in_use = set(session.scalars(live))
        service.policy.refresh(session)
    if stored is None:
        landscape.warnings.append("no threat feed has been accepted yet")
        return
    feed = stored.feed
    today = now.date()
    expired = feed.expires <= now
    landscape.feed = {
        "sequence": feed.sequence,
        "publisher": feed.publisher,
        "publisher_key_id": feed.publisher_key_id,
        "issued_at": feed.issued_at,
        "expires_at": feed.expires_at,
        "expired": expired,
        "accepted_at": stored.accepted_at,
        "accepted_by": stored.accepted_by,
        "digest": stored.digest,
        "history": stored.history[-20:],
    }
    if expired:
        landscape.warnings.append(
            f"the accepted feed (sequence {feed.sequence}) expired at {feed.expires_at}: "
            "its statuses stay applied, but the publisher has sent nothing newer"
        )
    for name, (status, why) in sorted(feed.statuses_at(today).items()):
        algorithm = known_algorithm(name)
        policy = service.policy.status(algorithm).value if algorithm is not None else None
        landscape.statuses.append(
            {
                "algorithm": algorithm or name,
                "known": algorithm is not None,
                "feed_status": status,
                "policy_status": policy,
                "in_force": policy is not None and STATUS_RANK[policy] >= STATUS_RANK[status],
                "in_use": algorithm in in_use,
                "reason": why,
            }
        )
    published = [a for a in feed.advisories if a.published <= today.isoformat()]
    published.sort(key=lambda a: a.published, reverse=True)
    published.sort(key=lambda a: SEVERITIES.index(a.severity), reverse=True)
    for advisory in published:
        names = {known_algorithm(n) or n for n in advisory.algorithms}
        landscape.advisories.append(
            {**advisory.model_dump(), "affects_keys": sorted(names & in_use)}
        )
    dated: list[dict[str, Any]] = []
    for transition in feed.transitions:
        dated.append(
            {
                "kind": "transition",
                "id": transition.id,
                "title": transition.title,
                "date": transition.effective,
                "days_left": (transition.effective_date - today).days,
                "status": transition.status,
                "algorithms": list(transition.algorithms),
                "source": transition.source,
                "link": transition.link,
            }
        )
    for milestone in feed.milestones:
        dated.append(
            {
                "kind": "milestone",
                "id": milestone.id,
                "title": milestone.title,
                "date": milestone.date,
                "days_left": (milestone.day - today).days,
                "status": None,
                "algorithms": list(milestone.algorithms),
                "source": milestone.source,
                "link": milestone.link,
            }
        )
    dated.sort(key=lambda item: (item["date"], item["id"]))
    landscape.upcoming = [item for item in dated if item["days_left"] > 0]
    landscape.in_force = [item for item in dated if item["days_left"] <= 0]
