"""The dashboard's files at ``/``: SPA fallback, caching, CSP, and nothing shadowed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qrc.api import webapp
from tests.api.conftest import Api, assert_problem, running_api

INDEX = '<!doctype html><html><head><script type="module" src="/assets/index-abc123.js">'
INDEX += "</script></head><body><div id=root></div></body></html>"
SCRIPT = "console.log('dashboard')"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An app whose build directory holds a small fake build."""
    dist = tmp_path_factory.mktemp("web_dist")
    (dist / "assets").mkdir()
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-abc123.js").write_text(SCRIPT)
    (dist / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (dist.parent / "secret.txt").write_text("outside the build")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webapp, "WEB_DIST", dist)
        with running_api(tmp_path_factory.mktemp("web_api")) as api:
            yield api


@pytest.fixture(scope="module")
def unbuilt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An app whose build directory does not exist."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webapp, "WEB_DIST", tmp_path_factory.mktemp("empty") / "web_dist")
        with running_api(tmp_path_factory.mktemp("unbuilt_api")) as api:
            yield api


def _strict_csp(csp: str) -> None:
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no inline scripts, no eval
    assert "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'"


@pytest.mark.parametrize("path", ["/", "/index.html", "/keys/k_123", "/audit?page=2"])
def test_index_for_the_root_and_app_paths(web: Api, path: str) -> None:
    response = web.get(path, None, prefix=False)
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    _strict_csp(response.headers["content-security-policy"])


def test_hashed_assets_are_cached_for_long(web: Api) -> None:
    response = web.get("/assets/index-abc123.js", None, prefix=False)
    assert response.status_code == 200 and response.text == SCRIPT
    assert "javascript" in response.headers["content-type"]
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    _strict_csp(response.headers["content-security-policy"])
    favicon = web.get("/favicon.svg", None, prefix=False)
    assert favicon.status_code == 200 and favicon.headers["cache-control"] == "no-cache"


def test_head_answers_without_a_body(web: Api) -> None:
    response = web.call("HEAD", "/", None, prefix=False)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    "path", ["/assets/missing.js", "/assets/app", "/missing.png", "/assets/..%2f..%2fsecret.txt"]
)
def test_missing_files_are_404_not_the_app(web: Api, path: str) -> None:
    response = web.get(path, None, prefix=False)
    assert_problem(response, 404, "not-found")
    assert "outside the build" not in response.text


def test_the_api_and_service_pages_are_not_shadowed(web: Api) -> None:
    assert_problem(web.get("/no-such-route"), 404, "not-found")  # under the API prefix
    assert_problem(web.get("", None), 404, "not-found")  # the bare prefix is not the app
    assert_problem(web.get("/encrypt"), 405, "method-not-allowed")  # a POST-only route
    assert web.get("/keys").json()["keys"]
    assert "openapi" in web.get("/openapi.json", None, prefix=False).json()
    for page in ("/docs", "/redoc"):
        docs = web.get(page, None, prefix=False)
        assert docs.status_code == 200 and docs.text != INDEX
    assert web.get("/health", None, prefix=False).json()
    assert web.get("/metrics", "viewer", prefix=False).text.startswith("#")
    assert_problem(web.get("/metrics", None, prefix=False), 401, "unauthorized")
    assert web.call("POST", "/", None, prefix=False).status_code == 404  # GET and HEAD only
    redirected = web.get("/docs/", None, prefix=False, follow_redirects=False)
    assert redirected.status_code == 307 and redirected.headers["location"].endswith("/docs")


def test_without_a_build_the_root_says_how_to_make_one(unbuilt: Api) -> None:
    page = unbuilt.get("/", None, prefix=False, headers={"Accept": "text/html"})
    assert page.status_code == 404 and webapp.NOT_BUILT in page.text
    assert page.headers["content-type"].startswith("text/html")
    body = assert_problem(unbuilt.get("/keys/x", None, prefix=False), 404, "not-found")
    assert body["detail"] == webapp.NOT_BUILT
    assert unbuilt.get("/keys").status_code == 200  # the API works without it
    assert unbuilt.get("/docs", None, prefix=False).status_code == 200
