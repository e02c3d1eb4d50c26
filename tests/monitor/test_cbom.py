"""The inventory as a CycloneDX 1.6 CBOM, validated against the 1.6 JSON schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from qrc.keys.service import KeyService
from qrc.monitor.cbom import to_cbom_json
from qrc.monitor.inventory import build_inventory
from qrc.transit.pki import ensure_listener_tls


def valid_cbom(text: str) -> dict[str, Any]:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error
    data: dict[str, Any] = json.loads(text)
    assert data["specVersion"] == "1.6"
    return data


def _by_type(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in data["components"]:
        out.setdefault(c["cryptoProperties"]["assetType"], []).append(c)
    return out


def test_cbom_validates_and_maps_every_asset(
    populated: KeyService, deprecated: str, legacy_dir: Path, tmp_path: Path
) -> None:
    ensure_listener_tls(tmp_path, ["localhost"], certificates="dual")
    inv = build_inventory(populated, tls_dir=tmp_path / "tls", scan=[legacy_dir])
    data = valid_cbom(to_cbom_json(inv))
    kinds = _by_type(data)
    refs = {c["bom-ref"] for c in data["components"]}

    algorithms = {c["name"]: c for c in kinds["algorithm"]}
    kem = algorithms["ML-KEM-768"]["cryptoProperties"]
    assert kem["algorithmProperties"]["primitive"] == "kem"
    assert kem["algorithmProperties"]["nistQuantumSecurityLevel"] == 3
    assert kem["oid"].startswith("2.16.840.1.101.3.4.4.")
    props = {p["name"]: p["value"] for p in algorithms[deprecated]["properties"]}
    assert props["qrc:status"] == "deprecated"
    for classical in ("ECDSA-P256", "ECDSA-P384", "sha256WithRSAEncryption"):
        level = algorithms[classical]["cryptoProperties"]["algorithmProperties"]
        assert level["nistQuantumSecurityLevel"] == 0, classical

    keys = [c for c in kinds["related-crypto-material"] if c["bom-ref"].startswith("key:")]
    assert len(keys) == len(inv.keys)
    for key in keys:
        material = key["cryptoProperties"]["relatedCryptoMaterialProperties"]
        assert material["algorithmRef"] in refs and material["state"] == "active"

    certificates = kinds["certificate"]
    assert len(certificates) == 4 + 2  # the tls directory's four, the bundle's two
    for cert in certificates:
        assert cert["cryptoProperties"]["certificateProperties"]["signatureAlgorithmRef"] in refs


def test_cbom_of_an_empty_service_validates(service: KeyService) -> None:
    data = valid_cbom(to_cbom_json(build_inventory(service)))
    assert data["metadata"]["component"]["name"] == "qrc"
