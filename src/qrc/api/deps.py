"""Shared state and dependencies: the service, authentication, roles, rate limits.

Every route declares the roles it admits with :func:`require`; the table of routes and roles
(``ROUTE_ROLES``, filled as routes are declared) is what the role-walk test and
``docs/api.md`` check against.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from qrc.api.metrics import Metrics
from qrc.api.problems import Problem
from qrc.api.ratelimit import RateLimiter
from qrc.keys.access.tokens import Client, Role
from qrc.keys.service import KeyService

__all__ = ["ALL_ROLES", "ApiSettings", "AppState", "require", "state_of"]

ALL_ROLES = tuple(Role)


@dataclass(frozen=True)
class ApiSettings:
    """Limits and switches of one API instance (from :class:`qrc.server.config.Settings`)."""

    max_body_bytes: int = 1 << 20
    rate_limit_per_second: float = 500.0
    rate_limit_burst: float = 1000.0
    tls_mode: str = "pq-only"


@dataclass
class AppState:
    """What every request needs."""

    service: KeyService
    settings: ApiSettings = field(default_factory=ApiSettings)
    metrics: Metrics = field(default_factory=Metrics)
    limiter: RateLimiter | None = None
    ready_checks: dict[str, str] = field(default_factory=dict)
    # Authentication failures recorded per source address: 1/s on average, bursts of 20.
    failure_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(1.0, 20.0))

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(
                self.settings.rate_limit_per_second, self.settings.rate_limit_burst
            )


def state_of(request: Request) -> AppState:
    """The application's state."""
    state: AppState = request.app.state.qrc
    return state


_DUMMY = "qrc_" + "A" * 43


async def _authenticate(request: Request) -> Client:
    state = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    client = None
    if scheme.lower() == "bearer" and token:
        # A recently seen token is answered from memory, on the event loop; a database
        # read (or the audit of a failure) runs in the thread pool.
        client = state.service.tokens.cached(token)
        if client is None:
            client = await run_in_threadpool(state.service.tokens.authenticate, token)
    else:
        # Same work whether or not a token was sent: no timing hint about what is missing.
        hmac.compare_digest(_DUMMY, _DUMMY)
    if client is None:
        source = request.client.host if request.client else "unknown"
        # A flood of bad tokens must not flood the audit chain: recording is limited per
        # source address (the refusal itself is not).
        if state.failure_limiter.take(source) == 0:
            await run_in_threadpool(
                state.service.audit.record_auth_failure,
                source,
                "invalid" if token else "missing",
                request.url.path,
            )
        raise Problem("unauthorized", "send Authorization: Bearer <token>")
    wait = state.limiter.take(client.id) if state.limiter is not None else 0.0
    if wait > 0:
        raise Problem(
            "rate-limited", f"slow down: retry in {wait:.2f} s", retry_after=round(wait, 2)
        )
    request.state.client = client
    return client


def require(*roles: Role) -> object:
    """A dependency admitting only the given roles (admin is always admitted)."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def dependency(request: Request) -> Client:
        client = await _authenticate(request)
        if client.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            await run_in_threadpool(
                state_of(request).service.audit.record_forbidden,
                client.actor,
                request.method,
                request.url.path,
            )
            raise Problem("forbidden", f"role {client.role.value} may not do this (needs {names})")
        return client

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]
    return Depends(dependency)
