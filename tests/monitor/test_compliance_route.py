"""``GET /api/v1/security/qrc/compliance/report`` from a real server process: formats and
content types, frameworks, roles, and a 4xx for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.transit.client import PQClient
from tests.api.api_server import ApiProcess
from tests.api.conftest import B
from tests.monitor.test_compliance_cli import qrc
from tests.monitor.test_compliance_render import parse_html, read_pdf

URL = B + "/compliance/report"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path_factory.mktemp("compliance-api"))
    try:
        yield process
    finally:
        process.stop()


def client(server: ApiProcess, role: str | None) -> PQClient:
    return PQClient(server.url, token=server.tokens[role] if role else None)


def test_formats_content_types_and_frameworks(server: ApiProcess) -> None:
    with client(server, "admin") as admin:
        made = admin.post(
            B + "/keys/generate",
            {"name": "ledger", "purpose": "encryption", "rotation_period_days": 90},
        )
        assert made.status == 201, made.body
    with client(server, "auditor") as auditor:
        answer = auditor.get(URL)
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/json"
        report = json.loads(answer.body)
        outcomes = {c["id"]: c["outcome"] for c in report["controls"]}
        assert outcomes["pci-dss-4.0/3.7.4"] == "pass"  # the key has a rotation period
        assert outcomes["gdpr/32.1.c"] == "fail"  # and there is no backup

        page = auditor.get(URL, params={"format": "html", "framework": "pci-dss-4.0"})
        assert page.status == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        text = "".join(parse_html(page.body.decode()).text)
        assert "pci-dss-4.0/3.7.4" in text and "gdpr/32.1.c" not in text

        pdf = auditor.get(URL, params={"format": "pdf", "framework": "gdpr,dora"})
        assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("attachment; filename=")
        _pages, text = read_pdf(pdf.body)
        assert "gdpr/32.1.c:" in text and "dora/rts-7.3:" in text
        assert pdf.headers["x-qrc-compliance-status"] == "fail"

        for params in ({"framework": "sox"}, {"format": "xml"}):
            bad = auditor.get(URL, params=params)
            assert bad.status == 422, params
            assert bad.headers["content-type"] == "application/problem+json"


def test_roles(server: ApiProcess) -> None:
    for role, status in (
        ("viewer", 403),
        ("key_manager", 403),
        ("crypto_user", 403),
        (None, 401),
        ("admin", 200),
    ):
        with client(server, role) as caller:
            assert caller.get(URL, params={"framework": "gdpr"}).status == status, role


def test_qrc_compliance_report_from_the_service(server: ApiProcess, tmp_path: Path) -> None:
    """``qrc compliance report --url``: an auditor's token, no data directory, no KEK."""
    out = tmp_path / "remote.pdf"
    done = qrc(
        "report",
        "--url",
        server.url,
        "--token",
        server.tokens["auditor"],
        "-f",
        "pdf",
        "-o",
        out,
        "--framework",
        "gdpr",
        "--check",
    )
    assert done.returncode == 1, done.stderr  # gdpr/32.1.c fails: no backup
    assert f"{out}: fail" in done.stderr
    _pages, text = read_pdf(out.read_bytes())
    assert "gdpr/32.1.c:" in text and "pci-dss-4.0" not in text

    refused = qrc("report", "--url", server.url, "--token", server.tokens["viewer"])
    assert refused.returncode == 2 and "the service refused" in refused.stderr
