"""API clients: bearer tokens with a role and, for crypto users, the keys they may use.

A token is 256 random bits shown once (``qrc_`` + base64url); the store keeps only its
SHA-256 (a random 256-bit secret needs no slow hash). Lookup is by hash, so a wrong token
costs the same as a right one whichever part of it is wrong. Creating and revoking a token
commit together with their audit events (fail closed).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from qrc.keys.cache import BoundedCache, CacheStats
from qrc.keys.context import ServiceContext
from qrc.keys.errors import InvalidRequest, KeyNotFound
from qrc.keys.store.db import utcnow
from qrc.keys.store.models import ApiClient

__all__ = ["MAX_TOKEN_NAME", "Client", "Role", "TokenStore", "hash_token"]

_MAX_CACHED_TOKENS = 10_000
TOKEN_PREFIX = "qrc_"  # noqa: S105  # nosec B105 - a prefix, not a secret
_CLIENT_ID_PREFIX = "c_"
_CLIENT_ID_HEX = 16
# A token's audit actor is "token:<client id>:<name>" and an actor is at most 200 characters
# (qrc.keys.audit.format): a longer name would make every use of the token unauditable.
MAX_TOKEN_NAME = 200 - len("token::") - len(_CLIENT_ID_PREFIX) - _CLIENT_ID_HEX


class Role(enum.StrEnum):
    """What a token may do (``docs/api.md`` has the route table)."""

    ADMIN = "admin"
    KEY_MANAGER = "key_manager"
    CRYPTO_USER = "crypto_user"
    AUDITOR = "auditor"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Client:
    """An authenticated caller, as the API sees it."""

    id: str
    name: str
    role: Role
    allowed_keys: tuple[str, ...] | None  # None: every key (roles other than crypto_user)
    expires_at: datetime | None

    @property
    def actor(self) -> str:
        """How the caller appears in the audit chain."""
        return f"token:{self.id}:{self.name}"

    def may_use(self, key_id: str) -> bool:
        """Whether a crypto user's token lists this key (scopes hold key IDs, never names)."""
        return self.allowed_keys is None or key_id in self.allowed_keys


def hash_token(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_TOKEN_NAME:
        raise InvalidRequest(f"a token name is 1-{MAX_TOKEN_NAME} characters")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        raise InvalidRequest("a token name cannot contain control characters")


class TokenStore:
    """Create, authenticate and revoke API tokens (``service.tokens``).

    Successful authentications are cached for ``cache_seconds`` per process, so a busy
    client does not cost a database read per request; revocation in this process clears
    the cache at once, in other processes within ``cache_seconds``.
    """

    def __init__(self, ctx: ServiceContext, *, cache_seconds: float = 5.0) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self._cache: BoundedCache[bytes, Client] = BoundedCache(
            "tokens", _MAX_CACHED_TOKENS, ttl=cache_seconds
        )

    def create(
        self,
        *,
        name: str,
        role: str,
        actor: str,
        keys: list[str] | None = None,
        expires_in: timedelta | None = None,
    ) -> tuple[Client, str]:
        """A new token, audited in the same transaction; returns the client and the token
        (shown once, never stored)."""
        try:
            role_enum = Role(role)
        except ValueError:
            raise InvalidRequest(
                f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}"
            ) from None
        _check_name(name)
        if keys is not None and role_enum is not Role.CRYPTO_USER:
            raise InvalidRequest("only crypto_user tokens are limited to keys")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidRequest("expires_in must be positive")
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip(
            "="
        )
        now = utcnow()
        row = ApiClient(
            id=_CLIENT_ID_PREFIX + secrets.token_hex(_CLIENT_ID_HEX // 2),
            name=name,
            role=role_enum.value,
            token_hash=hash_token(token),
            allowed_keys=None,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        with self.db.session() as session:
            if keys is not None:
                # Bound to the keys' IDs now: a key created later under one of the names
                # (after a rename or a destruction) does not inherit the scope.
                row.allowed_keys = [self._key_id(session, ref) for ref in keys]
            client = self._client(row)
            session.add(row)
            session.flush()
            self.ctx.record(
                session,
                "token.create",
                actor,
                details={"client_id": client.id, "role": client.role.value},
            )
        return client, token

    def _key_id(self, session: Session, ref: str) -> str:
        try:
            return self.ctx.find(session, ref).id
        except KeyNotFound:
            raise InvalidRequest(f"no key {ref!r}: a token is limited to keys that exist") from None

    @staticmethod
    def _client(row: ApiClient) -> Client:
        keys = tuple(row.allowed_keys) if row.allowed_keys is not None else None
        return Client(row.id, row.name, Role(row.role), keys, row.expires_at)

    @property
    def cache_seconds(self) -> float:
        """How long an authenticated token is answered from memory."""
        return self._cache.ttl or 0.0

    @cache_seconds.setter
    def cache_seconds(self, seconds: float) -> None:
        self._cache.ttl = seconds

    def cache_stats(self) -> CacheStats:
        """How the token cache does."""
        return self._cache.stats()

    def cached(self, token: str) -> Client | None:
        """The client of ``token`` if authenticated recently (no database read), else ``None``."""
        client = self._cache.get(hash_token(token))
        if client is None:
            return None
        if client.expires_at is not None and client.expires_at <= utcnow():
            return None
        return client

    def authenticate(self, token: str) -> Client | None:
        """The client holding ``token``, or ``None`` (unknown, revoked or expired)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        digest = hash_token(token)
        client = self._cache.get(digest)
        if client is None:
            with self.db.read_session() as session:
                row = session.scalars(
                    select(ApiClient).where(ApiClient.token_hash == digest)
                ).first()
                if row is None or row.revoked_at is not None:
                    return None
                client = self._client(row)
            self._cache.put(digest, client)
        if client.expires_at is not None and client.expires_at <= utcnow():
            return None
        return client

    def revoke(self, client_id: str, *, actor: str) -> tuple[Client, datetime]:
        """Revoke a token by its client ID, audited; the client and when it was revoked."""
        with self.db.session() as session:
            row = session.get(ApiClient, client_id)
            if row is None:
                raise KeyNotFound(f"no token with ID {client_id!r}")
            if row.revoked_at is None:
                if row.role == Role.ADMIN.value and not self._other_admins(session, row.id):
                    raise InvalidRequest(
                        "this is the last admin token: create another admin token before "
                        "revoking it (nobody could manage tokens afterwards)"
                    )
                row.revoked_at = utcnow()
            client, revoked_at = self._client(row), row.revoked_at
            self.ctx.record(session, "token.revoke", actor, details={"client_id": client.id})
        self._cache.clear()
        return client, revoked_at

    def list(self) -> list[tuple[Client, datetime | None]]:
        """Every client and when it was revoked (if it was)."""
        with self.db.read_session() as session:
            rows = session.scalars(select(ApiClient).order_by(ApiClient.created_at))
            return [(self._client(row), row.revoked_at) for row in rows]

    @staticmethod
    def _other_admins(session: Session, client_id: str) -> bool:
        found = session.scalar(
            select(ApiClient.id).where(
                ApiClient.role == Role.ADMIN.value,
                ApiClient.revoked_at.is_(None),
                ApiClient.id != client_id,
            )
        )
        return found is not None

    def has_admin(self) -> bool:
        """Whether any unrevoked admin token exists."""
        with self.db.read_session() as session:
            found = session.scalar(
                select(ApiClient.id).where(
                    ApiClient.role == Role.ADMIN.value, ApiClient.revoked_at.is_(None)
                )
            )
        return found is not None
