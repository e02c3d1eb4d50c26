"""The store-and-forward relay for agent messages: per-recipient queues, acknowledgements.

The relay never sees plaintext: it takes agent messages v1 (``docs/formats.md``), sealed to
the recipient's key, reads the recipient's ID from their header and queues them. Any crypto
user may send. A queue is read and acknowledged by its agent only: a token whose name is
the agent ID, or whose key scope lists it (an agent named by its key ID), or an admin.
Others get 404, as for keys a restricted token may not use, whether or not the queue
holds anything; the attempt is audited as ``api.forbidden``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from qrc.api.deps import require, state_of
from qrc.api.problems import Problem
from qrc.api.schemas import (
    AgentId,
    RelayAcked,
    RelayAckIn,
    RelayMessageOut,
    RelayPage,
    RelayQueued,
    RelaySendIn,
    b64,
)
from qrc.keys.access.tokens import Client, Role
from qrc.keys.relay_queue import MAX_FETCH, RelayQueues
from qrc.transit.agents_format import MalformedMessage, parse_header

__all__ = ["router"]

router = APIRouter(tags=["relay"])
Agent = Annotated[Client, require(Role.CRYPTO_USER)]


def _queues(request: Request) -> RelayQueues:
    return RelayQueues(state_of(request).service.ctx)


def _owner(client: Client, recipient: str, request: Request) -> None:
    if client.role is Role.ADMIN or client.name == recipient:
        return
    if client.allowed_keys is not None and recipient in client.allowed_keys:
        return
    # Audited like a refused role: someone tried another agent's mail.
    state_of(request).service.audit.record_forbidden(client.actor, request.method, request.url.path)
    # Like keys a restricted token may not use: the queue looks like one that is not there.
    raise Problem("not-found", "no queue of that agent for this token")


@router.post(
    "/relay/messages",
    response_model=RelayQueued,
    status_code=201,
    summary="Queue a sealed agent message for its recipient",
)
def send(body: RelaySendIn, client: Agent, request: Request) -> RelayQueued:
    """The recipient is read from the message's header; the rest stays sealed."""
    try:
        recipient, _ = parse_header(body.message)
    except MalformedMessage:
        raise Problem("invalid-request", "not an agent message v1") from None
    queued = _queues(request).enqueue(recipient, body.message, actor=client.actor)
    return RelayQueued(
        id=queued.id,
        recipient=queued.recipient,
        size=queued.size,
        queued_at=queued.queued_at,
        expires_at=queued.expires_at,
    )


@router.get(
    "/relay/messages",
    response_model=RelayPage,
    response_model_exclude_none=True,
    summary="Messages waiting for an agent (oldest first, until acknowledged)",
)
def fetch(
    client: Agent,
    request: Request,
    recipient: Annotated[AgentId, Query()],
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_FETCH)] = MAX_FETCH,
) -> RelayPage:
    """At-least-once: a message comes again until it is acknowledged."""
    _owner(client, recipient, request)
    found = _queues(request).fetch(recipient, after=after, limit=limit)
    messages = [
        RelayMessageOut(
            id=m.id,
            message=b64(m.message or b""),
            size=m.size,
            queued_at=m.queued_at,
            expires_at=m.expires_at,
            seq=m.seq,
        )
        for m in found
    ]
    next_after = found[-1].seq if len(found) == limit else None
    return RelayPage(messages=messages, next_after=next_after)


@router.post(
    "/relay/messages/ack",
    name="relay_acknowledge",
    response_model=RelayAcked,
    summary="Acknowledge delivered messages (they are removed)",
)
def acknowledge(body: RelayAckIn, client: Agent, request: Request) -> RelayAcked:
    _owner(client, body.recipient, request)
    removed = _queues(request).acknowledge(body.recipient, body.ids, actor=client.actor)
    return RelayAcked(acknowledged=removed)
