"""``qrc serve`` with both sinks configured: what its service records reaches a signed
webhook and a syslog receiver, and its checkpoints verify at the SIEM."""

from __future__ import annotations

import socket
from pathlib import Path

from qrc.keys.audit.anchor import ANCHOR_FILE, FileAnchor
from qrc.keys.audit.note import verify_note
from qrc.transit.ca import TLSFiles
from tests.monitor.test_sinks import SECRET, Verifier, WebhookReceiver, tls_files  # noqa: F401
from tests.monitor.test_sinks_syslog import parse_syslog
from tests.server.serve_process import API, QrcServe


def test_a_running_server_sends_security_events_and_checkpoints(
    tmp_path: Path,
    tls_files: TLSFiles,  # noqa: F811
) -> None:
    webhook = WebhookReceiver(tls_files)
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(60)
    env = {
        "QRC_WEBHOOK_URL": webhook.url,
        "QRC_WEBHOOK_SECRET": SECRET.decode(),
        "QRC_WEBHOOK_CA_FILE": str(tls_files.ca),
        "QRC_SYSLOG_ADDRESS": f"udp://127.0.0.1:{syslog.getsockname()[1]}",
        "QRC_CHECKPOINT_SECONDS": "0.2",
        "QRC_SINK_RETRY_SECONDS": "0.05",
    }
    server = QrcServe(tmp_path / "data", env)
    try:
        with server.client() as client:
            bad = client.request(
                "GET", f"{API}/keys", headers={"Authorization": "Bearer not-a-token"}
            )
            assert bad.status == 401
        # The failed authentication, then (within a checkpoint interval) its checkpoint.
        kinds: list[str] = []
        while "audit_checkpoint" not in kinds or "authentication_failure" not in kinds:
            message = parse_syslog(syslog.recv(65536))
            kinds.append(str(message["params"]["type"]))  # type: ignore[index]
        metrics = server.metrics()
    finally:
        server.stop()
        syslog.close()
        webhook.close()
    verifier = Verifier(secret=SECRET)
    events = [verifier.accept(d) for d in webhook.accepted]
    types = [e["type"] for e in events]
    assert "authentication_failure" in types and "audit_checkpoint" in types
    # The SIEM pinned the audit public key out of band: here, from the node's anchor file.
    pinned = list(FileAnchor(tmp_path / "data" / ANCHOR_FILE).keys().values())
    checkpoints = [e["data"] for e in events if e["kind"] == "audit_checkpoint"]
    for data in checkpoints:
        assert isinstance(data, dict)
        assert verify_note(str(data["note"]).encode(), pinned).seq == data["seq"]
    assert 'qrc_sink_events_total{sink="webhook",outcome="queued"}' in metrics
