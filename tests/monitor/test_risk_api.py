"""``GET /risk`` and ``POST /advisor`` on a real server process (plain HTTP on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from qrc.api.app import API_PREFIX, create_app
from qrc.api.deps import ApiSettings, AppState
from qrc.keys.service import KeyService
from qrc.monitor.risk_config import load_risk_config
from tests.api.api_server import ApiProcess

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path_factory.mktemp("risk-api"))
    yield process
    process.stop()


def _client(server: ApiProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url + API_PREFIX, timeout=60)


def _as(server: ApiProcess, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.tokens[role]}"}


def test_risk_over_http(server: ApiProcess) -> None:
    admin = _as(server, "admin")
    with _client(server) as http:
        # A classical key (policy allows X25519 for a moment) holding personal data.
        allow = {"algorithm_status": {"X25519": "active"}}
        assert http.post("/protocols/update", json=allow, headers=admin).is_success
        body = {"name": "legacy", "purpose": "encryption", "algorithm": "X25519"}
        assert http.post("/keys/generate", json=body, headers=admin).is_success
        deny = {"algorithm_status": {"X25519": "deprecated"}}
        assert http.post("/protocols/update", json=deny, headers=admin).is_success
        objects = [
            {
                "identifier": f"cust/{i}",
                "key": "legacy",
                "key_version": 1,
                "data_type": "database_record",
                "data_class": "pii",
            }
            for i in range(3)
        ]
        assert http.post("/data/index", json={"objects": objects}, headers=admin).is_success

        answer = http.get("/risk", headers=_as(server, "auditor"))
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        legacy = next(k for k in doc["keys"] if k["name"] == "legacy")
        assert legacy["protection"] == "classical" and legacy["classical_objects"] == 3
        assert legacy["exposed_under"] == ["low", "median", "high"]  # x = 25 (pii)
        types = {d["data_type"]: d for d in doc["data_types"]}
        assert types["database_record"]["exposed_under"] == ["low", "median", "high"]
        indicator = doc["quantum_threat_indicator"]
        assert indicator["exposedKeys"] == 1 and indicator["level"] == "high"
        assert indicator["deprecatedAlgorithmsInUse"] == ["X25519"]
        assert doc["channel"]["tls_mode"] == "pq-only"

        for role in ("viewer", "crypto_user", "key_manager"):
            refused = http.get("/risk", headers=_as(server, role))
            assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM


def test_advisor_over_http(server: ApiProcess) -> None:
    with _client(server) as http:
        body = {"purpose": "key-exchange", "lifetime_years": 12, "max_bytes": 2300}
        answer = http.post("/advisor", json=body, headers=_as(server, "viewer"))
        assert answer.status_code == 200, answer.text
        advice = answer.json()
        assert advice["recommended"]["algorithm"] == "ML-KEM-768"
        assert advice["min_category"] == 3 and advice["rejected"]

        for bad in (
            {"purpose": "teleport", "lifetime_years": 1},
            {"purpose": "signature", "lifetime_years": -1},
            {"purpose": "signature", "lifetime_years": 1, "max_bytes": 0},
            {"purpose": "signature", "lifetime_years": 1, "colour": "blue"},
            {"purpose": "signature"},
        ):
            refused = http.post("/advisor", json=bad, headers=_as(server, "viewer"))
            assert refused.status_code == 422, bad
            assert refused.headers["content-type"] == PROBLEM
        raw = http.post(
            "/advisor",
            content=b'{"purpose": "signature", "lifetime_years": NaN}',
            headers={**_as(server, "viewer"), "Content-Type": "application/json"},
        )
        assert 400 <= raw.status_code < 500 and "Traceback" not in raw.text
        assert http.post("/advisor", json={"purpose": "signature"}).status_code == 401


def test_risk_route_uses_the_servers_model(populated: KeyService) -> None:
    """The model a server puts on the state (from QRC_RISK_FILE) is the one GET /risk uses."""
    state = AppState(populated, ApiSettings())
    http = TestClient(create_app(state))
    _, token = populated.tokens.create(name="auditor", role="auditor", actor="test")
    auditor = {"Authorization": f"Bearer {token}"}
    assert http.get(API_PREFIX + "/risk", headers=auditor).json()["model"]["source"] == (
        "built-in defaults"
    )
    setattr(state, "risk_config", load_risk_config(migration_years=7))  # noqa: B010
    doc = http.get(API_PREFIX + "/risk", headers=auditor).json()
    assert doc["migration"]["years"] == 7 and doc["migration"]["source"] == "configured"
