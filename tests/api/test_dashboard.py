"""GET /dashboard over the API: the story's field names, the numbers, roles, freshness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qrc.keys.data_index import IndexEntry
from tests.api.conftest import Api, assert_problem

ROOT = Path(__file__).resolve().parents[2]
STORY_FIELDS = {
    "id",
    "qrcAlgorithmStatus",
    "keyManagementStats",
    "dataAtRestEncryption",
    "dataInTransitProtection",
    "quantumThreatLevel",
    "complianceReport",
}


def _keys_listed(api: Api) -> int:
    """Keys not destroyed, counted through GET /keys (every page)."""
    total, cursor = 0, None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = api.get("/keys", params=params).json()
        total += sum(k["status"] != "destroyed" for k in page["keys"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


def test_story_shape_and_totals_agree_with_the_key_list(api: Api) -> None:
    api.create_key("dash-enc")
    board = api.get("/dashboard", "viewer").json()
    assert board.keys() >= STORY_FIELDS
    stats = board["keyManagementStats"]
    assert {
        "totalKeys",
        "keysRotatedLast30Days",
        "hsmStatus",
        "keyGenerationRate",
        "keyCompromiseAlerts",
    } <= stats.keys()
    assert stats["totalKeys"] == _keys_listed(api)
    assert stats["hsmStatus"] == "online"
    info = next(a for a in board["qrcAlgorithmStatus"] if a["algorithmName"] == "X25519MLKEM768")
    assert info["type"] == "key_exchange" and info["status"] in ("active", "experimental")
    assert {"strength", "performanceBenchmark", "lastAuditDate"} <= info.keys()
    rest = board["dataAtRestEncryption"]
    assert {
        "databaseEncryption",
        "fileStorageEncryption",
        "backupEncryption",
        "overallCoveragePercentage",
    } <= rest.keys()


def test_a_rotation_shows_at_once(api: Api) -> None:
    key = api.create_key("dash-rot")
    before = api.get("/dashboard").json()
    assert api.get("/dashboard").json()["id"] == before["id"]  # cached
    assert api.post(f"/keys/{key['id']}/rotate", "key_manager").status_code == 200
    after = api.get("/dashboard", "auditor").json()
    assert after["id"] != before["id"]
    rotated = after["keyManagementStats"]["keysRotatedLast30Days"]
    assert rotated == before["keyManagementStats"]["keysRotatedLast30Days"] + 1


def test_indexed_objects_appear_by_storage(api: Api) -> None:
    key = api.create_key("dash-idx")
    api.service.data.register(
        [IndexEntry(f"dash/{i}", key["id"], 1, "sql-column") for i in range(3)], actor="test"
    )
    api.service.keys.rotate(key["id"], actor="test")  # a key change: the snapshot is dropped
    rest = api.get("/dashboard").json()["dataAtRestEncryption"]
    rows = [r for r in rest["databaseEncryption"] if r["keyId"] == key["id"]]
    assert [(r["dataType"], r["objects"], r["protected"]) for r in rows] == [
        ("sql-column", 3, True)
    ]
    assert rest["totalObjects"] >= 3 and 0 <= rest["overallCoveragePercentage"] <= 100


def test_crypto_users_and_strangers_are_refused(api: Api) -> None:
    assert_problem(api.get("/dashboard", "crypto_user"), 403, "forbidden")
    assert_problem(api.get("/dashboard", None), 401, "unauthorized")


def test_export_openapi_script_writes_the_dashboard_schema(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "openapi.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_openapi.py"), str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    document = json.loads(out.read_text())
    assert "/api/v1/security/qrc/dashboard" in document["paths"]
    schema = document["components"]["schemas"]["QRCSecurityDashboard"]
    assert set(schema["properties"]) >= STORY_FIELDS
    usage = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_openapi.py")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 2 and "usage" in usage.stderr
