"""Debian's Chromium against a real ``qrc serve``: ``X25519MLKEM768`` with the ECDSA
certificate, the CA trusted through a dedicated NSS database (no
``--ignore-certificate-errors``), and ``/docs`` and ``/redoc`` rendered with every request
kept on this server.

Chromium on Linux reads ``$HOME/.pki/nssdb``: each test module gets its own HOME, so tests
running in parallel do not share a trust store. One browser per module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.server.serve_process import QrcServe

CHROMIUM = "/usr/bin/chromium"
CERTUTIL = shutil.which("certutil")

if not (Path(CHROMIUM).exists() and CERTUTIL):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium and libnss3-tools (make system-deps)")
    pytest.skip(
        "Debian's chromium or certutil (libnss3-tools) is not installed: make system-deps",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev dependency)")

# TLS SignatureScheme code points (RFC 8446, 4.2.3) as DevTools reports them.
ECDSA_SECP256R1_SHA256 = 0x0403


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QrcServe]:
    served = QrcServe(tmp_path_factory.mktemp("browser-data"))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def ca_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QrcServe]:
    """A service after `qrc ca init`: certificates from the key service's CA, mutual TLS."""
    data_dir = tmp_path_factory.mktemp("browser-ca-data")
    subprocess.run(
        [sys.executable, "-c", "from qrc.cli.ca import ca_app; ca_app()", "init",
         "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(data_dir)},
    )  # fmt: skip
    served = QrcServe(data_dir)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser(
    tmp_path_factory: pytest.TempPathFactory, server: QrcServe, ca_server: QrcServe
) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("browser-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    assert CERTUTIL is not None
    # What docs/transport.md tells a user to do once, in this HOME.
    subprocess.run([CERTUTIL, "-N", "--empty-password", "-d", f"sql:{nssdb}"], check=True)
    subprocess.run(
        [
            CERTUTIL,
            "-A",
            "-d",
            f"sql:{nssdb}",
            "-t",
            "C,,",
            "-n",
            "qrc",
            "-i",
            str(server.ecdsa_ca),
        ],
        check=True,
    )
    root = ca_server.data_dir / "ca" / "root-ecdsa.pem"
    subprocess.run(
        [CERTUTIL, "-A", "-d", f"sql:{nssdb}", "-t", "C,,", "-n", "qrc-ca", "-i", str(root)],
        check=True,
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, env={**os.environ, "HOME": str(home)}
        )
        yield launched
        launched.close()


def _visit(browser: Any, url: str) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """Open ``url``; the DevTools security details of each response, and any request that
    went to another host (aborted)."""
    page = browser.new_page()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    details: list[dict[str, Any]] = []
    cdp.on(
        "Network.responseReceived",
        lambda event: details.append(event["response"].get("securityDetails") or {}),
    )
    foreign: list[str] = []
    own = urlsplit(url).netloc

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).netloc not in (own, ""):
            foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", guard)
    answer = page.goto(url)
    assert answer is not None and answer.status == 200
    return page, details, foreign


def test_chromium_gets_x25519mlkem768_and_the_ecdsa_certificate(
    browser: Any, server: QrcServe
) -> None:
    page, details, foreign = _visit(browser, f"{server.url}/health")
    assert '"status":"ok"' in page.content()
    page.close()
    security = details[0]
    assert security["keyExchangeGroup"] == "X25519MLKEM768"
    assert security["protocol"] == "TLS 1.3"
    assert security["serverSignatureAlgorithm"] == ECDSA_SECP256R1_SHA256
    assert security["issuer"] == "qrc private CA (ECDSA)"
    assert foreign == []
    # The server's own record of the same handshake (its only ECDSA ones are Chromium's).
    counted = re.search(
        r'qrc_tls_handshakes_by_certificate_total\{group="X25519MLKEM768",'
        r'signature="ecdsa_secp256r1_sha256",certificate="ECDSA-secp256r1"\} (\d+)',
        server.metrics(),
    )
    assert counted is not None and int(counted.group(1)) >= 1


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui h1.title"),
        ("/redoc", "h1"),
    ],
)
def test_api_docs_render_offline(browser: Any, server: QrcServe, path: str, rendered: str) -> None:
    page, _details, foreign = _visit(browser, f"{server.url}{path}")
    heading = page.wait_for_selector(rendered, timeout=30_000)
    assert heading is not None and "qrc" in heading.inner_text()
    page.close()
    assert foreign == []


def test_chromium_after_qrc_ca_init(browser: Any, ca_server: QrcServe) -> None:
    """The key service's CA: its ECDSA chain, and a listener that asks for client
    certificates (mutual TLS), which a browser without one simply does not send."""
    page, details, _foreign = _visit(browser, f"{ca_server.url}/health")
    assert '"status":"ok"' in page.content()
    page.close()
    security = details[0]
    assert security["keyExchangeGroup"] == "X25519MLKEM768"
    assert security["serverSignatureAlgorithm"] == ECDSA_SECP256R1_SHA256
    assert security["issuer"] == "qrc intermediate CA (ECDSA)"
