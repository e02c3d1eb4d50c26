"""Every route with every role, a wrong token and no token.

The table below is written by hand from the issue's role descriptions (and docs/api.md shows
the same table); it is *not* read from the code. A route the app serves that is not in the
table fails :func:`test_table_covers_every_route`, so a new route needs a deliberate entry.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from qrc.api.problems import PROBLEM_TYPES
from tests.api.conftest import OTHER_KEY, ROLES, Api, B, assert_problem

ADMIN, KM, CU, AU, VW = ROLES
PUBLIC = None  # no token needed
EVERYONE = frozenset(ROLES)


def roles(*names: str) -> frozenset[str]:
    """``names`` plus admin, who may do everything."""
    return frozenset({ADMIN, *names})


# (method, path) -> the roles admitted, or PUBLIC.
TABLE: dict[tuple[str, str], frozenset[str] | None] = {
    # documentation and probes: open
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", B + "/health"): PUBLIC,
    ("GET", B + "/ready"): PUBLIC,
    # metrics: any valid token (the scraper gets a viewer token)
    ("GET", "/metrics"): EVERYONE,
    ("GET", B + "/metrics"): EVERYONE,
    # key management: key managers change keys; key readers see metadata and public keys
    ("POST", B + "/keys/generate"): roles(KM),
    ("GET", B + "/keys"): roles(KM, CU, VW),
    ("GET", B + "/keys/{key}"): roles(KM, CU, VW),
    ("GET", B + "/keys/{key}/public"): roles(KM, CU, VW),
    ("GET", B + "/keys/{key}/versions"): roles(KM, CU, VW),
    ("POST", B + "/keys/{key}/rotate"): roles(KM),
    ("POST", B + "/keys/{key}/min-decryption-version"): roles(KM),
    ("POST", B + "/keys/{key}/revoke"): roles(KM),
    ("POST", B + "/keys/{key}/suspend"): roles(KM),
    ("POST", B + "/keys/{key}/resume"): roles(KM),
    ("DELETE", B + "/keys/{key}"): roles(KM),
    ("POST", B + "/keys/{key}/cancel-destruction"): roles(KM),
    # cryptographic operations: crypto users (on the keys their token lists)
    ("POST", B + "/encrypt"): roles(CU),
    ("POST", B + "/decrypt"): roles(CU),
    ("POST", B + "/sign"): roles(CU),
    ("POST", B + "/verify"): roles(CU),
    ("POST", B + "/rewrap"): roles(CU),
    ("POST", B + "/datakey"): roles(CU),
    ("POST", B + "/encrypt/batch"): roles(CU),
    ("POST", B + "/decrypt/batch"): roles(CU),
    ("POST", B + "/sign/batch"): roles(CU),
    ("POST", B + "/verify/batch"): roles(CU),
    # encrypted-data index: writers register and record rewraps; managers and auditors read
    ("POST", B + "/data/index"): roles(CU),
    ("GET", B + "/data/index"): roles(KM, CU, AU),
    ("GET", B + "/data/index/object"): roles(KM, AU),
    ("POST", B + "/data/index/rewrapped"): roles(CU),
    ("GET", B + "/data/shred-report"): roles(KM, AU),
    # algorithm status: everyone may read it
    ("GET", B + "/algorithms/status"): EVERYONE,
    # the threat feed as accepted: key managers, auditors and viewers read it
    ("GET", B + "/protocols/feed"): roles(KM, AU, VW),
    # policy and tokens: admin only
    ("POST", B + "/protocols/update"): roles(),
    ("POST", B + "/protocols/feed"): roles(),
    # migration off an algorithm: auditors read the plan; only admins run it
    ("GET", B + "/migration/plan"): roles(AU),
    ("POST", B + "/migration/run"): roles(),
    ("POST", B + "/tokens"): roles(),
    ("GET", B + "/tokens"): roles(),
    ("GET", B + "/tokens/self"): EVERYONE,
    ("DELETE", B + "/tokens/{token_id}"): roles(),
    # audit: auditors (read only)
    ("GET", B + "/audit/logs"): roles(AU),
    ("GET", B + "/audit/verify"): roles(AU),
    ("GET", B + "/security/events"): roles(AU),
    # the cryptographic inventory (CBOM): auditors read it
    ("GET", B + "/inventory"): roles(AU),
    # the compliance report (JSON, HTML, PDF): auditors read it
    ("GET", B + "/compliance/report"): roles(AU),
    # harvest-now-decrypt-later risk: auditors read it; the parameter advisor: any role
    ("GET", B + "/risk"): roles(AU),
    ("POST", B + "/advisor"): EVERYONE,
    # the security dashboard: operators and auditors read it; crypto users (key-scoped) do not
    ("GET", B + "/dashboard"): roles(KM, AU, VW),
    # the CA's certificates and revocation lists: public, like any CA's
    ("GET", B + "/ca/crl/{family}"): PUBLIC,
    ("GET", B + "/ca/trust"): PUBLIC,
    # agent-message relay: crypto users send; a queue is read by its own agent's token
    ("POST", B + "/relay/messages"): roles(CU),
    ("GET", B + "/relay/messages"): roles(CU),
    ("POST", B + "/relay/messages/ack"): roles(CU),
}

# Routes that name one of the walk's keys: the restricted crypto user must not see it.
KEY_SCOPED = {
    (m, p)
    for (m, p) in TABLE
    if "{key}" in p
    or p.removeprefix(B) in ("/encrypt", "/decrypt", "/sign", "/verify", "/rewrap", "/datakey")
    or (m, p.removeprefix(B))
    in (("POST", "/data/index"), ("GET", "/data/index"), ("POST", "/data/index/rewrapped"))
}
BATCHES = {("POST", B + f"/{op}/batch") for op in ("encrypt", "decrypt", "sign", "verify")}
# Routes whose success depends on the key's state: repeating them fails (409), which is fine.
# DELETE /tokens/{token_id} names no real token (404): the walk must not revoke its own.
STATEFUL = {
    ("POST", B + "/keys/{key}/revoke"),
    ("POST", B + "/keys/{key}/suspend"),
    ("POST", B + "/keys/{key}/resume"),
    ("POST", B + "/keys/{key}/cancel-destruction"),
    ("DELETE", B + "/keys/{key}"),
    ("DELETE", B + "/tokens/{token_id}"),
    ("POST", B + "/protocols/feed"),  # 409 unless QRC_FEED_PUBLISHER_KEY is configured
}
CALLERS = (None, "wrong", *ROLES, "crypto_user_limited")
# The walk reads the queue of the agent named like the crypto user's token: another token
# (the restricted one) finds no such queue.
RELAY_QUEUE = {("GET", B + "/relay/messages"), ("POST", B + "/relay/messages/ack")}
WALK_AGENT = "crypto_user-token"


def app_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD, implied by GET, left out)."""
    try:  # FastAPI ≥ 0.16x keeps included routers as branches; this walks them
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI lists the routes flat
        routes = list(app.routes)
    for route in routes:
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path


def test_table_covers_every_route(api: Api) -> None:
    served = set(app_routes(api.app))
    assert served - TABLE.keys() == set(), "routes without an entry in the role table"
    assert TABLE.keys() - served == set(), "table entries for routes the app does not serve"


def test_every_api_route_declares_roles(api: Api) -> None:
    """What the code declares agrees with the hand-written table (admin always admitted)."""
    from fastapi.routing import iter_route_contexts

    for context in iter_route_contexts(api.app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        declared: frozenset[str] | None = None
        for dependency in route.dependant.dependencies:
            allowed = getattr(dependency.call, "allowed_roles", None)
            if allowed is not None:
                declared = frozenset(str(role) for role in allowed)
        for method in route.methods or ():
            assert declared == TABLE[(method, str(context.path))], (method, context.path)


@dataclass
class Walk:
    """The keys and inputs the walk's requests refer to."""

    keys: dict[str, str]
    ciphertext: str
    signature: str
    message: str
    relay_message: str

    def request(self, api: Api, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """URL and keyword arguments of a valid request to (method, path)."""
        route = path.removeprefix(B)
        key = self.keys.get(f"{method} {route}", self.keys["enc"])
        url = path.replace("{key}", key).replace("{token_id}", "c_0000000000000000")
        url = url.replace("{family}", "ml-dsa")
        body = self._body(api, route)
        query = {
            "/data/index": {"key": self.keys["enc"]},
            "/data/index/object": {"identifier": "walk/object"},
            "/data/shred-report": {"key": self.keys["enc"]},
            "/relay/messages": {"recipient": WALK_AGENT},
            "/migration/plan": {"algorithm": "ML-KEM-512"},
        }
        if method == "GET" and route in query:
            return url, {"params": query[route]}
        return url, ({} if body is None else {"json": body})

    def _body(self, api: Api, route: str) -> dict[str, Any] | None:
        enc, sig = self.keys["enc"], self.keys["sig"]
        single: dict[str, Callable[[], dict[str, Any]]] = {
            "/encrypt": lambda: {"key": enc, "plaintext": self.message, "context": "walk"},
            "/decrypt": lambda: {"key": enc, "ciphertext": self.ciphertext, "context": "walk"},
            "/sign": lambda: {"key": sig, "message": self.message},
            "/verify": lambda: {"key": sig, "message": self.message, "signature": self.signature},
        }
        bodies: dict[str, Callable[[], dict[str, Any]]] = {
            **single,
            **{f"{op}/batch": _batch_of(f) for op, f in single.items()},
            "/rewrap": lambda: {"key": enc, "ciphertext": self.ciphertext, "context": "walk"},
            "/datakey": lambda: {"key": enc, "context": "walk"},
            "/data/index": lambda: {
                "objects": [
                    {"identifier": "walk/object", "key": enc, "key_version": 1, "data_type": "blob"}
                ]
            },
            "/data/index/rewrapped": lambda: {
                "key": enc,
                "objects": [{"identifier": "walk/object", "key_version": 1}],
            },
            "/keys/generate": lambda: {
                "name": api.unique("walk-new"),
                "purpose": "key_wrapping",
                "algorithm": "AES-256-GCM",
            },
            "/keys/{key}/revoke": lambda: {"reason": "superseded"},
            # Version 1 of a key at version 1: valid however often it is repeated.
            "/keys/{key}/min-decryption-version": lambda: {"version": 1},
            "/protocols/update": lambda: {"dry_run": True},
            "/migration/run": lambda: {"algorithm": "ML-KEM-512", "dry_run": True},
            "/advisor": lambda: {"purpose": "key-exchange", "lifetime_years": 5},
            "/tokens": lambda: {"name": api.unique("walk-token"), "role": "viewer"},
            "/relay/messages": lambda: {"message": self.relay_message},
            "/relay/messages/ack": lambda: {"recipient": WALK_AGENT, "ids": ["m_" + "0" * 32]},
        }
        return bodies[route]() if route in bodies else None


def _batch_of(one: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    return lambda: {"items": [one()]}


@pytest.fixture(scope="module")
def walk(api: Api) -> Walk:
    keys = {"enc": api.create_key("walk-enc")["name"]}
    keys["sig"] = api.create_key("walk-sig", purpose="signing")["name"]
    api.post("/keys/generate", json={"name": OTHER_KEY, "purpose": "encryption"})
    # Each state-changing route gets a key of its own, in the state the route expects.
    for route in ("rotate", "revoke", "suspend", "resume", "cancel-destruction"):
        keys[f"POST /keys/{{key}}/{route}"] = api.create_key(f"walk-{route}")["name"]
    keys["DELETE /keys/{key}"] = api.create_key("walk-delete")["name"]
    api.post(f"/keys/{keys['POST /keys/{key}/resume']}/suspend")
    api.delete(f"/keys/{keys['POST /keys/{key}/cancel-destruction']}")
    message = base64.b64encode(b"walk message").decode()
    ct = api.post("/encrypt", json={"key": keys["enc"], "plaintext": message, "context": "walk"})
    sig = api.post("/sign", json={"key": keys["sig"], "message": message})
    walk_object = {"identifier": "walk/object", "key": keys["enc"], "key_version": 1}
    api.post("/data/index", json={"objects": [{**walk_object, "data_type": "blob"}]})
    return Walk(keys, ct.json()["ciphertext"], sig.json()["signature"], message, _relayed())


def _relayed() -> str:
    """An agent message v1 to the walk's agent (the relay reads only its header)."""
    from qrc.crypto import get_kem, get_signature
    from qrc.transit.agents import Agent, AgentIdentity, Directory

    sig, kem = get_signature("ML-DSA-65").generate(), get_kem("X25519MLKEM768").generate()
    directory = Directory([AgentIdentity(WALK_AGENT, sig.public_key(), kem.public_key())])
    wire = Agent(WALK_AGENT, sig, kem, directory).send(WALK_AGENT, b"walk")
    return base64.b64encode(wire).decode()


def _headers(api: Api, caller: str | None) -> dict[str, str]:
    if caller is None:
        return {}
    if caller == "wrong":
        forged = "qrc_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        return {"Authorization": f"Bearer {forged}"}
    return api.headers(caller)


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-token")
@pytest.mark.parametrize(("method", "path"), sorted(TABLE), ids=lambda x: x)
def test_route_with_caller(
    api: Api, walk: Walk, method: str, path: str, caller: str | None
) -> None:
    admitted = TABLE[(method, path)]
    url, kwargs = walk.request(api, method, path)
    response = api.call(method, url, None, prefix=False, headers=_headers(api, caller), **kwargs)
    assert "Traceback" not in response.text
    if admitted is PUBLIC and path.startswith(B + "/ca/"):
        # This store has no private CA (`qrc ca init`; the CA's own tests have one): the
        # routes are public all the same, whoever calls, and say so without 401 or 403.
        assert_problem(response, 404, "not-found")
        return
    if admitted is PUBLIC:
        assert response.status_code == 200, response.text
        return
    if caller in (None, "wrong"):
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
        return
    role = CU if caller == "crypto_user_limited" else caller
    assert role is not None
    if role not in admitted:
        assert_problem(response, 403, "forbidden")
        return
    assert response.status_code not in (401, 403), response.text
    if caller == "crypto_user_limited" and (method, path) in KEY_SCOPED:
        # The walk's keys are not in this token's list: they look like unknown keys.
        assert_problem(response, 404, "key-not-found")
    elif caller == "crypto_user_limited" and (method, path) in BATCHES:
        (item,) = response.json()["results"]
        assert item["ok"] is False
        assert item["error"]["type"] == "urn:qrc:problem:key-not-found"
    elif caller == "crypto_user_limited" and (method, path) in RELAY_QUEUE:
        assert_problem(response, 404, "not-found")
    elif caller == "crypto_user_limited" and path == B + "/keys":
        assert [k["name"] for k in response.json()["keys"]] == [OTHER_KEY]
    elif (method, path) not in STATEFUL:
        assert response.is_success, response.text


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        "bearer not-a-qrc-token",
        "Bearer qrc_" + "A" * 200,
        "Token qrc_" + "A" * 43,
    ],
)
def test_malformed_authorization_is_401(api: Api, header: str) -> None:
    response = api.get("/keys", None, headers={"Authorization": header})
    assert_problem(response, 401, "unauthorized")


def test_revoked_and_expired_tokens_are_401(api: Api) -> None:
    revoked, revoked_token = api.clients.create(
        name=api.unique("revoked"), role="admin", actor="test"
    )
    assert api.get("/keys", None, headers={"Authorization": f"Bearer {revoked_token}"}).is_success
    api.clients.revoke(revoked.id, actor="test")
    response = api.get("/keys", None, headers={"Authorization": f"Bearer {revoked_token}"})
    assert_problem(response, 401, "unauthorized")
    _, expired_token = api.clients.create(
        name=api.unique("expired"), role="admin", expires_in=timedelta(microseconds=1), actor="t"
    )
    response = api.get("/keys", None, headers={"Authorization": f"Bearer {expired_token}"})
    assert_problem(response, 401, "unauthorized")


def test_recovery_decrypt_is_admin_only(api: Api) -> None:
    key = api.create_key("recovery")["name"]
    message = base64.b64encode(b"secret").decode()
    ct = api.post("/encrypt", json={"key": key, "plaintext": message})
    ct.raise_for_status()
    api.post(f"/keys/{key}/revoke", json={"reason": "key_compromise"}).raise_for_status()
    body = {"key": key, "ciphertext": ct.json()["ciphertext"], "recovery": True}
    for role in (CU, "crypto_user_limited", KM, AU, VW):
        assert_problem(api.post("/decrypt", role, json=body), 403, "forbidden")
    response = api.post("/decrypt", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["plaintext"] == message
    # Without the flag, even an admin cannot use a compromised key.
    response = api.post("/decrypt", json={**body, "recovery": False})
    assert_problem(response, 409, "operation-not-permitted")


DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _docs_table() -> dict[tuple[str, str], list[str]]:
    """The route table of docs/api.md: (method, path under the base path) -> five cells."""
    rows: dict[tuple[str, str], list[str]] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(ROLES) and cells[0] in ("GET", "POST", "DELETE"):
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_docs_route_table_is_this_table() -> None:
    documented = _docs_table()
    expected: dict[tuple[str, str], list[str]] = {}
    for (method, path), admitted in TABLE.items():
        if not path.startswith(B):
            continue  # the root copies of /health etc. and the documentation pages
        if admitted is PUBLIC:
            cells = ["open"] * len(ROLES)
        else:
            cells = ["✓" if role in admitted else "–" for role in ROLES]
        expected[(method, path.removeprefix(B))] = cells
    marks = {key: [cell.split(" ")[0] for cell in cells] for key, cells in documented.items()}
    assert marks == expected


def test_docs_list_every_problem_type() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for slug in PROBLEM_TYPES:
        assert f"| `{slug}` | {PROBLEM_TYPES[slug][0]} |" in text, slug
