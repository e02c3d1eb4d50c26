"""Failed authentication is limited per source address before any database work, and the
limiters' buckets do not grow without bound.

The attack runs over real sockets against the API served by Daphne in a subprocess: a
flood of guessed tokens from one address, while a real token keeps working.
"""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.api.deps import KnownTokens
from qrc.api.ratelimit import RateLimiter
from qrc.transit.client import PQClient, Response
from tests.api.api_server import ApiProcess
from tests.api.conftest import B

FLOOD = 300


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ApiProcess]:
    """A server of the test's own (its limits are per process)."""
    process = ApiProcess(tmp_path / "data")
    yield process
    process.stop()


def _guess() -> str:
    return "qrc_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _flood(client: PQClient, n: int) -> list[Response]:
    return [
        client.get(B + "/keys", headers={"Authorization": f"Bearer {_guess()}"}) for _ in range(n)
    ]


def _auth_failures_recorded(server: ApiProcess) -> int:
    with PQClient(server.url, token=server.tokens["admin"]) as admin:
        page = admin.get(
            B + "/security/events",
            params={"event_type": "authentication_failure", "limit": 1000},
        )
        assert page.status == 200, page.text
        return len(page.json()["events"])


def _encrypt(client: PQClient, key: str) -> Response:
    plaintext = base64.b64encode(b"payload").decode()
    return client.post(B + "/encrypt", {"key": key, "plaintext": plaintext, "context": "t/1"})


def test_a_flood_of_guessed_tokens_is_refused_before_the_store(server: ApiProcess) -> None:
    key = "flood-key"
    with PQClient(server.url, token=server.tokens["admin"]) as admin:
        created = admin.post(B + "/keys/generate", {"name": key, "purpose": "encryption"})
        assert created.status == 201, created.text
    before = _auth_failures_recorded(server)
    valid = PQClient(server.url, token=server.tokens["admin"])
    assert _encrypt(valid, key).status == 200
    started = time.monotonic()
    statuses: list[int] = []
    with PQClient(server.url) as attacker:
        for _ in range(FLOOD // 50):
            answers = _flood(attacker, 50)
            statuses += [a.status for a in answers]
            # The real token, from the same address, in the middle of the flood.
            assert _encrypt(valid, key).status == 200
        refused = [a for a in answers if a.status == 429]
    elapsed = time.monotonic() - started
    assert set(statuses) <= {401, 429}
    # A burst of 20 failures, then one a second: everything else is refused outright.
    allowed = 20 + int(elapsed) + 2
    assert statuses.count(401) <= allowed, (statuses.count(401), elapsed)
    assert statuses.count(429) >= FLOOD - allowed
    assert refused and all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert refused[0].json()["type"] == "urn:qrc:problem:rate-limited"
    # Only the failures that got through were recorded: the refused ones did no store work.
    recorded = _auth_failures_recorded(server) - before
    assert recorded == statuses.count(401)
    valid.close()


def test_a_known_token_works_from_a_refused_address_after_the_cache_expired(
    server: ApiProcess,
) -> None:
    viewer = PQClient(server.url, token=server.tokens["viewer"])
    assert viewer.get(B + "/keys").status == 200
    time.sleep(5.5)  # past the key service's 5 s token cache: the next use reads the store
    with PQClient(server.url) as attacker:
        answers = _flood(attacker, 40)
    assert answers[-1].status == 429  # the address is refused...
    assert viewer.get(B + "/keys").status == 200  # ...but this token authenticated before
    viewer.close()


def _raw_get(server: ApiProcess, source: str, token: str) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), 30, (source, 0)) as sock:
        sock.sendall(
            f"GET {B}/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_the_limit_is_per_source_address(server: ApiProcess) -> None:
    with PQClient(server.url) as attacker:
        assert _flood(attacker, 40)[-1].status == 429
    # Another loopback address has its own budget.
    answer = _raw_get(server, "127.0.0.2", _guess())
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_idle_buckets_are_evicted() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 20.0, sweep_seconds=10.0, clock=lambda: now[0])
    for i in range(1000):
        for _ in range(20):  # each address spends its whole burst
            limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 1000
    now[0] += 15.0  # a sweep runs (every 10 s), but nothing has refilled (20 at 1/s)
    limiter.take("10.9.9.9")
    assert len(limiter) == 1001
    now[0] += 10.0  # refilled: the same as no bucket at all
    limiter.take("10.9.9.8")
    assert len(limiter) == 1  # the sweep in take() kept only the one just spent from
    now[0] += 25.0
    assert limiter.sweep() == 1 and len(limiter) == 0


def test_buckets_are_capped() -> None:
    limiter = RateLimiter(1.0, 20.0, max_keys=100)
    for i in range(1000):
        limiter.take(f"k{i}")
    assert len(limiter) == 100
    # The most recently used are kept: an active flooder is not forgotten.
    for _ in range(25):
        limiter.take("k999")
    assert limiter.wait("k999") > 0


def test_an_empty_bucket_is_not_dropped_early() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 2.0, sweep_seconds=0.0, clock=lambda: now[0])
    assert limiter.take("a") == 0 and limiter.take("a") == 0
    assert limiter.take("a") > 0
    now[0] += 0.5
    assert limiter.sweep() == 0
    assert limiter.wait("a") > 0


def test_known_tokens_are_bounded() -> None:
    known = KnownTokens(max_tokens=10)
    for i in range(100):
        known.add(f"qrc_{i}")
    assert "qrc_99" in known and "qrc_0" not in known
    assert "qrc_never" not in known
