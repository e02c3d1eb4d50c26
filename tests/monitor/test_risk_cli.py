"""``qrc risk`` and ``qrc advise`` as a user types them, in a subprocess, on a real data
directory (failures included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrc.crypto.registry import BUILT_IN_STATUS, Status
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.data_index import IndexEntry
from qrc.keys.factory import ServiceConfig, open_service
from qrc.keys.policy import AlgorithmPolicy, PolicyUpdate

PASSPHRASE = "risk cli passphrase"
_SCRUBBED = (
    "QRC_DATABASE_URL",
    "QRC_CUSTODY",
    "QRC_DATA_DIR",
    "QRC_RISK_FILE",
    "QRC_RISK_MIGRATION_YEARS",
    "QRC_MASTER_PASSPHRASE",
)


def qrc(*args: str | Path, passphrase: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and "PKCS11" not in k}
    if passphrase:
        environment["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "qrc", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a classical key holding personal data, and a hybrid one."""
    data = tmp_path_factory.mktemp("risk") / "store"
    config = ServiceConfig(data, custody=CustodyConfig(master_passphrase=PASSPHRASE))
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)  # not the process-wide registry
    service = open_service(config, policy=AlgorithmPolicy(apply=statuses.__setitem__))
    try:
        service.update_policy(PolicyUpdate(algorithm_status={"X25519": "active"}), actor="t")
        service.keys.create_key(name="legacy", purpose="encryption", algorithm="X25519", actor="t")
        service.update_policy(PolicyUpdate(algorithm_status={"X25519": "deprecated"}), actor="t")
        service.keys.create_key(name="app", purpose="encryption", actor="t")
        service.data.register(
            [
                IndexEntry(f"cust/{i}", "legacy", 1, "database_record", data_class="pii")
                for i in range(2)
            ]
            + [IndexEntry("m/1", "app", 1, "model_file")],
            actor="t",
        )
    finally:
        service.close()
    return data


def test_risk_json_table_and_settings(data_dir: Path, tmp_path: Path) -> None:
    done = qrc("risk", "--data-dir", data_dir, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    keys = {k["name"]: k for k in doc["keys"]}
    assert keys["legacy"]["protection"] == "classical" and keys["legacy"]["x_years"] == 25.0
    assert "high" in keys["legacy"]["exposed_under"]  # 25 years of secrecy outlast 2050
    assert keys["app"]["exposed_under"] == []
    indicator = doc["quantum_threat_indicator"]
    assert indicator["exposedKeys"] == 1 and indicator["level"] in ("elevated", "high")
    assert doc["migration"]["source"] == "estimated"

    # The model from QRC_RISK_FILE and y from QRC_RISK_MIGRATION_YEARS, as a table: with
    # one year of secrecy nothing is exposed; the classical key still counts (10 + 10).
    model = tmp_path / "risk.toml"
    model.write_text("[lifetimes]\npii = 1\ndatabase_record = 1\n")
    table = qrc(
        "risk", "--data-dir", data_dir, QRC_RISK_FILE=str(model), QRC_RISK_MIGRATION_YEARS="0.5"
    )
    assert table.returncode == 0, table.stderr
    assert "quantum threat level: moderate (score 20/100)" in table.stdout
    assert "exposed under the" not in table.stdout and "legacy" in table.stdout
    assert "y (migration): 0.50 years, configured" in table.stdout
    assert "Global Risk Institute" in table.stdout and str(model) in table.stdout


def test_risk_refuses_a_bad_model_before_the_store_opens(data_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "risk.toml"
    model.write_text("[horizons.median]\nyear = 2031\n")
    done = qrc("risk", "--data-dir", data_dir, "--model", model, passphrase=False)
    assert done.returncode == 2
    assert "source is required" in done.stderr and "docs/risk.md" in done.stderr


def test_advise_as_typed() -> None:
    done = qrc(
        "advise",
        "--purpose",
        "key-exchange",
        "--lifetime-years",
        "12",
        "--max-bytes",
        "2300",
        "--max-latency-ms",
        "50",
        "--json",
        passphrase=False,
    )
    assert done.returncode == 0, done.stderr
    advice = json.loads(done.stdout)
    best = advice["recommended"]
    assert best["algorithm"] == "ML-KEM-768" and best["latency_ms"] is not None  # measured
    assert any(c["algorithm"] == "X25519MLKEM768" for c in advice["rejected"])

    none = qrc(
        "advise",
        "--purpose",
        "signature",
        "--lifetime-years",
        "10",
        "--max-bytes",
        "64",
        "--no-measure",
        passphrase=False,
    )
    assert none.returncode == 1 and "no algorithm fits" in none.stdout
    bad = qrc("advise", "--purpose", "magic", "--lifetime-years", "1", passphrase=False)
    assert bad.returncode == 2 and "--purpose must be one of" in bad.stderr
