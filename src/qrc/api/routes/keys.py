"""Key management routes: generate, list, read, rotate, retire versions, revoke, suspend,
resume, destroy."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from qrc.api.deps import require, state_of
from qrc.api.problems import Problem
from qrc.api.schemas import (
    KeyCreate,
    KeyList,
    KeyOut,
    KeyVersionList,
    KeyVersionOut,
    MinDecryptionVersionIn,
    RevokeIn,
    RotateIn,
)
from qrc.keys.access.tokens import Client, Role
from qrc.keys.context import SYSTEM_LABEL, KeyInfo

__all__ = ["key_out", "router"]

router = APIRouter(tags=["keys"])
Manager = Annotated[Client, require(Role.KEY_MANAGER)]
Reader = Annotated[Client, require(Role.KEY_MANAGER, Role.VIEWER, Role.CRYPTO_USER)]


def key_out(info: KeyInfo) -> KeyOut:
    """The API view of a key."""
    data = info.as_dict()
    data["public_key"] = data.pop("public_key_pem")
    data.pop("state", None)
    data["system"] = SYSTEM_LABEL in info.labels
    return KeyOut.model_validate(data)


def _visible(client: Client, info: KeyInfo) -> KeyInfo:
    # A crypto user sees only the keys its token lists, and "not found" for the others.
    if client.role is Role.CRYPTO_USER and not client.may_use(info.id):
        raise Problem("key-not-found", f"no key with ID or name {info.name!r}")
    return info


@router.post(
    "/keys/generate",
    status_code=201,
    response_model=KeyOut,
    response_model_exclude_none=True,
    summary="Create a key",
)
def generate_key(body: KeyCreate, client: Manager, request: Request) -> KeyOut:
    """Create a key (hybrid algorithm by default for its purpose) and its first version."""
    service = state_of(request).service
    info = service.keys.create_key(
        name=body.name,
        purpose=body.purpose,
        algorithm=body.algorithm,
        expires_at=body.expires_at,
        rotation_period=timedelta(days=body.rotation_period_days)
        if body.rotation_period_days
        else None,
        labels=body.labels,
        activate=body.activate,
        actor=client.actor,
    )
    return key_out(info)


@router.get("/keys", response_model=KeyList, response_model_exclude_none=True, summary="List keys")
def list_keys(
    client: Reader,
    request: Request,
    status: Annotated[str | None, Query(max_length=40)] = None,
    purpose: Annotated[str | None, Query(max_length=40)] = None,
    algorithm: Annotated[str | None, Query(max_length=64)] = None,
    name_prefix: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> KeyList:
    """Keys, filtered and paged (``next_cursor`` fetches the next page)."""
    keys, next_cursor = state_of(request).service.keys.list_keys(
        status=status,
        purpose=purpose,
        algorithm=algorithm,
        name_prefix=name_prefix,
        limit=limit,
        after=cursor,
    )
    if client.role is Role.CRYPTO_USER:
        keys = [k for k in keys if client.may_use(k.id)]
    return KeyList(keys=[key_out(k) for k in keys], next_cursor=next_cursor)


@router.get(
    "/keys/{key}", response_model=KeyOut, response_model_exclude_none=True, summary="Read a key"
)
def get_key(key: str, client: Reader, request: Request) -> KeyOut:
    """A key by ID or name."""
    return key_out(_visible(client, state_of(request).service.keys.get_key(key)))


@router.get(
    "/keys/{key}/versions",
    response_model=KeyVersionList,
    response_model_exclude_none=True,
    summary="A key's versions",
)
def key_versions(key: str, client: Reader, request: Request) -> KeyVersionList:
    """Every version of a key, newest first: algorithm, creation time, what it may still do."""
    service = state_of(request).service
    _visible(client, service.keys.get_key(key))
    versions = service.keys.versions(key)
    return KeyVersionList(versions=[KeyVersionOut.model_validate(vars(v)) for v in versions])


@router.get(
    "/keys/{key}/public",
    summary="A key's public key (PEM)",
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def get_public_key(
    key: str,
    client: Reader,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """The SPKI PEM public key of the primary (or given) version."""
    service = state_of(request).service
    info = _visible(client, service.keys.get_key(key))
    if info.public_key_pem is None:
        raise Problem("operation-not-permitted", f"{info.algorithm} keys have no public key")
    return Response(
        service.crypto.public_key_pem(info.id, version), media_type="application/x-pem-file"
    )


@router.post(
    "/keys/{key}/rotate", response_model=KeyOut, response_model_exclude_none=True, summary="Rotate"
)
def rotate_key(key: str, client: Manager, request: Request, body: RotateIn | None = None) -> KeyOut:
    """Add a version and make it primary; older versions still decrypt and verify.

    With ``{"expected_version": N}`` the rotation happens only if the primary version is
    still N (else 409 ``conflict``): of several callers racing, exactly one rotates.
    With ``{"algorithm": "X25519MLKEM768"}`` the new version uses that algorithm (fit for
    the key's purpose and active); older versions keep theirs.
    """
    expected = body.expected_version if body is not None else None
    algorithm = body.algorithm if body is not None else None
    return key_out(
        state_of(request).service.keys.rotate(
            key, actor=client.actor, expected_version=expected, algorithm=algorithm
        )
    )


@router.post(
    "/keys/{key}/min-decryption-version",
    response_model=KeyOut,
    response_model_exclude_none=True,
    summary="Retire old versions",
)
def set_min_decryption_version(
    key: str, body: MinDecryptionVersionIn, client: Manager, request: Request
) -> KeyOut:
    """Versions below ``version`` no longer decrypt or verify (1 ≤ version ≤ primary)."""
    service = state_of(request).service
    return key_out(service.keys.set_min_decryption_version(key, body.version, actor=client.actor))


@router.post(
    "/keys/{key}/revoke", response_model=KeyOut, response_model_exclude_none=True, summary="Revoke"
)
def revoke_key(key: str, body: RevokeIn, client: Manager, request: Request) -> KeyOut:
    """Revoke: ``key_compromise`` makes the key compromised, the other reasons deactivate it."""
    return key_out(state_of(request).service.keys.revoke(key, body.reason, actor=client.actor))


@router.post(
    "/keys/{key}/suspend",
    response_model=KeyOut,
    response_model_exclude_none=True,
    summary="Suspend",
)
def suspend_key(key: str, client: Manager, request: Request) -> KeyOut:
    """Stop all use until resumed."""
    return key_out(state_of(request).service.keys.suspend(key, actor=client.actor))


@router.post(
    "/keys/{key}/resume", response_model=KeyOut, response_model_exclude_none=True, summary="Resume"
)
def resume_key(key: str, client: Manager, request: Request) -> KeyOut:
    """Make a suspended key active again."""
    return key_out(state_of(request).service.keys.resume(key, actor=client.actor))


@router.delete(
    "/keys/{key}",
    response_model=KeyOut,
    response_model_exclude_none=True,
    summary="Schedule destruction",
)
def destroy_key(
    key: str,
    client: Manager,
    request: Request,
    days: Annotated[float | None, Query(ge=0, le=3650, description="waiting period")] = None,
) -> KeyOut:
    """Schedule crypto-shredding after the waiting period (default 7 days); cancellable."""
    delay = timedelta(days=days) if days is not None else None
    return key_out(
        state_of(request).service.keys.schedule_destruction(key, actor=client.actor, delay=delay)
    )


@router.post(
    "/keys/{key}/cancel-destruction",
    response_model=KeyOut,
    response_model_exclude_none=True,
    summary="Cancel a scheduled destruction",
)
def cancel_destruction(key: str, client: Manager, request: Request) -> KeyOut:
    """Undo ``DELETE /keys/{key}`` before it runs."""
    return key_out(state_of(request).service.keys.cancel_destruction(key, actor=client.actor))
