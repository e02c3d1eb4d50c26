"""RFC 9457 problem details: every error the API returns, with a stable ``type``.

Bad input of any kind is a 4xx with a clear title; a 5xx is a bug, except 503 when the root
KEK is unreachable. No stack trace and no secret ever reaches a response.
"""

from __future__ import annotations

import logging
import math
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

__all__ = ["PROBLEM_TYPES", "Problem", "install_problem_handlers", "problem_response"]

logger = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:qrc:problem:"

# slug -> (status, title): the stable catalogue, also listed in docs/api.md.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
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
    "internal": (500, "Internal error"),
}


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
    return str(exc)[:500] or None


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for error in exc.errors()[:20]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        errors.append({"location": location, "message": str(error.get("msg", ""))[:200]})
    if any(e["message"].startswith("JSON decode error") for e in errors):
        return "malformed-json", errors
    return "invalid-request", errors


async def _authentication_problem(request: Request) -> JSONResponse | None:
    """The 401/403 the route's role dependency would answer, or ``None`` if it admits."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for dependency in getattr(dependant, "dependencies", ()):
        check = getattr(dependency, "call", None)
        if check is not None and hasattr(check, "allowed_roles"):
            try:
                await check(request)
            except Problem as problem:
                headers = {"WWW-Authenticate": 'Bearer realm="qrc"'}
                if problem.slug != "unauthorized":
                    headers = {}
                return problem_response(problem.slug, problem.detail, headers=headers or None)
    return None


def install_problem_handlers(app: FastAPI) -> None:
    """Map every exception to a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        headers = {}
        if exc.slug == "unauthorized":
            headers["WWW-Authenticate"] = 'Bearer realm="qrc"'
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(max(1, math.ceil(float(exc.extra["retry_after"]))))
        return problem_response(exc.slug, exc.detail, headers=headers or None, **exc.extra)

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
        slug = slug_for(exc) or "internal"
        return problem_response(slug, detail_for(exc, slug))

    # One handler per domain error class: they run inside the exception middleware, so the
    # error is answered and done with (a handler for Exception itself would re-raise).
    for cls, _slug in _MAPPED:
        app.add_exception_handler(cls, _domain)

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return problem_response("internal")
