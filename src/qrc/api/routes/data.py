"""The encrypted-data index: register objects, list them by key, record rewraps, report
what a destroyed key shredded.

Writers (crypto users, on the keys their token lists) register and record rewraps; key
managers and auditors read. A crypto user may also read the index of its own keys (a remote
rewrap job pages through it). Keys a restricted token may not use look like unknown keys.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from qrc.api.deps import AppState, require, state_of
from qrc.api.problems import Problem
from qrc.api.schemas import (
    IndexObjectOut,
    IndexPage,
    IndexRegistered,
    IndexRegisterIn,
    IndexRewrapped,
    IndexRewrappedIn,
    KeyRef,
    ShredReportOut,
)
from qrc.keys.access.tokens import Client, Role
from qrc.keys.data_index import MAX_PAGE, IndexEntry, IndexRecord

__all__ = ["router"]

router = APIRouter(tags=["data"])
Writer = Annotated[Client, require(Role.CRYPTO_USER)]
Reader = Annotated[Client, require(Role.KEY_MANAGER, Role.AUDITOR, Role.CRYPTO_USER)]
Auditor = Annotated[Client, require(Role.KEY_MANAGER, Role.AUDITOR)]
After = Annotated[int, Query(ge=0, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def _allowed(state: AppState, client: Client, ref: str) -> None:
    """A restricted crypto user may touch only the keys its token lists."""
    if client.allowed_keys is None or ref in client.allowed_keys:
        return
    info = state.service.keys.get_key(ref)
    if not client.may_use(info.id):
        raise Problem("key-not-found", f"no key with ID or name {ref!r}")


def _out(record: IndexRecord) -> IndexObjectOut:
    return IndexObjectOut.model_validate(record.as_dict())


@router.post(
    "/data/index",
    response_model=IndexRegistered,
    summary="Register encrypted objects in the index",
)
def register(body: IndexRegisterIn, client: Writer, request: Request) -> IndexRegistered:
    """Register (or update, by identifier) up to 1000 objects; all or none."""
    state = state_of(request)
    for ref in {item.key for item in body.objects}:
        _allowed(state, client, ref)
    entries = [IndexEntry(**item.model_dump()) for item in body.objects]
    count = state.service.data.register(entries, actor=client.actor)
    return IndexRegistered(registered=count)


@router.get(
    "/data/index",
    response_model=IndexPage,
    response_model_exclude_none=True,
    summary="Indexed objects under a key",
)
def list_index(
    client: Reader,
    request: Request,
    key: Annotated[KeyRef, Query()],
    below_version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    after: After = 0,
    limit: Limit = 100,
) -> IndexPage:
    """Objects under ``key`` (only versions below ``below_version`` if given), in
    registration order after sequence number ``after``."""
    state = state_of(request)
    if client.role is Role.CRYPTO_USER:
        _allowed(state, client, key)
    records = state.service.data.under(key, below_version=below_version, after=after, limit=limit)
    next_after = records[-1].seq if len(records) == limit else None
    return IndexPage(objects=[_out(r) for r in records], next_after=next_after)


@router.get(
    "/data/index/object",
    response_model=IndexObjectOut,
    response_model_exclude_none=True,
    summary="One indexed object",
)
def show_object(
    client: Auditor,
    request: Request,
    identifier: Annotated[str, Query(min_length=1, max_length=500)],
) -> IndexObjectOut:
    """The index entry of one object, by identifier."""
    try:
        return _out(state_of(request).service.data.get(identifier))
    except LookupError:
        raise Problem("not-found", "no indexed object with that identifier") from None


@router.post(
    "/data/index/rewrapped",
    response_model=IndexRewrapped,
    summary="Record objects moved to a new key version",
)
def rewrapped(body: IndexRewrappedIn, client: Writer, request: Request) -> IndexRewrapped:
    """What a rewrap job moved: each object's new version and integrity hash."""
    state = state_of(request)
    _allowed(state, client, body.key)
    moved = [(o.identifier, o.key_version, o.integrity_hash) for o in body.objects]
    count = state.service.data.mark_rewrapped(moved, key=body.key, actor=client.actor)
    return IndexRewrapped(rewrapped=count)


@router.get(
    "/data/shred-report",
    response_model=ShredReportOut,
    response_model_exclude_none=True,
    summary="What destroying a key made unrecoverable",
)
def shred_report(
    client: Auditor,
    request: Request,
    key: Annotated[KeyRef, Query()],
    after: After = 0,
    limit: Limit = MAX_PAGE,
) -> ShredReportOut:
    """The key's state and every object indexed under it (``shredded`` once destroyed)."""
    report = state_of(request).service.data.shred_report(key, after=after, limit=limit)
    return ShredReportOut(
        key_id=report.key_id,
        key_name=report.key_name,
        status=report.status,
        shredded=report.shredded,
        destroyed_at=report.destroyed_at,
        objects=[_out(r) for r in report.objects],
        next_after=report.next_after,
    )
