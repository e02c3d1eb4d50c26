"""The inventory of a real key service, and PEM scanning."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from qrc.keys.service import KeyService
from qrc.monitor.cbom import to_cbom_json
from qrc.monitor.inventory import build_inventory
from qrc.monitor.scan import scan_paths
from qrc.transit.listener import HandshakeCounters, HandshakeRecord
from qrc.transit.pki import ensure_listener_tls
from tests.monitor.conftest import self_signed
from tests.monitor.test_cbom import valid_cbom


def test_keys_carry_algorithm_category_state_and_custody(populated: KeyService) -> None:
    inv = build_inventory(populated)
    by_name = {k.name: k for k in inv.keys if not k.system}
    assert set(by_name) == {"kem-768", "kem-512", "sig-65", "wrap"}
    assert by_name["kem-768"].nist_level == 3
    assert by_name["kem-512"].nist_level == 1
    assert by_name["sig-65"].algorithm == "ML-DSA-65"
    assert all(k.state == "active" and k.quantum_safe for k in by_name.values())
    assert {k.custody for k in inv.keys} == {inv.custody} and inv.custody
    assert all(k.last_activity_at is not None and k.age_days >= 0 for k in by_name.values())


def test_encrypted_objects_counted_by_key_algorithm_and_type(populated: KeyService) -> None:
    counts = {
        (o.key_name, o.algorithm, o.data_type): o.count for o in build_inventory(populated).objects
    }
    assert counts == {
        ("kem-768", "ML-KEM-768", "invoice"): 2,
        ("kem-768", "ML-KEM-768", "ledger"): 3,
        ("kem-512", "ML-KEM-512", "ledger"): 1,
    }


def test_deprecated_algorithm_is_flagged(populated: KeyService, deprecated: str) -> None:
    inv = build_inventory(populated)
    flagged = [k.name for k in inv.keys if k.deprecated]
    assert flagged == ["kem-512"]
    assert inv.summary()["deprecated_keys"] == 1
    status = {a.id: a.as_dict()["status"] for a in inv.algorithms()}
    assert status[deprecated] == "deprecated" and status["ML-KEM-768"] == "active"


def test_scanned_rsa_and_ecdsa_are_classical(service: KeyService, legacy_dir: Path) -> None:
    inv = build_inventory(service, scan=[legacy_dir])
    found = {(a.kind, a.algorithm) for a in inv.found}
    assert ("private-key", "ECDSA-P256") in found
    certs = [a for a in inv.found if a.kind == "certificate"]
    assert {c.key_algorithm for c in certs} == {"RSA-2048", "ECDSA-P256"}
    assert all(a.classical for a in inv.found)
    assert inv.summary()["classical_assets_found"] == 3


def test_tls_directory_certificates(service: KeyService, tmp_path: Path) -> None:
    ensure_listener_tls(tmp_path, ["localhost"], certificates="dual")
    inv = build_inventory(service, tls_dir=tmp_path / "tls")
    by_subject = {(c.subject, c.algorithm, c.quantum_safe) for c in inv.certificates}
    assert len(inv.certificates) == 4, by_subject  # two roots, two leaves, each once
    assert all(c.not_after is not None for c in inv.certificates)
    pq = [c for c in inv.certificates if c.algorithm == "ML-DSA-65"]
    assert len(pq) == 2 and all(c.quantum_safe for c in pq)
    classical = [c for c in inv.certificates if c.classical]
    assert {c.key_algorithm for c in classical} == {"ECDSA-P384", "ECDSA-P256"}


def test_scan_of_a_missing_path_fails(tmp_path: Path) -> None:
    try:
        scan_paths([tmp_path / "nope.pem"])
    except FileNotFoundError:
        return
    raise AssertionError("a missing path must fail")


def test_json_round_trips(populated: KeyService, legacy_dir: Path) -> None:
    data = json.loads(json.dumps(build_inventory(populated, scan=[legacy_dir]).as_dict()))
    assert data["summary"]["keys"] == len(data["keys"])
    assert {"algorithms", "certificates", "encrypted_objects", "tls", "found"} <= data.keys()


def test_tls_mode_and_handshake_counters(service: KeyService) -> None:
    counters = HandshakeCounters()
    for group in ("X25519MLKEM768", "X25519MLKEM768", "X25519", "x25519"):
        counters.count(HandshakeRecord(group, "TLS_AES_256_GCM_SHA384", "mldsa65", "ML-DSA-65", 1))
    counters.count_refused("handshake_failure")
    assert build_inventory(service).handshakes.tls_mode == service.current_policy()["tls_mode"]
    seen = build_inventory(service, counters=counters, tls_mode="hybrid").handshakes
    assert seen.tls_mode == "hybrid" and seen.refused == {"handshake_failure": 1}
    assert seen.classical_share == 0.5


def test_a_named_classical_tls_endpoint_is_probed(service: KeyService, tmp_path: Path) -> None:
    """A real TLS 1.3 server with an ECDSA certificate and only X25519: found as classical."""
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "cert.pem").write_bytes(self_signed(key, "legacy.example"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if hasattr(ctx, "set_groups"):
        ctx.set_groups("X25519")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        inv = build_inventory(service, endpoints=[f"127.0.0.1:{port}"])
    finally:
        thread.join(10)
        listener.close()
    (probe,) = inv.endpoints
    assert probe.error is None and probe.protocol == "TLSv1.3"
    assert probe.group is not None and not probe.post_quantum
    (cert,) = probe.certificates
    assert cert.key_algorithm == "ECDSA-P256" and cert.classical
    assert inv.summary()["classical_endpoints"] == 1
    components = valid_cbom(to_cbom_json(inv))["components"]
    (tls,) = [c for c in components if c["bom-ref"].startswith("endpoint:")]
    assert tls["cryptoProperties"]["protocolProperties"]["version"] == "1.3"
    refused = build_inventory(service, endpoints=[f"127.0.0.1:{port}"]).endpoints[0]
    assert refused.error is not None and refused.error.startswith("connect")
