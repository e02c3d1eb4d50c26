"""Shared state and dependencies: the service, authentication, roles, rate limits.

Every route declares the roles it admits with :func:`require`; the table of routes and roles
(``ROUTE_ROLES``, filled as routes are declared) is what the role-walk test and
``docs/api.md`` check against.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from qrc.api.metrics import Metrics
from qrc.api.problems import Problem
from qrc.api.ratelimit import RateLimiter
from qrc.keys.access.tokens import TOKEN_PREFIX, Client, Role
from qrc.keys.observers import REQUEST_SOURCE
from qrc.keys.service import KeyService
from qrc.monitor.risk_config import RiskConfig
from qrc.transit.listener import HandshakeCounters

__all__ = [
    "ALL_ROLES",
    "ApiSettings",
    "AppState",
    "KnownTokens",
    "require",
    "source_of",
    "state_of",
]

ALL_ROLES = tuple(Role)


@dataclass(frozen=True)
class ApiSettings:
    """Limits and switches of one API instance (from :class:`qrc.server.config.Settings`)."""

    max_body_bytes: int = 1 << 20
    rate_limit_per_second: float = 500.0
    rate_limit_burst: float = 1000.0
    auth_failure_rate: float = 1.0
    """Failed authentications per second a source address may make on average (0: no limit)."""
    auth_failure_burst: float = 20.0
    """... and in a burst; beyond that the source is answered 429 before any database work."""
    tls_mode: str = "pq-only"


class KnownTokens:
    """Digests of the tokens that authenticated in this process in the last ``seconds``.

    A source address that keeps failing is refused before its token is looked up, unless
    the token is one of these: a real client behind the same address (a NAT, a proxy) as
    an attacker keeps working, and a guessed token never gets in here.
    """

    def __init__(self, seconds: float = 3600.0, max_tokens: int = 10_000) -> None:
        self.seconds, self.max_tokens = seconds, max_tokens
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def add(self, token: str) -> None:
        digest = self._digest(token)
        with self._lock:
            self._seen[digest] = time.monotonic()
            self._seen.move_to_end(digest)
            while len(self._seen) > self.max_tokens:
                self._seen.popitem(last=False)

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        digest = self._digest(token)
        with self._lock:
            seen = self._seen.get(digest)
            if seen is not None and time.monotonic() - seen >= self.seconds:
                del self._seen[digest]
                seen = None
        return seen is not None


@dataclass
class AppState:
    """What every request needs."""

    service: KeyService
    settings: ApiSettings = field(default_factory=ApiSettings)
    metrics: Metrics = field(default_factory=Metrics)
    limiter: RateLimiter | None = None
    ready_checks: dict[str, str] = field(default_factory=dict)
    # Failed authentications per source address (see ApiSettings.auth_failure_*).
    failure_limiter: RateLimiter | None = None
    known_tokens: KnownTokens = field(default_factory=KnownTokens)
    # TLS handshakes by group, signature and certificate (set when the service serves TLS).
    tls_counters: HandshakeCounters | None = None
    # The private CA's public files (CRLs, roots), and who a verified client certificate is:
    # its serial (hex) -> the API client it stands for (mutual TLS), or None.
    ca_dir: Path | None = None
    certificate_client: Callable[[str], Client | None] | None = None
    # The risk model (QRC_RISK_FILE, QRC_RISK_MIGRATION_YEARS); None: the built-in estimates.
    risk_config: RiskConfig | None = None

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(
                self.settings.rate_limit_per_second, self.settings.rate_limit_burst
            )
        if self.failure_limiter is None:
            self.failure_limiter = RateLimiter(
                self.settings.auth_failure_rate, self.settings.auth_failure_burst
            )


def state_of(request: Request) -> AppState:
    """The application's state."""
    state: AppState = request.app.state.qrc
    return state


_DUMMY = "qrc_" + "A" * 43
_MAX_TOKEN_LENGTH = 100


def source_of(request: Request) -> str:
    """The address failures are counted against: the peer's, an IPv6 peer's /64 network."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One IPv6 host usually holds a whole /64: one address each would be no limit.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _client_certificate(request: Request) -> str | None:
    """The serial (hex) of the client certificate verified during the TLS handshake."""
    extension = request.scope.get("extensions", {}).get("qrc.tls") or {}
    serial = extension.get("client_serial")
    return serial if isinstance(serial, str) else None


def _refuse_source(wait: float) -> Problem:
    return Problem(
        "rate-limited",
        f"too many failed authentications from this address: retry in {wait:.2f} s",
        retry_after=round(wait, 2),
    )


async def _authenticate(request: Request) -> Client:
    state = state_of(request)
    failures = state.failure_limiter
    if failures is None:  # set in __post_init__; a None here is a bug
        raise RuntimeError("the application state has no failure limiter")
    source = source_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    client = None
    if scheme.lower() == "bearer" and token:
        # A recently seen token is answered from memory, on the event loop; a database
        # read (or the audit of a failure) runs in the thread pool.
        client = state.service.tokens.cached(token)
        if client is None:
            # A source that keeps failing gets no database work, unless its token is one
            # that authenticated here before (checked again against the store below).
            wait = failures.wait(source)
            if wait > 0 and token not in state.known_tokens:
                raise _refuse_source(wait)
            if token.startswith(TOKEN_PREFIX) and len(token) <= _MAX_TOKEN_LENGTH:
                client = await run_in_threadpool(state.service.tokens.authenticate, token)
            if client is not None:
                state.known_tokens.add(token)
    else:
        serial = _client_certificate(request)
        if serial is not None and state.certificate_client is not None:
            # Mutual TLS: OpenSSL verified the chain, expiry and CRL during the handshake;
            # the certificate stands for an API client (its role and key scope).
            client = await run_in_threadpool(state.certificate_client, serial)
    if client is None and not (scheme.lower() == "bearer" and token):
        # Same work whether or not a token was sent: no timing hint about what is missing.
        hmac.compare_digest(_DUMMY, _DUMMY)
        wait = failures.wait(source)
        if wait > 0:
            raise _refuse_source(wait)
    if client is None:
        # Each failure spends from the source's bucket; while it has some left the failure
        # is audited (so a flood of bad tokens cannot flood the audit chain either).
        if failures.take(source) == 0:
            await run_in_threadpool(
                state.service.audit.record_auth_failure,
                source,
                "invalid" if token else "missing",
                request.url.path,
            )
        raise Problem("unauthorized", "send Authorization: Bearer <token> or a client certificate")
    wait = state.limiter.take(client.id) if state.limiter is not None else 0.0
    if wait > 0:
        raise Problem(
            "rate-limited", f"slow down: retry in {wait:.2f} s", retry_after=round(wait, 2)
        )
    request.state.client = client
    # The key uses this request makes record where it came from (anomaly detection).
    REQUEST_SOURCE.set(source)
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
