"""The agent-message relay's store: per-recipient queues of sealed messages, with
acknowledgements (``qrc_relay_messages``, migration 0004).

The relay stores what agents send to each other (agent message v1, ``docs/formats.md``)
until the recipient fetches and acknowledges it. It holds ciphertext only: the messages are
sealed to the recipient's key, which the service never has, and the only things it reads
are the recipient's ID (from the header, by the caller) and the size. Delivery is at least
once: a message fetched but not acknowledged comes again on the next fetch, and the
recipient's replay cache drops the duplicate. Messages expire after ``ttl`` unacknowledged.

Each enqueue and acknowledgement is audited (recipient, count, sizes; never content).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select

from qrc.keys.context import ServiceContext
from qrc.keys.errors import Conflict, InvalidRequest
from qrc.keys.store.relay_messages import RelayMessage

__all__ = [
    "DEFAULT_TTL",
    "MAX_FETCH",
    "MAX_QUEUE",
    "QueuedMessage",
    "RelayMessage",
    "RelayQueues",
]

DEFAULT_TTL: Final = timedelta(days=7)
MAX_QUEUE: Final = 10_000
MAX_FETCH: Final = 100
MAX_MESSAGE_BYTES: Final = 1 << 20
_ID = re.compile(r"m_[0-9a-f]{32}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class QueuedMessage:
    """A message as the relay hands it out (or the receipt of one just queued)."""

    id: str
    recipient: str
    size: int
    queued_at: datetime
    expires_at: datetime
    seq: int
    message: bytes | None = None


def _check_recipient(recipient: str) -> None:
    if not 1 <= len(recipient) <= 200 or _CONTROL.search(recipient):
        raise InvalidRequest("a recipient is an agent ID of 1..200 printable characters")


def _queued(row: RelayMessage, *, with_message: bool) -> QueuedMessage:
    return QueuedMessage(
        id=row.message_id,
        recipient=row.recipient,
        size=row.size,
        queued_at=row.queued_at,
        expires_at=row.expires_at,
        seq=row.seq,
        message=row.message if with_message else None,
    )


class RelayQueues:
    """Per-recipient queues in the key service's store."""

    def __init__(
        self, ctx: ServiceContext, *, ttl: timedelta = DEFAULT_TTL, max_queue: int = MAX_QUEUE
    ) -> None:
        self.ctx, self.ttl, self.max_queue = ctx, ttl, max_queue

    def enqueue(self, recipient: str, message: bytes, *, actor: str) -> QueuedMessage:
        """Queue ``message`` (already checked to be addressed to ``recipient``)."""
        _check_recipient(recipient)
        if not 0 < len(message) <= MAX_MESSAGE_BYTES:
            raise InvalidRequest(f"a relayed message is 1..{MAX_MESSAGE_BYTES} bytes")
        now = self.ctx.clock()
        with self.ctx.db.session() as session:
            session.execute(delete(RelayMessage).where(RelayMessage.expires_at <= now))
            waiting = session.scalar(
                select(func.count()).where(RelayMessage.recipient == recipient)
            )
            if (waiting or 0) >= self.max_queue:
                raise Conflict(f"the queue of {recipient!r} is full ({self.max_queue} messages)")
            row = RelayMessage(
                message_id="m_" + secrets.token_hex(16),
                recipient=recipient,
                sender_actor=actor[:300],
                message=message,
                size=len(message),
                queued_at=now,
                expires_at=now + self.ttl,
            )
            session.add(row)
            session.flush()
            self.ctx.record(
                session,
                "relay.enqueue",
                actor,
                details={"recipient": recipient, "message": row.message_id, "bytes": row.size},
            )
            return _queued(row, with_message=False)

    def fetch(
        self, recipient: str, *, after: int = 0, limit: int = MAX_FETCH
    ) -> list[QueuedMessage]:
        """Unacknowledged, unexpired messages for ``recipient``, oldest first, after ``seq``."""
        _check_recipient(recipient)
        limit = max(1, min(limit, MAX_FETCH))
        now = self.ctx.clock()
        with self.ctx.db.read_session() as session:
            rows = session.scalars(
                select(RelayMessage)
                .where(
                    RelayMessage.recipient == recipient,
                    RelayMessage.seq > after,
                    RelayMessage.expires_at > now,
                )
                .order_by(RelayMessage.seq)
                .limit(limit)
            )
            return [_queued(row, with_message=True) for row in rows]

    def acknowledge(self, recipient: str, ids: Sequence[str], *, actor: str) -> int:
        """Remove delivered messages of ``recipient``; IDs of other queues are ignored.
        Returns how many were removed (an ID acknowledged twice counts once)."""
        _check_recipient(recipient)
        if len(ids) > MAX_FETCH * 10:
            raise InvalidRequest(f"at most {MAX_FETCH * 10} IDs per acknowledgement")
        wanted = [i for i in dict.fromkeys(ids) if _ID.fullmatch(i)]
        if not wanted:
            return 0
        with self.ctx.db.session() as session:
            result = session.execute(
                delete(RelayMessage).where(
                    RelayMessage.recipient == recipient, RelayMessage.message_id.in_(wanted)
                )
            )
            removed = int(getattr(result, "rowcount", 0) or 0)
            self.ctx.record(
                session, "relay.ack", actor, details={"recipient": recipient, "messages": removed}
            )
        return removed

    def depth(self, recipient: str) -> int:
        """Messages waiting for ``recipient`` (expired ones included until purged)."""
        _check_recipient(recipient)
        with self.ctx.db.read_session() as session:
            count = session.scalar(select(func.count()).where(RelayMessage.recipient == recipient))
            return int(count or 0)
