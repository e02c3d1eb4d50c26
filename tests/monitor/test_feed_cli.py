"""``qrc feed`` as a publisher and an operator type it: keygen, sign, verify, load, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.factory import ServiceConfig, open_service
from tests.monitor.test_feed import _tamper, body

PASSPHRASE = "feed cli test passphrase"
_SCRUBBED = ("QRC_DATABASE_URL", "QRC_CUSTODY", "QRC_DATA_DIR", "QRC_FEED_PUBLISHER_KEY")


def qrc(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and "PKCS11" not in k}
    env["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "qrc", "feed", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_publish_verify_load_and_status(tmp_path: Path) -> None:
    data = tmp_path / "store"
    service = open_service(ServiceConfig(data, custody=CustodyConfig(master_passphrase=PASSPHRASE)))
    service.keys.create_key(name="old", purpose="encryption", algorithm="ML-KEM-512", actor="t")
    service.close()

    made = qrc("keygen", "-o", tmp_path / "publisher", "--json")
    assert made.returncode == 0, made.stderr
    key_id = json.loads(made.stdout)["key_id"]
    assert (tmp_path / "publisher.key").stat().st_mode & 0o077 == 0
    assert qrc("keygen", "-o", tmp_path / "ed", "-a", "Ed25519").returncode == 2

    unsigned = body(3)
    (tmp_path / "feed.json").write_text(json.dumps(unsigned))
    signed = tmp_path / "feed.signed.json"
    done = qrc("sign", tmp_path / "feed.json", "--key", tmp_path / "publisher.key", "-o", signed)
    assert done.returncode == 0, done.stderr
    assert json.loads(signed.read_text())["feed"]["publisher_key_id"] == key_id
    # The publisher cannot sign what a service would refuse.
    (tmp_path / "bad.json").write_text(json.dumps({**unsigned, "sequence": 0}))
    bad = qrc("sign", tmp_path / "bad.json", "--key", tmp_path / "publisher.key")
    assert bad.returncode == 2 and "sequence" in bad.stderr

    pub = tmp_path / "publisher.pub"
    checked = qrc("verify", signed, "--publisher-key", pub, "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["sequence"] == 3
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(_tamper(signed.read_bytes()))
    refused = qrc("verify", tampered, "--publisher-key", pub, "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["reason"] == "signature"

    loaded = qrc("load", signed, "--data-dir", data, "--publisher-key", pub, "--json")
    assert loaded.returncode == 0, loaded.stderr
    changes = json.loads(loaded.stdout)["changes"]
    assert {c["algorithm"] for c in changes} == {"ML-KEM-512", "HQC-128"}
    again = qrc("load", signed, "--data-dir", data, "--publisher-key", pub)
    assert again.returncode == 2 and "replay" in again.stderr and "unchanged" in again.stderr
    missing = qrc("load", tmp_path / "nowhere.json", "--data-dir", data, "--publisher-key", pub)
    assert missing.returncode == 2 and "cannot read the feed" in missing.stderr
    no_key = qrc("load", signed, "--data-dir", data)
    assert no_key.returncode == 2 and "--publisher-key" in no_key.stderr

    status = qrc("status", "--data-dir", data, "--publisher-key", pub, "--json")
    assert status.returncode == 0, status.stderr
    landscape = json.loads(status.stdout)
    assert landscape["feed"]["sequence"] == 3 and landscape["configured"]
    kem = next(s for s in landscape["statuses"] if s["algorithm"] == "ML-KEM-512")
    assert kem["in_force"] and kem["in_use"]
