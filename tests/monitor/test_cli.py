"""``qrc inventory`` in a subprocess, on a real data directory (until ``qrc.cli.main`` lists
it, the subprocess adds it to the lazy command table the way that line will)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.factory import ServiceConfig, open_service
from tests.monitor.test_cbom import valid_cbom

PASSPHRASE = "inventory test passphrase"
_SCRUBBED = ("QRC_DATABASE_URL", "QRC_CUSTODY", "QRC_DATA_DIR")
# ``qrc`` with the command registered as qrc.cli.main will register it (lazily, by name).
_RUN = (
    "import sys, qrc.cli.main as m; "
    "m._COMMANDS['inventory'] = 'qrc.cli.inventory:inventory_app'; "
    "sys.argv = ['qrc', 'inventory', *sys.argv[1:]]; m.run()"
)


def inventory(data_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and "PKCS11" not in k}
    env["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-c", _RUN, "--data-dir", str(data_dir), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_formats_scan_and_output_file(tmp_path: Path, legacy_dir: Path) -> None:
    data = tmp_path / "store"
    config = ServiceConfig(data, custody=CustodyConfig(master_passphrase=PASSPHRASE))
    service = open_service(config)
    try:
        service.keys.create_key(name="app", purpose="encryption", actor="t")
        service.keys.create_key(name="sig", purpose="signing", algorithm="ML-DSA-87", actor="t")
    finally:
        service.close()

    out = tmp_path / "cbom.json"
    done = inventory(data, "--format", "cbom", "--scan", legacy_dir, "-o", out)
    assert done.returncode == 0, done.stderr
    bom = valid_cbom(out.read_text())
    names = {c["name"] for c in bom["components"]}
    assert {"app", "sig", "ML-DSA-87", "ECDSA-P256"} <= names

    done = inventory(data, "--format", "json", "--scan", legacy_dir / "server.key")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {k["name"] for k in listed["keys"]} == {"app", "sig"}
    assert [(a["kind"], a["classical"]) for a in listed["found"]] == [("private-key", True)]

    table = inventory(data, "--scan", legacy_dir)
    assert table.returncode == 0, table.stderr
    assert "Algorithms in use" in table.stdout and "ML-DSA-87" in table.stdout

    missing = inventory(data, "--scan", tmp_path / "absent.pem")
    assert missing.returncode == 2 and "absent.pem" in missing.stderr
    bad = inventory(data, "--format", "xml")
    assert bad.returncode == 2 and "--format" in bad.stderr
    bad = inventory(data, "--endpoint", "no-port")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
