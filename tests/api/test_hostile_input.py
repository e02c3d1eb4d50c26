"""Hostile paths, query values and Content-Length values: a 4xx problem document, never a
5xx, and nothing unescaped in the logs.

Control characters (NUL, U+0085 NEL, ESC, line separators) in every path segment and query
value of every GET route, as a viewer and as an admin, on SQLite and on PostgreSQL (which
refuses NUL in text: before the input gate that was a 500); then over real sockets against
the API served by Daphne, reading its access and error logs.
"""

from __future__ import annotations

import re
import socket
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import quote

import pytest

from qrc.api.app import BodyLimit, create_app
from qrc.api.deps import ApiSettings, AppState
from qrc.api.problems import printable
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.transit.client import PQClient
from tests.api.api_server import ApiProcess
from tests.api.conftest import FAST_ARGON2, PROBLEM_PREFIX
from tests.keys.pg import fresh_database

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

HOSTILE = ["\x00", "a\x00b", "\u0085", "x\u0085y", "\x1b[31m", "\u2028", "\x7f", "\n"]
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def http(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("hostile")

    def serve(url: str) -> Iterator[Any]:
        db = Database(url)
        db.upgrade()
        custody = LocalCustody.create(directory / "kek.sealed", "p", params=FAST_ARGON2)
        service = KeyService(db, Keyring(custody))
        tokens = {
            role: service.tokens.create(name=f"{role}-t", role=role, actor="test")[1]
            for role in ("admin", "viewer")
        }
        app = create_app(AppState(service, ApiSettings(auth_failure_rate=0)))
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                client.tokens = tokens
                yield client
        finally:
            service.close()

    if request.param == "sqlite":
        yield from serve(f"sqlite:///{directory / 'qrc.db'}")
    else:
        with fresh_database() as url:
            yield from serve(url)


def _get_routes(http: Any) -> list[tuple[str, list[str], list[str]]]:
    """(path template, path parameters, query parameters) of every GET operation."""
    routes = []
    for path, operations in http.get("/openapi.json").json()["paths"].items():
        if "get" not in operations:
            continue
        parameters = operations["get"].get("parameters", [])
        routes.append(
            (
                path,
                [p["name"] for p in parameters if p["in"] == "path"],
                [p["name"] for p in parameters if p["in"] == "query"],
            )
        )
    assert len(routes) > 10
    return routes


def _check(response: Any) -> None:
    assert response.status_code < 500, (response.request.url, response.text)
    assert response.status_code == 400, (response.request.url, response.text)
    body = response.json()
    assert body["type"] == PROBLEM_PREFIX + "bad-request"
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_control_characters_in_every_get_route(http: Any, role: str) -> None:
    headers = {"Authorization": f"Bearer {http.tokens[role]}"}
    for path, path_params, query_params in _get_routes(http):
        for value in HOSTILE:
            encoded = quote(value, safe="")
            if path_params:
                url = path
                for name in path_params:
                    url = url.replace("{" + name + "}", encoded)
                _check(http.get(url, headers=headers))
            concrete = path
            for name in path_params:
                concrete = concrete.replace("{" + name + "}", "some-key")
            for name in query_params:
                _check(http.get(f"{concrete}?{name}={encoded}", headers=headers))


def test_ordinary_values_still_pass(http: Any) -> None:
    headers = {"Authorization": f"Bearer {http.tokens['viewer']}"}
    answer = http.get("/api/v1/security/qrc/keys/no%20such%20key", headers=headers)
    assert answer.status_code == 404
    assert (
        http.get("/api/v1/security/qrc/keys?purpose=encryption", headers=headers).status_code == 200
    )


def test_log_lines_escape_control_characters() -> None:
    assert printable("/keys/\x00\x1b[31m\u0085\u2028é") == "/keys/\\x00\\x1b[31m\\x85\\u2028é"
    assert len(printable("x" * 10_000)) == 200


async def _body_limit(length: bytes) -> tuple[int, dict[str, Any]]:
    import json

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never reached")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", length)],
    }
    await BodyLimit(app, 1000)(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.parametrize(
    ("length", "status"),
    [
        (b"abc", 400),
        (b"-1", 400),
        ("\u0661\u0662".encode(), 400),
        ("\u00b2".encode(), 400),
        (b"1e3", 400),
        (b"9" * 5000, 413),
        (b"100000000000000000000000", 413),
        (b"0" * 40 + b"5000", 413),
    ],
)
def test_the_app_answers_any_content_length(length: bytes, status: int) -> None:
    import asyncio

    answered, body = asyncio.run(_body_limit(length))
    assert answered == status and body["status"] == status


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path_factory.mktemp("hostile-server") / "data")
    yield process
    process.stop()


def _raw(server: ApiProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_over_real_sockets_no_5xx_and_clean_logs(server: ApiProcess) -> None:
    token = server.tokens["viewer"]
    base = "/api/v1/security/qrc"
    targets = [
        f"{base}/keys/%00",
        f"{base}/keys/%C2%85",
        f"{base}/keys/%00/public",
        f"{base}/keys/%C2%85/public",
        f"{base}/keys?purpose=%00",
        f"{base}/keys?cursor=%C2%85",
        f"{base}/audit/logs?key=%00",
        f"{base}/keys/%1B%5B31m",
    ]
    for target in targets:
        answer = _raw(
            server,
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, (target, answer[:300])
    # Raw control bytes in the request target (not percent-encoded).
    answer = _raw(
        server,
        b"GET /api/v1/security/qrc/keys/\x1b[31mred\x01 HTTP/1.1\r\n"
        b"Host: x\r\nConnection: close\r\n\r\n",
    )
    assert 400 <= int(answer.split(b" ", 2)[1]) < 500, answer[:300]
    # A body over the app's limit (1 MiB) but under the transport's: the app's problem.
    with PQClient(server.url, token=server.tokens["admin"]) as client:
        big = client.post(
            f"{base}/encrypt", body=b"x" * (2 << 20), headers={"Content-Type": "application/json"}
        )
        assert big.status == 413 and big.json()["type"] == PROBLEM_PREFIX + "payload-too-large"
    output = server.output()
    assert "/keys/\\x1b[31m" in output or "%1B" in output
    assert not RAW_CONTROL.search(output), [
        line for line in output.splitlines() if RAW_CONTROL.search(line)
    ]
