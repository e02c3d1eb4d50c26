"""API tokens: create (the secret shown once), list, revoke; and who the caller is."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Request

from qrc.api.deps import require, state_of
from qrc.api.schemas import (
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from qrc.keys.access.tokens import Client, Role

__all__ = ["router"]

router = APIRouter()
Admin = Annotated[Client, require()]
Anyone = Annotated[Client, require(*Role)]


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="Create an API token",
)
def create_token(body: TokenCreate, client: Admin, request: Request) -> TokenCreated:
    """A new token; the secret is in this answer only."""
    expires = timedelta(seconds=body.expires_in) if body.expires_in else None
    created, token = state_of(request).service.tokens.create(
        name=body.name, role=body.role, keys=body.keys, expires_in=expires, actor=client.actor
    )
    return TokenCreated(
        id=created.id,
        name=created.name,
        role=created.role.value,
        keys=list(created.allowed_keys) if created.allowed_keys is not None else None,
        expires_at=created.expires_at,
        token=token,
    )


@router.get(
    "/tokens",
    response_model=TokenList,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="List API tokens",
)
def list_tokens(client: Admin, request: Request) -> TokenList:
    """Every token's metadata (never the secret)."""
    out = [
        TokenOut(
            id=c.id,
            name=c.name,
            role=c.role.value,
            keys=list(c.allowed_keys) if c.allowed_keys is not None else None,
            expires_at=c.expires_at,
            revoked_at=revoked,
        )
        for c, revoked in state_of(request).service.tokens.list()
    ]
    return TokenList(tokens=out)


@router.get(
    "/tokens/self",
    response_model=TokenOut,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="The calling token",
)
def token_self(client: Anyone) -> TokenOut:
    """The caller's own token (or the token its client certificate stands for): its ID,
    name, role, key scope and expiry, so that a client can tell what it may do."""
    return TokenOut(
        id=client.id,
        name=client.name,
        role=client.role.value,
        keys=list(client.allowed_keys) if client.allowed_keys is not None else None,
        expires_at=client.expires_at,
    )


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenOut,
    response_model_exclude_none=True,
    tags=["tokens"],
    summary="Revoke an API token",
)
def revoke_token(token_id: str, client: Admin, request: Request) -> TokenOut:
    """Revoke at once in this process (other processes within seconds)."""
    revoked, revoked_at = state_of(request).service.tokens.revoke(token_id, actor=client.actor)
    return TokenOut(
        id=revoked.id, name=revoked.name, role=revoked.role.value, revoked_at=revoked_at
    )
