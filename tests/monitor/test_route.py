"""``GET /api/v1/security/qrc/inventory``: auditors and admins read it, as JSON or CBOM."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from qrc.api.app import API_PREFIX, create_app
from qrc.api.deps import ApiSettings, AppState
from qrc.api.routes.inventory import CBOM_MEDIA_TYPE
from qrc.keys.service import KeyService
from qrc.transit.listener import HandshakeCounters, HandshakeRecord
from qrc.transit.pki import ensure_listener_tls
from tests.monitor.test_cbom import valid_cbom

URL = API_PREFIX + "/inventory"


def test_roles_formats_and_the_service_tls(
    populated: KeyService, deprecated: str, tmp_path: Path
) -> None:
    ensure_listener_tls(tmp_path, ["localhost"], certificates="dual")
    counters = HandshakeCounters()
    counters.count(HandshakeRecord("X25519MLKEM768", "TLS_AES_256_GCM_SHA384", "mldsa65",
                                   "ML-DSA-65", 1))  # fmt: skip
    state = AppState(populated, ApiSettings(tls_mode="hybrid"), tls_counters=counters)
    state.ca_dir = tmp_path / "ca"  # what qrc serve sets; the route reads tls/ beside it
    http = TestClient(create_app(state))

    def bearer(role: str) -> dict[str, str]:
        _, token = populated.tokens.create(name=f"t-{role}", role=role, actor="test")
        return {"Authorization": f"Bearer {token}"}

    auditor = bearer("auditor")
    listed = http.get(URL, headers=auditor)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [k["name"] for k in body["keys"] if k["deprecated"]] == ["kem-512"]
    assert len(body["certificates"]) == 4
    assert body["tls"]["tls_mode"] == "hybrid" and body["tls"]["classical_share"] == 0.0

    cbom = http.get(URL, params={"format": "cbom"}, headers=bearer("admin"))
    assert cbom.status_code == 200 and cbom.headers["content-type"] == CBOM_MEDIA_TYPE
    data = valid_cbom(cbom.text)
    assert any(c["cryptoProperties"]["assetType"] == "protocol" for c in data["components"])

    for role in ("viewer", "key_manager", "crypto_user"):
        assert http.get(URL, headers=bearer(role)).status_code == 403, role
    assert http.get(URL).status_code == 401
    assert http.get(URL, params={"format": "xml"}, headers=auditor).status_code == 422
