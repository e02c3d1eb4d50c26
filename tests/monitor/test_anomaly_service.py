"""The anomaly detector beside a real key service: source addresses recorded by the API, the
audit history read back (SQLite and PostgreSQL), anomalies recorded as security events by the
server's job, the job's start switch, and ``qrc anomalies`` as a user types it."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from click.testing import Result
from typer.testing import CliRunner

from qrc.api.app import API_PREFIX
from qrc.cli import main
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.observers import REQUEST_SOURCE, KeyUse, SecurityNotice
from qrc.keys.service import KeyService
from qrc.monitor.anomaly import Anomaly, AnomalyModel, DetectorSettings
from qrc.monitor.anomaly_features import Entity
from qrc.monitor.anomaly_observer import ACTION_TAKEN, read_history, record_anomalies
from qrc.monitor.anomaly_scenarios import TOKENS, normal_traffic
from qrc.server.anomalyjob import AnomalyJob, start_anomaly_detection
from qrc.server.config import load_settings
from tests.api.api_server import ApiProcess
from tests.api.conftest import running_api


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Heard:
    """An observer that keeps what it hears."""

    def __init__(self) -> None:
        self.uses: list[KeyUse] = []

    def key_used(self, use: KeyUse) -> None:
        self.uses.append(use)

    def security_event(self, notice: SecurityNotice) -> None:
        """Not needed here."""


def test_api_key_uses_carry_their_source_and_the_job_reports_probing(tmp_path: Path) -> None:
    with running_api(tmp_path / "api") as api:
        service = api.service
        key = api.create_key("probed")
        heard = Heard()
        service.observers.add(heard)
        actor = f"token:{api.client_ids['crypto_user']}:crypto_user-token"
        sealed = api.post(
            "/encrypt", "crypto_user", json={"key": key["name"], "plaintext": b64(b"hello")}
        )
        assert sealed.status_code == 200, sealed.text

        # What the API records: the address of the request, in the audit chain and to observers.
        events, _ = service.audit.query(event_type="key.encrypt", key=key["id"])
        assert [e.details.get("source") for e in events] == ["testclient"]
        assert [(u.operation, u.source, u.actor) for u in heard.uses] == [
            ("encrypt", "testclient", actor)
        ]
        created, _ = service.audit.query(event_type="key.create", key=key["id"])
        assert "source" not in created[0].details  # only key uses carry it
        service.crypto.encrypt(key["id"], b"x", actor="local")  # no request, no source
        assert heard.uses[-1].source is None

        # What the history reads back.
        history = read_history(service, datetime.now(UTC) - timedelta(hours=1))
        mine = [e for e in history if e.key_id == key["id"] and e.operation == "encrypt"]
        assert [(e.actor, e.source) for e in mine] == [(actor, "testclient"), ("local", None)]

        # The job: a model that knows this token as the synthetic web front end (its usual
        # volume, its address), then 40 failing decryptions through the API.
        web = TOKENS[0]
        past = [
            replace(e, actor=actor, key_id=key["id"], source="testclient")
            if e.actor == web.actor
            else e
            for e in normal_traffic(3, seed=4)
        ]
        job = AnomalyJob(service, DetectorSettings(), train_days=14, retrain_hours=24)
        job.model = AnomalyModel.train(past, job.settings)
        service.observers.add(job.observer)
        ciphertext = bytearray(base64.b64decode(sealed.json()["ciphertext"]))
        ciphertext[-1] ^= 1  # the tag no longer matches
        bad = b64(bytes(ciphertext))
        for _ in range(40):
            response = api.post(
                "/decrypt", "crypto_user", json={"key": key["id"], "ciphertext": bad}
            )
            assert response.status_code == 400, response.text
        later = datetime.now(UTC) + timedelta(minutes=2)
        job.trained_at = later  # no retraining in this pass
        found = job.run_once(later)
        assert any(a.entity == Entity("actor", actor) for a in found), found
        assert job.recorded == len(found) and len(job.observer) == 0

        recorded = service.audit.security_events(event_type="anomaly")
        token_events = [e for e in recorded if e.source == actor]
        assert token_events and token_events[0].severity == "high"
        explanation = token_events[0].details["explanation"]
        assert explanation.startswith("token crypto_user-token: ")
        assert "decryptions" in explanation and "failed; usual" in explanation
        assert token_events[0].key_id == key["id"]
        assert "failures" in token_events[0].details["reasons"]


def test_history_and_recorded_anomalies_on_both_stores(store: KeyService) -> None:
    store.keys.create_key(name="app", purpose="encryption", actor="t")
    token = REQUEST_SOURCE.set("198.51.100.7")
    try:
        for _ in range(3):
            store.crypto.encrypt("app", b"data", actor="token:t1:app")
    finally:
        REQUEST_SOURCE.reset(token)
    since = datetime.now(UTC) - timedelta(hours=1)
    events = [e for e in read_history(store, since) if e.operation == "encrypt"]
    assert [(e.actor, e.source, e.result) for e in events] == [
        ("token:t1:app", "198.51.100.7", "success")
    ] * 3
    # Bounded: the newest events, still oldest first.
    newest = read_history(store, since, max_events=2)
    assert [(e.operation, e.source) for e in newest] == [("encrypt", "198.51.100.7")] * 2
    assert newest[0].at <= newest[1].at and newest[1].at == events[-1].at
    key_id = events[0].key_id
    assert key_id is not None
    anomaly = Anomaly(
        entity=Entity("actor", "token:t1:app"),
        start=datetime.now(UTC),
        window_seconds=60,
        score=-0.2,
        severity="medium",
        reasons=("new_source",),
        explanation="token app: 3 encryptions in 60 s; new source address 198.51.100.7",
        count=3,
        failures=0,
        key_ids=(key_id,),
    )
    assert record_anomalies(store, [anomaly]) == 1
    (event,) = store.audit.security_events(event_type="anomaly")
    assert (event.source, event.key_id, event.severity) == ("token:t1:app", key_id, "medium")
    assert event.details["explanation"] == event.description == anomaly.explanation
    assert event.action_taken == ACTION_TAKEN and event.is_quantum_threat_related is False
    downgrade = replace(anomaly, entity=Entity("actor", "tls"), key_ids=(), severity="high",
                        explanation="actor tls: 80 refused TLS handshakes in 60 s")  # fmt: skip
    assert record_anomalies(store, [downgrade]) == 1
    tls = store.audit.security_events(event_type="anomaly")[-1]
    assert (tls.source, tls.key_id, tls.is_quantum_threat_related) == ("tls", None, True)
    assert event.details["reasons"] == ["new_source"]


def test_the_server_starts_the_detector_only_when_enabled(tmp_path: Path) -> None:
    service = open_service(
        ServiceConfig(tmp_path / "d", custody=CustodyConfig(master_passphrase="p" * 12))
    )
    try:
        off = load_settings(data_dir=tmp_path / "d", anomaly_enabled=False)
        assert start_anomaly_detection(off, service) == []
        on = load_settings(data_dir=tmp_path / "d", anomaly_window_seconds=30)
        (job,) = start_anomaly_detection(on, service)
        try:
            assert job.settings.window_seconds == 30
            assert job.settings.min_windows == 200
        finally:
            job.stop()
        # Stopped: it no longer listens to the service.
        assert job.observer not in service.observers._observers

        # A new store: too little history, so the job listens and drops what it heard.
        quiet = AnomalyJob(service, DetectorSettings(), train_days=1, retrain_hours=24)
        service.observers.add(quiet.observer)
        service.keys.create_key(name="k", purpose="encryption", actor="t")
        assert len(quiet.observer) == 1
        later = datetime.now(UTC) + timedelta(minutes=5)
        assert quiet.run_once(later) == [] and quiet.model is None and len(quiet.observer) == 0
        assert quiet.trained_at == later and service.audit.security_events() == []
    finally:
        service.close()


PASSPHRASE = "anomaly cli passphrase"
_ENV = {"QRC_MASTER_PASSPHRASE": PASSPHRASE, "QRC_DATABASE_URL": "", "QRC_CUSTODY": ""}


def qrc(*args: str | Path) -> Result:
    """``qrc anomalies ARGS`` through qrc's own (lazy) command table."""
    return CliRunner().invoke(main.app, ["anomalies", *map(str, args)], env=_ENV)


def _uses(data: Path, n: int) -> None:
    service = open_service(ServiceConfig(data, custody=CustodyConfig(master_passphrase=PASSPHRASE)))
    try:
        if n == 3:
            service.keys.create_key(name="app", purpose="encryption", actor="t")
        for _ in range(n):
            service.crypto.encrypt("app", b"x", actor="token:t9:app")
    finally:
        service.close()


def test_cli_evaluate_scan_and_train(tmp_path: Path) -> None:
    done = qrc("evaluate", "--train-days", "1", "--test-days", "1", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert set(report["scenarios"]) == {"oracle", "export", "downgrade", "new_source", "off_hours"}
    assert report["scenarios"]["oracle"]["found"] == 1 and 0 <= report["precision"] <= 1
    table = qrc("evaluate", "--train-days", "1", "--test-days", "1")
    assert table.exit_code == 0 and "precision" in table.stdout and "recall" in table.stdout

    data = tmp_path / "store"
    _uses(data, 3)
    short = qrc("scan", "--data-dir", data)
    assert short.exit_code == 2
    assert "not enough history" in short.stderr and "--min-windows" in short.stderr

    # Learn from what came before --since, score what came after.
    since = datetime.now(UTC)
    _uses(data, 4)
    scanned = qrc("scan", "--data-dir", data, "--since", since.isoformat(), "--min-windows", "2",
                  "--json")  # fmt: skip
    assert scanned.exit_code == 0, scanned.output
    result = json.loads(scanned.stdout)
    assert result["scored_events"] >= 4 and isinstance(result["anomalies"], list)
    assert result["scored_since"] == since.isoformat()

    trained = qrc("train", "--data-dir", data, "--min-windows", "2", "--json")
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    names = {(e["kind"], e["name"]) for e in summary["entities"]}
    assert ("actor", "token:t9:app") in names and summary["trained_events"] >= 7

    bad = qrc("scan", "--data-dir", data, "--window", "1")
    assert bad.exit_code == 2 and "--window" in bad.output


def test_a_real_server_records_the_peer_address_of_key_uses(tmp_path: Path) -> None:
    process = ApiProcess(tmp_path / "server")
    try:
        admin = {"Authorization": f"Bearer {process.tokens['admin']}"}
        with httpx.Client(base_url=process.url + API_PREFIX, headers=admin, timeout=60) as http:
            created = http.post("/keys/generate", json={"name": "e2e", "purpose": "encryption"})
            assert created.status_code == 201, created.text
            sealed = http.post("/encrypt", json={"key": "e2e", "plaintext": b64(b"x")})
            assert sealed.status_code == 200, sealed.text
            bad = bytearray(base64.b64decode(sealed.json()["ciphertext"]))
            bad[-1] ^= 1
            failed = http.post("/decrypt", json={"key": "e2e", "ciphertext": b64(bytes(bad))})
            assert failed.status_code == 400, failed.text
            logs = http.get("/audit/logs", params={"key": "e2e", "limit": 100})
            assert logs.status_code == 200, logs.text
    finally:
        process.stop()
    sources = {
        (e["event_type"], e["result"]): e["details"].get("source") for e in logs.json()["events"]
    }
    assert sources[("key.encrypt", "success")] == "127.0.0.1"
    assert sources[("key.decrypt", "failure")] == "127.0.0.1"
    assert sources[("key.create", "success")] is None
