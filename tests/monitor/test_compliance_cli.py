"""``qrc compliance`` in a subprocess, as a user types it, on a real data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.factory import ServiceConfig, open_service
from qrc.monitor.compliance import FRAMEWORKS
from tests.monitor.test_compliance_render import parse_html, read_pdf

PASSPHRASE = "compliance test passphrase"
_SCRUBBED = ("QRC_DATABASE_URL", "QRC_CUSTODY", "QRC_DATA_DIR")


def qrc(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and "PKCS11" not in k}
    env["QRC_MASTER_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "qrc", "compliance", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("compliance") / "store"
    service = open_service(ServiceConfig(data, custody=CustodyConfig(master_passphrase=PASSPHRASE)))
    try:
        service.keys.create_key(name="app", purpose="encryption", actor="t")
    finally:
        service.close()
    return data


def test_report_formats_and_frameworks(data_dir: Path, tmp_path: Path) -> None:
    done = qrc("report", "--data-dir", data_dir, "--check")
    assert done.returncode == 1, done.stderr  # --check: a control fails (no backup yet)
    report = json.loads(done.stdout)
    assert [f["id"] for f in report["frameworks"]] == list(FRAMEWORKS)
    outcomes = {c["id"]: c["outcome"] for c in report["controls"]}
    assert outcomes["sp800-57/backup"] == "fail"
    assert outcomes["pci-dss-4.0/10.3.4"] == "pass"

    html_file, pdf_file = tmp_path / "r.html", tmp_path / "r.pdf"
    done = qrc(
        "report", "--data-dir", data_dir, "--format", "html", "-o", html_file,
        "--framework", "pci-dss-4.0,gdpr",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{html_file}: fail;" in done.stderr  # one line for the operator
    text = "".join(parse_html(html_file.read_text()).text)
    assert "pci-dss-4.0/4.2.1" in text and "gdpr/32.1.b" in text and "fips-203" not in text

    done = qrc("report", "--data-dir", data_dir, "-f", "pdf", "-o", pdf_file, "--framework", "dora")
    assert done.returncode == 0, done.stderr
    pages, text = read_pdf(pdf_file.read_bytes())
    assert pages >= 1 and "dora/rts-7.3:" in text and "pci-dss-4.0" not in text


def test_helpful_errors_and_the_catalogue(data_dir: Path) -> None:
    bad = qrc("report", "--data-dir", data_dir, "--framework", "pci-3", "--format", "xml")
    assert bad.returncode == 2 and "--format must be one of json, html, pdf" in bad.stderr
    bad = qrc("report", "--data-dir", data_dir, "--framework", "pci-3")
    assert bad.returncode == 2 and "unknown framework 'pci-3'" in bad.stderr

    listed = qrc("controls", "--json", "--framework", "gdpr")
    assert listed.returncode == 0, listed.stderr
    controls = json.loads(listed.stdout)["controls"]
    assert [c["id"] for c in controls][:2] == ["gdpr/32.1.a", "gdpr/32.1.b"]
    assert {c["automatic"] for c in controls} == {True, False}
