"""The web dashboard's files, served at ``/`` beside the API (same origin, no CORS).

``make web`` builds the React app (``web/``) into ``src/qrc/api/web_dist``. A GET or HEAD
request that no route of the application answers is served from there:

- ``/assets/...``: Vite's content-hashed files, cached for a year (``immutable``);
- another file at the top of the build (``favicon.svg``...): cached, revalidated each time;
- any other path without a file extension: ``index.html`` (the single-page app routes in
  the browser), never cached, so a new build shows at the next load;
- a missing file with an extension, or anything under ``/assets``: ``404``.

The API (``/api/...``), ``/docs``, ``/redoc``, ``/openapi.json``, ``/health``, ``/ready``
and ``/metrics`` are routes and keep answering as before: this layer only sees requests
that would have been ``404``. Every answer it gives carries a Content-Security-Policy
that allows only this origin, with no inline script. Without a build, ``/`` says how to
make one (``404``): the API works without the dashboard.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from qrc.api.problems import problem_response

__all__ = ["NOT_BUILT", "WEB_DIST", "WebDashboard", "security_headers"]

WEB_DIST = Path(__file__).with_name("web_dist")
"""Where ``make web`` puts the built dashboard."""

NOT_BUILT = "dashboard not built: install Node 20 and run make web"

# Only this origin; no inline script or style element; no framing; no plugins.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
_INDEX = "index.html"
_ASSETS = "assets/"


def security_headers() -> dict[str, str]:
    """Headers of every answer of the dashboard's files."""
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


_NOT_BUILT_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qrc: dashboard not built</title></head>
<body><h1>qrc</h1><p>{NOT_BUILT}.</p>
<p>The API works without it: <a href="/docs">/docs</a>.</p></body></html>
"""


class WebDashboard:
    """ASGI middleware: the dashboard's files for GET/HEAD requests that no route matches.

    ``routes`` are the application's routes (consulted per request, so routes added later
    count); ``api_prefix`` is never served from here, even where no route matches, so an
    unknown API path stays an API ``404``. ``directory`` defaults to :data:`WEB_DIST`.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        api_prefix: str,
        directory: Path | None = None,
    ) -> None:
        self.app, self.routes, self.api_prefix = app, routes, api_prefix.rstrip("/")
        self.directory = directory if directory is not None else WEB_DIST
        self.files = StaticFiles(directory=self.directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._is_web(scope):
            response = self._respond(scope)
            response.headers.update(security_headers())
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _is_web(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return False
        path: str = scope["path"]
        if path == self.api_prefix or path.startswith(self.api_prefix + "/"):
            return False
        if self._routed(scope):
            return False
        # The router redirects /docs/ to /docs (and the reverse): leave those to it as well.
        other = path[:-1] if path.endswith("/") else path + "/"
        return path == "/" or not self._routed({**scope, "path": other})

    def _routed(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self.routes)

    def _respond(self, scope: Scope) -> Response:
        relative = str(scope["path"]).lstrip("/")
        if relative and relative != _INDEX:
            found = self._file(relative, scope)
            if found is not None:
                cache = _IMMUTABLE if relative.startswith(_ASSETS) else _REVALIDATE
                found.headers["Cache-Control"] = cache
                return found
            last = relative.rsplit("/", 1)[-1]
            if relative.startswith(_ASSETS) or "." in last:
                return problem_response("not-found", f"no file {scope['path']}")
        index = self._file(_INDEX, scope)
        if index is None:
            return self._not_built(scope)
        index.headers["Cache-Control"] = _REVALIDATE
        return index

    def _file(self, relative: str, scope: Scope) -> Response | None:
        """The file at ``relative`` under the build (never outside it), or ``None``."""
        full, stat = self.files.lookup_path(relative)
        if stat is None or not os.path.isfile(full):
            return None
        return self.files.file_response(full, stat, scope)

    @staticmethod
    def _not_built(scope: Scope) -> Response:
        if "text/html" in Headers(scope=scope).get("accept", ""):
            return HTMLResponse(_NOT_BUILT_PAGE, status_code=404)
        return problem_response("not-found", NOT_BUILT)
