"""A real ``qrc serve`` with QRC_FEED_PUBLISHER_KEY and QRC_FEED_URL: its feed job loads the
feed, POST /protocols/feed takes the next one and refuses a forged one, over PQ TLS."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qrc.crypto.base import SigningKey
from qrc.crypto.keyfile import public_key_to_pem
from tests.monitor.test_feed import _tamper, publisher_key, sign  # noqa: F401 (fixtures)
from tests.server.serve_process import API, QrcServe


def test_a_served_feed_end_to_end(
    tmp_path: Path,
    publisher_key: SigningKey,  # noqa: F811
    sign: Callable[..., bytes],  # noqa: F811
) -> None:
    key_file, source = tmp_path / "publisher.pub", tmp_path / "feed.signed.json"
    key_file.write_bytes(public_key_to_pem(publisher_key.public_key()))
    source.write_bytes(sign(1, algorithms=[{"id": "HQC-128", "status": "disallowed"}]))
    env = {"QRC_FEED_PUBLISHER_KEY": str(key_file), "QRC_FEED_URL": str(source)}
    server = QrcServe(tmp_path / "data", env)
    try:
        with server.client() as client:
            deadline = time.monotonic() + 90  # bounds a hung job; no timing is asserted
            while True:
                landscape = client.get(API + "/protocols/feed").json()
                if landscape["feed"] is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert landscape["configured"] and landscape["feed"]["sequence"] == 1, landscape
            statuses = client.get(API + "/algorithms/status").json()["algorithms"]
            assert {a["id"]: a["status"] for a in statuses}["HQC-128"] == "disallowed"

            json_type = {"Content-Type": "application/json"}
            accepted = client.post(API + "/protocols/feed", body=sign(2), headers=json_type)
            assert accepted.status == 200, accepted.body
            assert {c["algorithm"] for c in accepted.json()["changes"]} == {"ML-KEM-512"}
            forged = client.post(API + "/protocols/feed", body=_tamper(sign(3)), headers=json_type)
            assert forged.status == 422 and forged.json()["reason"] == "signature"
            old = client.post(API + "/protocols/feed", body=sign(1), headers=json_type)
            assert old.status == 409 and old.json()["reason"] == "rollback"
        refused = server.security_events("threat_feed_refused")
        assert [e["details"]["reason"] for e in refused] == ["signature", "rollback"]  # type: ignore[index]
        assert len(server.security_events("algorithm_status_changed")) == 2
    finally:
        server.stop()
