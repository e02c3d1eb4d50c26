"""RFC 9457 problem details: every error the API returns, with a stable ``type``.

Bad input of any kind is a 4xx with a clear title; a 5xx is a bug, except 503 with
``Retry-After`` when a dependency is busy or down: the root KEK (HSM) unreachable, the store
locked, timed out or unreachable. No stack trace and no secret ever reaches a response, and
nothing the client sent reaches a log line unescaped.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qrc.crypto.errors import (
    AlgorithmNotAllowed,
    DecryptionError,
    InvalidSignature,
    KeyFormatError,
    UnsupportedAlgorithm,
)
from qrc.keys.custody.base import CustodyUnavailable
from qrc.keys.errors import (
    Conflict,
    InvalidRequest,
    KeyNotFound,
    KeyStateError,
    OperationNotPermitted,
)
from qrc.keys.store.db import STORE_ERRORS, StoreBusy

__all__ = [
    "PROBLEM_TYPES",
    "Problem",
    "install_problem_handlers",
    "printable",
    "problem_response",
    "store_problem",
]

logger = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:qrc:problem:"

# slug -> (status, title): the stable catalogue, also listed in docs/api.md.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "bad-request": (400, "The request is malformed"),
    "invalid-request": (422, "The request is not valid"),
    "malformed-json": (400, "The body is not valid JSON"),
    "unauthorized": (401, "Authentication required"),
    "forbidden": (403, "This token may not do that"),
    "not-found": (404, "No such resource"),
    "key-not-found": (404, "No such key"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflicting change"),
    "key-state": (409, "The key's state does not allow this"),
    "operation-not-permitted": (409, "The key may not be used this way"),
    "algorithm-not-allowed": (409, "The algorithm is not allowed by policy"),
    "decryption-failed": (400, "Decryption failed"),
    "invalid-key": (400, "The key material is not valid"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Send application/json"),
    "rate-limited": (429, "Too many requests"),
    "custody-unavailable": (503, "The root key encryption key is unreachable"),
    "store-unavailable": (503, "The key store is busy or unreachable"),
    "internal": (500, "Internal error"),
}


# Seconds a client is asked to wait when a dependency (store, HSM) is busy or down.
RETRY_AFTER_UNAVAILABLE = 1

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, limit: int = 200) -> str:
    """``text`` for a log line: control characters (C0, DEL, C1, line separators) escaped."""
    text = text[:limit]
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, slug: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(slug)
        self.slug, self.detail, self.extra = slug, detail, extra


def problem_response(
    slug: str, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON response for a problem of type ``slug``."""
    status, title = PROBLEM_TYPES[slug]
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_MAPPED: list[tuple[type[Exception], str]] = [
    (KeyNotFound, "key-not-found"),
    (KeyStateError, "key-state"),
    (OperationNotPermitted, "operation-not-permitted"),
    (Conflict, "conflict"),
    (InvalidRequest, "invalid-request"),
    (AlgorithmNotAllowed, "algorithm-not-allowed"),
    (UnsupportedAlgorithm, "invalid-request"),
    (DecryptionError, "decryption-failed"),
    (InvalidSignature, "decryption-failed"),
    (KeyFormatError, "invalid-key"),
    (CustodyUnavailable, "custody-unavailable"),
]
_HTTP_SLUGS = {
    400: "malformed-json",  # FastAPI's "There was an error parsing the body"
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
}


# SQLSTATEs of PostgreSQL that mean "busy or unreachable, try again": serialization failure,
# deadlock, lock not available (lock_timeout), query cancelled (statement_timeout), too many
# connections, server shutting down or starting; and every connection exception (class 08).
_PG_RETRYABLE = frozenset({"40001", "40P01", "55P03", "57014", "53300", "57P01", "57P02", "57P03"})
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")


def store_problem(exc: BaseException) -> str:
    """The problem type of a store error: unavailable (503), bad input (400) or a bug (500).

    Decided from the class and message of the database driver's exception (``.orig``),
    without importing the database libraries, and conservatively: what is not recognised
    as busy, unreachable or bad input stays an internal error.
    """
    kind = type(exc).__name__
    if isinstance(exc, StoreBusy):
        return "store-unavailable"
    if getattr(exc, "connection_invalidated", False) or kind in (
        "TimeoutError",
        "DisconnectionError",
    ):
        return "store-unavailable"  # a lost connection; the pool's checkout timeout
    orig = getattr(exc, "orig", None)
    if orig is None:
        return "internal"
    orig_kind, module = type(orig).__name__, type(orig).__module__
    message = str(orig).lower()
    if module.split(".")[0] in ("sqlite3", "_sqlite3", "pysqlite2"):
        if orig_kind == "OperationalError" and message.startswith(_SQLITE_BUSY):
            return "store-unavailable"
        return "internal"
    if module.split(".")[0] in ("psycopg", "psycopg2", "asyncpg", "pg8000"):
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(code, str) and (code in _PG_RETRYABLE or code.startswith("08")):
            return "store-unavailable"
        if code is None and orig_kind == "OperationalError":
            return "store-unavailable"  # no server answer: refused, reset, timed out
        if orig_kind == "DataError" and "nul (0x00)" in message:
            return "bad-request"  # PostgreSQL text cannot hold NUL: the client sent one
    return "internal"


def slug_for(exc: Exception) -> str | None:
    """The problem type of a domain exception, or ``None`` if it is not one of ours."""
    for cls, slug in _MAPPED:
        if isinstance(exc, cls):
            return slug
    return None


def detail_for(exc: Exception, slug: str) -> str | None:
    """What to tell the caller: nothing for opaque failures, the message otherwise."""
    if slug == "decryption-failed":
        return None  # one opaque failure, whatever went wrong
    if slug == "custody-unavailable":
        return "the key service cannot reach its root KEK (HSM); retry later"
    if slug == "store-unavailable":
        return "the key store is busy or unreachable; retry later"
    if slug == "bad-request":
        return "text values may not contain NUL characters"
    return str(exc)[:500] or None


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for error in exc.errors()[:20]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        errors.append({"location": location, "message": str(error.get("msg", ""))[:200]})
    if any(e["message"].startswith("JSON decode error") for e in errors):
        return "malformed-json", errors
    return "invalid-request", errors


def _problem_headers(problem: Problem) -> dict[str, str] | None:
    headers = {}
    if problem.slug == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="qrc"'
    if "retry_after" in problem.extra:
        headers["Retry-After"] = str(max(1, math.ceil(float(problem.extra["retry_after"]))))
    return headers or None


def _answer(problem: Problem) -> JSONResponse:
    return problem_response(
        problem.slug, problem.detail, headers=_problem_headers(problem), **problem.extra
    )


def _domain_answer(exc: Exception) -> JSONResponse:
    slug = slug_for(exc) or "internal"
    if isinstance(exc, STORE_ERRORS):
        slug = store_problem(exc)
    detail = detail_for(exc, slug) if slug != "internal" else None
    if PROBLEM_TYPES[slug][0] == 503:
        return problem_response(slug, detail, headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})
    return problem_response(slug, detail)


async def _authentication_problem(request: Request) -> JSONResponse | None:
    """The 401/403/429 the route's role dependency would answer, or ``None`` if it admits."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for dependency in getattr(dependant, "dependencies", ()):
        check = getattr(dependency, "call", None)
        if check is not None and hasattr(check, "allowed_roles"):
            try:
                await check(request)
            except Problem as problem:
                return _answer(problem)
            except Exception as exc:
                if not isinstance(exc, (*STORE_ERRORS, CustodyUnavailable)):
                    raise
                return _domain_answer(exc)
    return None


def install_problem_handlers(app: FastAPI) -> None:
    """Map every exception to a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return _answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI parses the body before it resolves the role dependency: authenticate
        # first anyway, so that an anonymous caller learns nothing about validation (and
        # the failure is recorded like any other).
        refused = await _authentication_problem(request)
        if refused is not None:
            return refused
        slug, errors = _validation_detail(exc)
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:3])
        return problem_response(slug, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _HTTP_SLUGS.get(exc.status_code, "invalid-request")
        headers = dict(exc.headers or {})
        detail = exc.detail if isinstance(exc.detail, str) and slug != "not-found" else None
        return problem_response(slug, detail, headers=headers or None)

    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        answer = _domain_answer(exc)
        if answer.status_code == 500:
            _log_unhandled(request, exc)
        return answer

    # One handler per domain error class: they run inside the exception middleware, so the
    # error is answered and done with (a handler for Exception itself would re-raise).
    for cls in (*(cls for cls, _slug in _MAPPED), *STORE_ERRORS):
        app.add_exception_handler(cls, _domain)

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        _log_unhandled(request, exc)
        return problem_response("internal")


def _log_unhandled(request: Request, exc: Exception) -> None:
    logger.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        printable(request.method, 20),
        printable(request.url.path),
    )
