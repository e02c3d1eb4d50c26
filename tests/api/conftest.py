"""Fixtures for the HTTP API tests: an app over a fresh SQLite store, in-process clients.

``api`` is module-scoped (one store, one app per test module and xdist worker), so every test
that changes state works on keys of its own (``api.unique(...)`` names). Every answer that
goes through :meth:`Api.call` is kept, so that a test can search all of them for key
material, and checked never to be a 5xx.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from qrc.api.app import API_PREFIX, create_app
from qrc.api.deps import ApiSettings, AppState
from qrc.keys.access.tokens import TokenStore
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import Argon2Params, LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

with warnings.catch_warnings():
    # Starlette asks for the ``httpx2`` fork; the ``httpx`` it finds works the same here.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# Same as tests/keys/conftest.py: the sealed-KEK tests need no real Argon2 cost.
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
B = API_PREFIX
PROBLEM_PREFIX = "urn:qrc:problem:"
ROLES = ("admin", "key_manager", "crypto_user", "auditor", "viewer")
# A key the restricted crypto user may use; every other key is hidden from it.
OTHER_KEY = "other-key"


@dataclass
class Api:
    """An app, its service and token store, a token per role, and a recording client."""

    app: Any
    service: KeyService
    clients: TokenStore
    http: TestClient
    tokens: dict[str, str]
    client_ids: dict[str, str]
    responses: list[httpx.Response] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, stem: str) -> str:
        """A key or token name no other test of the module uses."""
        return f"{stem}-{next(self._counter)}"

    def headers(self, role: str | None) -> dict[str, str]:
        """The Authorization header of ``role`` (a key of ``tokens``), none for ``None``."""
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(
        self,
        method: str,
        path: str,
        role: str | None = "admin",
        *,
        prefix: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request (``path`` under the API base path unless ``prefix`` is false)."""
        url = (B + path) if prefix else path
        response: httpx.Response = self.http.request(
            method, url, headers={**self.headers(role), **(headers or {})}, **kwargs
        )
        self.responses.append(response)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        return response

    def get(self, path: str, role: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, role, **kwargs)

    def post(self, path: str, role: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, role, **kwargs)

    def delete(self, path: str, role: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.call("DELETE", path, role, **kwargs)

    def create_key(self, stem: str, purpose: str = "encryption", **body: Any) -> dict[str, Any]:
        """A fresh key (as admin); returns the API's view of it."""
        response = self.post(
            "/keys/generate", json={"name": self.unique(stem), "purpose": purpose, **body}
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


def build_service(directory: Path) -> KeyService:
    """A key service over a fresh SQLite store and a local sealed KEK in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{directory / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(directory / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    return KeyService(db, Keyring(custody))


@contextmanager
def running_api(directory: Path, settings: ApiSettings | None = None) -> Iterator[Api]:
    """An :class:`Api` over a new store, with one token per role (and a restricted one)."""
    service = build_service(directory)
    clients = service.tokens
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    for role in ROLES:
        client, tokens[role] = clients.create(name=f"{role}-token", role=role, actor="test")
        ids[role] = client.id
    service.keys.create_key(name=OTHER_KEY, purpose="encryption", actor="test")
    client, tokens["crypto_user_limited"] = clients.create(
        name="limited-token", role="crypto_user", keys=[OTHER_KEY], actor="test"
    )
    ids["crypto_user_limited"] = client.id
    # The role walk fails authentication on purpose, many times from one address: no
    # per-source failure limit here (tests/api/test_auth_limits.py tests it).
    state = AppState(service, settings=settings or ApiSettings(auth_failure_rate=0))
    app = create_app(state)
    try:
        with TestClient(app, raise_server_exceptions=False) as http:
            yield Api(app, service, clients, http, tokens, ids)
    finally:
        service.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The module's app (default limits) and its tokens."""
    with running_api(tmp_path_factory.mktemp("api")) as api:
        yield api


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem of type ``slug`` with ``status``; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_PREFIX + slug, body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert "Traceback" not in response.text
    return body
