"""The migration routes on a real server process: ``POST /protocols/update`` points at the
plan, auditors read it, admins dry-run and run it; bad input is a clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.api_server import ApiProcess

API = "/api/v1/security/qrc"
OLD = "ML-KEM-768"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """One server for the module (the bad-input test changes nothing)."""
    process = ApiProcess(tmp_path_factory.mktemp("migration-api") / "data")
    yield process
    process.stop()


def _client(server: ApiProcess, role: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.tokens[role]}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def test_update_plan_dry_run_and_run(server: ApiProcess) -> None:
    with (
        _client(server, "admin") as admin,
        _client(server, "auditor") as auditor,
        _client(server, "key_manager") as manager,
        _client(server, "crypto_user") as writer,
    ):
        for name in ("ledger", "archive"):
            made = manager.post(
                API + "/keys/generate",
                json={"name": name, "purpose": "encryption", "algorithm": OLD},
            )
            assert made.status_code == 201, made.text
        objects = [
            {
                "identifier": f"rows/{i}",
                "key": "ledger",
                "key_version": 1,
                "data_type": "sql-column",
            }
            for i in range(3)
        ]
        assert writer.post(API + "/data/index", json={"objects": objects}).status_code == 200

        update = admin.post(
            API + "/protocols/update", json={"algorithm_status": {OLD: "deprecated"}}
        )
        assert update.status_code == 200, update.text
        [link] = update.json()["migration_plans"]
        assert link == f"{API}/migration/plan?algorithm={OLD}"

        plan = auditor.get(link)
        assert plan.status_code == 200, plan.text
        body = plan.json()
        assert body["algorithm"] == OLD and body["status"] == "deprecated"
        assert body["counts"]["keys_to_rotate"] == 2 and body["counts"]["objects"] == 3
        assert [(g["key_name"], g["data_type"], g["objects"]) for g in body["objects"]] == [
            ("ledger", "sql-column", 3)
        ]
        assert set(body["estimate"]["steps"]) == {
            "rotate_keys", "rewrap_objects", "reissue_certificates",
        }  # fmt: skip

        # The default is a dry run: nothing moves.
        dry = admin.post(API + "/migration/run", json={"algorithm": OLD})
        assert dry.status_code == 200 and dry.json()["dry_run"] is True
        assert manager.get(API + "/keys/ledger").json()["version"] == 1
        assert auditor.post(API + "/migration/run", json={"algorithm": OLD}).status_code == 403

        run = admin.post(API + "/migration/run", json={"algorithm": OLD, "dry_run": False})
        assert run.status_code == 200, run.text
        done = run.json()
        assert [r["key"] for r in done["rotated"]] == ["archive", "ledger"]
        assert done["complete"] is False  # the rows need the application's database
        assert any("qrc data rewrap" in p for p in done["pending"])
        for name in ("ledger", "archive"):
            key = manager.get(API + f"/keys/{name}").json()
            assert key["version"] == 2 and key["algorithm"] != OLD

        events = auditor.get(API + "/security/events", params={"event_type": "algorithm_migration"})
        [event] = events.json()["events"]
        assert event["is_quantum_threat_related"] is True
        assert event["qrc_algorithm_involved"] == OLD
        assert event["source_component"] == event["source"] == "qrc.monitor.migration"

        after = auditor.get(API + "/migration/plan", params={"algorithm": OLD}).json()
        assert after["counts"]["keys_to_rotate"] == 0 and after["counts"]["objects"] == 3


def test_bad_input_is_a_clear_4xx(server: ApiProcess) -> None:
    with _client(server, "admin") as admin:
        unknown = admin.get(API + "/migration/plan", params={"algorithm": "ROT13"})
        assert unknown.status_code == 422
        assert unknown.headers["content-type"].startswith("application/problem+json")
        assert unknown.json()["type"].endswith(":invalid-request")
        assert "ROT13" in unknown.json()["detail"]
        odd = admin.get(API + "/migration/plan", params={"algorithm": "ML KEM;drop"})
        assert odd.status_code == 422
        missing = admin.get(API + "/migration/plan")
        assert missing.status_code == 422
        extra = admin.post(API + "/migration/run", json={"algorithm": OLD, "force": True})
        assert extra.status_code == 422
        limit = admin.post(API + "/migration/run", json={"algorithm": OLD, "limit": 0})
        assert limit.status_code == 422
        bad = admin.post(API + "/migration/run", json={"algorithm": "ROT13", "dry_run": False})
        assert bad.status_code == 422 and bad.json()["type"].endswith(":invalid-request")
