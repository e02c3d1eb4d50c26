"""``/docs`` and ``/redoc`` from the package's own files: no other host is referenced."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from qrc.api.app import create_app
from qrc.api.deps import AppState
from qrc.keys.service import KeyService

# Any absolute URL or protocol-relative reference (src="//cdn...", url(https://...)).
EXTERNAL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.I)


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
def test_docs_pages_reference_only_this_server(service: KeyService, page: str, script: str) -> None:
    client = TestClient(create_app(AppState(service)))
    answer = client.get(page)
    assert answer.status_code == 200
    html = answer.text
    assert EXTERNAL.findall(html) == [], html
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(source.endswith(script) for source in sources), sources
    for source in sources:
        assert source.startswith("/"), source
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 1000 or source.endswith(".png")
