"""The FastAPI application: routes under ``/api/v1/security/qrc``, limits, metrics, errors."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qrc import __version__
from qrc.api.deps import AppState
from qrc.api.metrics import Metrics
from qrc.api.problems import TYPE_PREFIX, install_problem_handlers, problem_response
from qrc.api.routes import (
    audit,
    ca,
    compliance,
    crypto,
    dashboard,
    data,
    feed,
    inventory,
    keys,
    migration,
    policy,
    relay,
    risk,
    system,
    tokens,
)
from qrc.api.webapp import WebDashboard

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1/security/qrc"
DOCS_ASSETS = "/docs-assets"


# C0 controls (NUL included), DEL, C1 controls (U+0085 NEL included), line separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A Content-Length is digits only (RFC 9110 8.6); more than 18 of them is past any limit.
_LENGTH = re.compile(rb"[0-9]{1,18}")


class InputGate:
    """Refuse a path or query string with control characters: 400, before any route runs.

    No name, ID, actor, cursor or filter of the API contains one; let through, they reach
    the store (PostgreSQL refuses NUL in text) and the logs. Percent-encoded ones count.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_control(scope):
            refused = problem_response(
                "bad-request", "control characters are not allowed in the path or query"
            )
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_control(scope: Scope) -> bool:
    raw_path = scope.get("raw_path") or b""
    query = scope.get("query_string") or b""
    texts = (
        str(scope.get("path", "")),
        unquote(raw_path.decode("latin-1"), errors="replace"),
        unquote_plus(query.decode("latin-1"), errors="replace"),
    )
    return any(_CONTROL.search(text) for text in texts)


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, counting what actually arrives.

    The body is read here, before the application sees it, so that a body without a
    Content-Length (chunked) is cut off and answered 413 like a declared one (FastAPI
    would turn an exception raised while it reads the body into a 400). A Content-Length
    that is not a number is answered 400.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = problem_response("payload-too-large", f"the limit is {self.limit} bytes")
        if declared is not None:
            declared = declared.strip(b" \t")
            if not declared.isdigit() or not declared.isascii():
                bad = problem_response("bad-request", "Content-Length is not a number")
                await bad(scope, receive, send)
                return
            digits = declared.lstrip(b"0") or b"0"
            if not _LENGTH.fullmatch(digits) or int(digits) > self.limit:
                await too_large(scope, receive, send)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count each answer by method, route template and status, with its latency.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would wrap every read of
    the body in a task group of its own (a fifth of an encrypt request's CPU time).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the application raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(scope["method"], path, status, time.perf_counter() - start)
            if status >= 400:
                self.metrics.error(str(status))


# The API's routers, one per line, in the order the OpenAPI document lists them.
_ROUTERS = (
    keys,
    crypto,
    data,
    policy,
    migration,
    feed,
    audit,
    inventory,
    compliance,
    risk,
    dashboard,
    tokens,
    ca,
    relay,
    system,
)


def create_app(state: AppState) -> FastAPI:
    """The application over ``state`` (service, token store, settings, metrics)."""
    app = FastAPI(
        title="qrc",
        version=__version__,
        summary="Post-quantum key service: keys, encryption, signatures, audit.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    _serve_docs_offline(app)
    app.state.qrc = state
    state.service.observers.add(state.metrics)
    state.metrics.caches = state.service.cache_stats
    install_problem_handlers(app)
    for module in _ROUTERS:
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(system.router)  # /health, /ready and /metrics also at the root

    # The dashboard's files for GET requests no route answers (innermost: after the gates).
    app.add_middleware(WebDashboard, routes=app.router.routes, api_prefix=API_PREFIX)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    app.add_middleware(BodyLimit, limit=state.settings.max_body_bytes)
    app.add_middleware(InputGate)
    _document_problems(app)
    return app


def _docs_assets() -> Path:
    """Swagger UI and ReDoc files as the ``fastapi-offline`` package ships them."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline (Swagger UI and ReDoc files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


# The pages load only from this server: ReDoc's "powered by" logo, for one, is on a CDN.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def _self_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _DOCS_CSP
    return page


def _serve_docs_offline(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the package's own files: no CDN, no web
    fonts, so both work on a machine without internet (and leak nothing to third parties)."""
    assets = _docs_assets()
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _self_only(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="qrc API",
                swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                oauth2_redirect_url="/docs/oauth2-redirect",
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _self_only(
            get_redoc_html(
                openapi_url="/openapi.json",
                title="qrc API",
                redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )


def _document_problems(app: FastAPI) -> None:
    """Declare the problem+json answers in the OpenAPI document of every route."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        problem = {
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
            }
        }
        # Bearer tokens, declared here rather than by a per-request security dependency
        # (the Authorize button of /docs); the role dependency reads the header itself.
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API token: qrc_..."}
        }
        for route_path, path in schema.get("paths", {}).items():
            for operation in path.values():
                if not route_path.endswith(("/health", "/ready")):
                    operation["security"] = [{"bearer": []}]
                responses = operation.setdefault("responses", {})
                for status, description in (
                    ("400", "Bad request"),
                    ("401", "Unauthorized"),
                    ("403", "Forbidden"),
                    ("404", "Not found"),
                    ("409", "Conflict"),
                    ("413", "Payload too large"),
                    ("422", "Invalid request"),
                    ("429", "Rate limited"),
                    ("503", "A dependency (root KEK, store) is busy or down: see Retry-After"),
                ):
                    if status == "422":  # replaces FastAPI's own (application/json) entry
                        responses[status] = {"description": description, **problem}
                    responses.setdefault(status, {"description": description, **problem})
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)  # no longer referenced
        schemas.pop("ValidationError", None)
        schemas["ProblemOut"] = {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string", "example": TYPE_PREFIX + "key-not-found"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
            },
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
