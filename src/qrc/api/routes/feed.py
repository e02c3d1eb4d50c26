"""The threat feed: submit a signed feed (admin), read the landscape it gives (readers).

``POST /protocols/feed`` takes the signed document exactly as published (threat feed v1,
``docs/formats.md``): its bytes are verified, so the body is read raw, not re-parsed by the
framework. ``GET /protocols/feed`` reads the accepted feed, its advisories and dates; it
fetches nothing and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from qrc.api.deps import require, state_of
from qrc.api.problems import Problem
from qrc.keys.access.tokens import Client, Role
from qrc.monitor.feed import FeedOutcome, feed_for
from qrc.monitor.feed_format import MAX_DOCUMENT, FeedRefused
from qrc.monitor.landscape import monitor_quantum_threat_landscape

__all__ = ["router"]

router = APIRouter()
Admin = Annotated[Client, require()]
# Key managers act on deprecations, auditors check them, viewers read algorithm status.
Reader = Annotated[Client, require(Role.KEY_MANAGER, Role.AUDITOR, Role.VIEWER)]

_DOCUMENT_SCHEMA = {
    "type": "object",
    "description": "A signed threat feed v1 document (docs/formats.md), as published",
    "required": ["feed", "signature"],
    "properties": {
        "feed": {"type": "object"},
        "signature": {
            "type": "object",
            "required": ["algorithm", "value"],
            "properties": {"algorithm": {"type": "string"}, "value": {"type": "string"}},
        },
    },
}


class FeedChangeOut(BaseModel):
    """An algorithm status the feed changed."""

    algorithm: str
    before: str
    after: str
    reason: str


class FeedSubmitOut(BaseModel):
    """What an accepted feed did."""

    accepted: bool
    sequence: int | None
    changes: list[FeedChangeOut]


def _out(outcome: FeedOutcome) -> FeedSubmitOut:
    changes = [FeedChangeOut(algorithm=c.algorithm, before=c.before, after=c.after,
                             reason=c.reason) for c in outcome.changes]  # fmt: skip
    return FeedSubmitOut(accepted=outcome.accepted, sequence=outcome.sequence, changes=changes)


@router.post(
    "/protocols/feed",
    response_model=FeedSubmitOut,
    tags=["policy"],
    summary="Submit a signed threat feed",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _DOCUMENT_SCHEMA}},
        }
    },
)
async def submit_feed(client: Admin, request: Request) -> FeedSubmitOut:
    """Verify a signed feed under the configured publisher key, accept and apply it.

    Refused (and recorded as a security event, the policy unchanged): a bad signature or
    another signer, a sequence not above the last accepted one, an expired or malformed feed.
    """
    state = state_of(request)
    feed = feed_for(state.service)
    if feed is None:
        raise Problem(
            "conflict",
            "no threat feed publisher key is configured: set QRC_FEED_PUBLISHER_KEY "
            "(see docs/threat-feed.md)",
        )
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Problem("unsupported-media-type", "send the signed feed as application/json")
    document = await request.body()
    if len(document) > MAX_DOCUMENT:
        raise Problem("payload-too-large", f"a feed is at most {MAX_DOCUMENT} bytes")
    try:
        outcome = await run_in_threadpool(
            feed.submit, document, actor=client.actor, origin=f"api:{client.actor}"
        )
    except FeedRefused as exc:
        slug = "conflict" if exc.reason in ("rollback", "replay") else "invalid-request"
        raise Problem(slug, str(exc), reason=exc.reason) from None
    return _out(outcome)


@router.get(
    "/protocols/feed",
    tags=["policy"],
    summary="The threat feed: statuses, advisories and transition dates",
    responses={200: {"description": "The landscape", "content": {"application/json": {}}}},
)
def read_feed(client: Reader, request: Request) -> JSONResponse:
    """The accepted feed, the statuses it gives and the policy's, advisories, dates ahead."""
    landscape = monitor_quantum_threat_landscape(
        state_of(request).service, refresh=False, apply=False
    )
    body: dict[str, Any] = landscape.as_dict()
    return JSONResponse(body)
