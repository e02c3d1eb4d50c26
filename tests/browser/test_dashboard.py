"""The web dashboard end to end: Debian's Chromium against a real ``qrc serve`` over PQ TLS.

The CA is trusted through a per-module NSS database (as docs/dashboard.md tells a user to
do), never ``--ignore-certificate-errors``. An admin types the token into the sign-in form,
sees the totals the API reports, rotates a key from the page and sees the new version and
its audit event; a viewer sees no management buttons, and the API refuses it (403) when the
page's own JavaScript context tries the rotation anyway. DevTools reports the key exchange
the browser negotiated. Screenshots at 1280 and 390 pixels wide are kept in
``test-artifacts/dashboard/`` (printed at the end of the run).

One browser for the module; each role signs in in its own context (own session storage).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qrc.api.webapp import WEB_DIST
from tests.server.serve_process import API, QrcServe

CHROMIUM = "/usr/bin/chromium"
CERTUTIL = shutil.which("certutil")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
WAIT_MS = 30_000  # how long to wait for an element (a bound, not an assertion on time)

if not (Path(CHROMIUM).exists() and CERTUTIL):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium and libnss3-tools (make system-deps)")
    pytest.skip(
        "Debian's chromium or certutil (libnss3-tools) is not installed: make system-deps",
        allow_module_level=True,
    )
if not (WEB_DIST / "index.html").is_file():
    if os.environ.get("CI"):
        raise RuntimeError("CI builds the dashboard before the tests (make web)")
    pytest.skip("the dashboard is not built: make web (Node 20)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev dependency)")


@dataclass
class Served:
    """The server, the keys the tests act on, and a viewer token."""

    server: QrcServe
    key_id: str
    viewer_token: str

    def api(self, method: str, path: str, json: Any = None) -> Any:
        """One call as admin through qrc's own PQ client; the decoded JSON answer."""
        with self.server.client() as client:
            answer = client.request(method, API + path, json)
        assert answer.status < 300, (method, path, answer.status, answer.body)
        return answer.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = QrcServe(tmp_path_factory.mktemp("dashboard-data"))
    try:
        with server.client() as client:
            created = client.post(
                API + "/keys/generate", {"name": "e2e-orders", "purpose": "encryption"}
            )
            assert created.status == 201, created.body
            client.post(API + "/keys/generate", {"name": "e2e-signing", "purpose": "signing"})
            viewer = client.post(API + "/tokens", {"name": "e2e-viewer", "role": "viewer"})
            assert viewer.status == 201, viewer.body
        yield Served(server, created.json()["id"], viewer.json()["token"])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, served: Served) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("dashboard-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    assert CERTUTIL is not None
    # docs/dashboard.md (and docs/transport.md): trust the service's ECDSA CA once.
    subprocess.run([CERTUTIL, "-N", "--empty-password", "-d", f"sql:{nssdb}"], check=True)
    subprocess.run(
        [CERTUTIL, "-A", "-d", f"sql:{nssdb}", "-t", "C,,", "-n", "qrc",
         "-i", str(served.server.ecdsa_ca)],
        check=True,
    )  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, env={**os.environ, "HOME": str(home)}
        )
        yield launched
        launched.close()
    print(f"\ndashboard screenshots: {ARTIFACTS}")


@dataclass
class Tab:
    """A page in a fresh context, with what DevTools and the console saw."""

    page: Any
    groups: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def testid(self, name: str) -> Any:
        return self.page.get_by_test_id(name)

    def shot(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle")  # lazily loaded charts included
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _open(browser: Any, served: Served, width: int, height: int) -> Tab:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    tab = Tab(page)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")

    def seen(event: dict[str, Any]) -> None:
        details = event["response"].get("securityDetails")
        if details:
            tab.groups.append(details["keyExchangeGroup"])

    cdp.on("Network.responseReceived", seen)
    page.on("request", lambda request: tab.urls.append(request.url))
    page.on("console", lambda message: tab.console.append(f"{message.type}: {message.text}"))
    answer = page.goto(served.server.url + "/")
    assert answer is not None and answer.status == 200
    return tab


def _sign_in(tab: Tab, token: str) -> None:
    tab.testid("token-input").press_sequentially(token)
    tab.testid("sign-in").click()
    tab.testid("sign-out").wait_for(timeout=WAIT_MS)


def _open_key(tab: Tab, key_id: str) -> Any:
    tab.testid("nav-keys").click()
    row = tab.page.locator(f'[data-testid="key-row"][data-key-id="{key_id}"]')
    row.get_by_role("button").first.click()
    detail = tab.testid("key-detail")
    detail.wait_for(timeout=WAIT_MS)
    return detail


def _clean(tab: Tab, *tokens: str) -> None:
    """No request carried a token in its URL; no page script or style was refused (CSP)."""
    assert tab.urls and not [u for u in tab.urls if any(t in u for t in tokens)]
    refused = [line for line in tab.console if "Content Security Policy" in line]
    assert refused == []


def test_serve_prints_the_dashboard_url(served: Served) -> None:
    expected = f"qrc: dashboard at {served.server.url}/\n"
    assert expected in served.server.lines


def test_admin_signs_in_sees_totals_rotates_and_sees_the_audit_event(
    browser: Any, served: Served
) -> None:
    token = served.server.token
    tab = _open(browser, served, 1280, 900)
    _sign_in(tab, token)
    shown = tab.testid("total-keys")
    shown.wait_for(timeout=WAIT_MS)
    board = served.api("GET", "/dashboard")
    assert int(shown.inner_text().strip()) == board["keyManagementStats"]["totalKeys"] >= 2
    tab.shot("overview-1280")

    detail = _open_key(tab, served.key_id)
    versions = detail.get_by_test_id("key-version")
    versions.first.wait_for(timeout=WAIT_MS)  # the key's own request answered
    assert [v.get_attribute("data-version") for v in versions.all()] == ["1"]
    detail.get_by_test_id("rotate-button").click()
    tab.testid("confirm-button").click()
    detail.locator('[data-testid="key-version"][data-version="2"]').wait_for(timeout=WAIT_MS)
    assert served.api("GET", f"/keys/{served.key_id}")["version"] == 2
    tab.shot("key-rotated-1280")

    tab.testid("nav-audit").click()
    rotation = tab.page.locator(
        '[data-testid="audit-row"][data-event-type="key.rotate"]', has_text=served.key_id
    )
    rotation.first.wait_for(timeout=WAIT_MS)
    assert "v2" in rotation.first.inner_text()
    tab.shot("audit-1280")

    # Every page and API response reached the browser over the hybrid post-quantum group.
    assert tab.groups and set(tab.groups) == {"X25519MLKEM768"}
    _clean(tab, token)
    tab.page.context.close()


def test_viewer_sees_no_management_buttons_and_the_api_refuses_it(
    browser: Any, served: Served
) -> None:
    token = served.viewer_token
    tab = _open(browser, served, 390, 844)
    _sign_in(tab, token)
    tab.testid("total-keys").wait_for(timeout=WAIT_MS)
    tab.shot("overview-390")
    # Nothing wider than the phone's screen: no sideways scrolling of the whole page.
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390

    detail = _open_key(tab, served.key_id)
    detail.get_by_test_id("key-version").first.wait_for(timeout=WAIT_MS)
    for button in ("rotate-button", "revoke-button", "destroy-button"):
        assert tab.testid(button).count() == 0, button
    tab.shot("key-viewer-390")
    before = served.api("GET", f"/keys/{served.key_id}")["version"]

    # The page's own origin and TLS session, the viewer's token, the rotation call itself.
    refused = tab.page.evaluate(
        """async ([url, token]) => {
            const answer = await fetch(url, {
                method: "POST",
                headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
                body: "{}",
            });
            return {status: answer.status, body: await answer.json()};
        }""",
        [f"{API}/keys/{served.key_id}/rotate", token],
    )
    assert refused["status"] == 403
    assert refused["body"]["type"] == "urn:qrc:problem:forbidden"
    assert served.api("GET", f"/keys/{served.key_id}")["version"] == before
    assert set(tab.groups) == {"X25519MLKEM768"}
    _clean(tab, token)
    tab.page.context.close()
