"""The private CA: roots and intermediates in both families with their keys held by the key
service (reserved: no generic call can use, suspend or destroy them), leaf certificates that
``openssl verify`` (3.0, ECDSA) and OpenSSL 4 (ML-DSA) accept, revocation and CRLs."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.errors import OperationNotPermitted
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from qrc.transit.authority import FAMILIES, PrivateCA, ServiceCAKeys
from tests.keys.conftest import FAST_ARGON2

OPENSSL = shutil.which("openssl")


@pytest.fixture
def ca(tmp_path: Path, service: KeyService) -> PrivateCA:
    authority = PrivateCA(tmp_path / "ca", ServiceCAKeys(service.keys, "test"))
    authority.init()
    return authority


def test_roots_and_intermediates_in_both_families(ca: PrivateCA) -> None:
    expected = {
        ("ml-dsa", "root"): mldsa.MLDSA87PublicKey,
        ("ml-dsa", "intermediate"): mldsa.MLDSA65PublicKey,
        ("ecdsa", "root"): ec.EllipticCurvePublicKey,
        ("ecdsa", "intermediate"): ec.EllipticCurvePublicKey,
    }
    for (family, level), cls in expected.items():
        cert = ca.certificate(family, level)
        assert isinstance(cert.public_key(), cls)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        assert constraints.value.path_length == (1 if level == "root" else 0)
    root = ca.certificate("ecdsa", "root")
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp384r1"
    ca.certificate("ml-dsa", "intermediate").verify_directly_issued_by(
        ca.certificate("ml-dsa", "root")
    )
    assert ca.trust_file.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    with pytest.raises(FileExistsError):
        ca.init()


def test_ca_keys_are_reserved_keys_of_the_service(ca: PrivateCA, service: KeyService) -> None:
    for name in ("qrc-ca-ml-dsa-root", "qrc-ca-ecdsa-intermediate"):
        info = service.keys.get_key(name)
        assert info.labels == {"qrc.system": "ca"}
        with pytest.raises(OperationNotPermitted):
            service.keys.suspend(name, actor="test")
        with pytest.raises(OperationNotPermitted):
            service.keys.schedule_destruction(name, actor="test")
        with pytest.raises(OperationNotPermitted):
            service.crypto.sign(name, b"x", actor="test")


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_leaves_verify_and_revocation_lands_in_the_crl(ca: PrivateCA, tmp_path: Path) -> None:
    assert OPENSSL is not None
    chain, _key, record = ca.issue("billing", family="ecdsa", identity="c_1")
    (tmp_path / "leaf.pem").write_bytes(chain)
    leaf = x509.load_pem_x509_certificate(chain)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(
        days=7, minutes=5
    )
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku
    verify = [
        OPENSSL,
        "verify",
        "-CAfile",
        str(ca.trust_file),
        "-untrusted",
        str(ca.directory / "intermediate-ecdsa.pem"),
    ]
    ok = subprocess.run(
        [*verify, str(tmp_path / "leaf.pem")], check=False, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    crl_check = [*verify, "-crl_check", "-CRLfile", str(ca.crl_file("ecdsa"))]
    assert (
        subprocess.run(
            [*crl_check, str(tmp_path / "leaf.pem")], check=False, capture_output=True
        ).returncode
        == 0
    )

    ca.revoke(record.serial, "key_compromise")
    crl = x509.load_pem_x509_crl(ca.crl_file("ecdsa").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    refused = subprocess.run(
        [*crl_check, str(tmp_path / "leaf.pem")], check=False, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
    assert ca.find(record.serial).revoked_at is not None
    with pytest.raises(ValueError, match="revoked"):
        ca.renew(record.serial)


def test_ml_dsa_leaf_chains_to_the_ml_dsa_root_and_renews(ca: PrivateCA) -> None:
    chain, _key, record = ca.issue(
        "agent-7", family="ml-dsa", kind="server", names=["agent7.local"]
    )
    leaf = x509.load_pem_x509_certificate(chain)
    leaf.verify_directly_issued_by(ca.certificate("ml-dsa", "intermediate"))
    assert isinstance(leaf.public_key(), mldsa.MLDSA65PublicKey)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agent7.local"]
    _chain, _key2, renewed = ca.renew(record.serial)
    assert renewed.serial != record.serial
    assert (renewed.subject, renewed.names, renewed.kind) == ("agent-7", ["agent7.local"], "server")
    assert [r.serial for r in ca.records()] == [record.serial, renewed.serial]
    with pytest.raises(ValueError, match="unknown revocation reason"):
        ca.revoke(record.serial, "because")


def test_ca_keys_are_in_the_backups(ca: PrivateCA, service: KeyService, tmp_path: Path) -> None:
    result = service.backups.create(threshold=2, shares=2, actor="test:backup")
    db = Database(f"sqlite:///{tmp_path / 'restored.db'}")
    db.upgrade()
    custody = LocalCustody.create(tmp_path / "restored.kek", "another site", params=FAST_ARGON2)
    restored = KeyService(db, Keyring(custody))
    try:
        restored.backups.restore(result.data, result.shares, actor="test:restore")
        # The same CA files, its keys from the restored service: what it signs chains up.
        again = PrivateCA(ca.directory, ServiceCAKeys(restored.keys, "test"))
        for family in FAMILIES:
            chain, _key, _record = again.issue("after-restore", family=family)
            x509.load_pem_x509_certificate(chain).verify_directly_issued_by(
                ca.certificate(family, "intermediate")
            )
    finally:
        restored.close()
