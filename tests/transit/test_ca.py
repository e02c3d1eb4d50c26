"""The private ML-DSA-65 certificate authority and the server certificate it issues."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from qrc.crypto.errors import KeyFormatError
from qrc.transit.ca import (
    CertificateAuthority,
    TLSFiles,
    default_server_names,
    ensure_server_tls,
    server_certificate_needs_renewal,
)

NAMES = ["localhost", "127.0.0.1", "::1"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_an_ml_dsa_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "tls")
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "ca.pem").read_bytes())
    assert cert == ca.certificate
    assert cert.signature_algorithm_oid.dotted_string == "2.16.840.1.101.3.4.3.18"  # ML-DSA-65
    assert isinstance(cert.public_key(), mldsa.MLDSA65PublicKey)
    cert.verify_directly_issued_by(cert)  # self-signed, signature valid
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert _mode(tmp_path / "tls" / "ca.key") == 0o600
    assert _mode(tmp_path / "tls") == 0o700
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "tls" / "ca.key").read_bytes()


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path)
    with pytest.raises(FileExistsError):
        CertificateAuthority.create(tmp_path)


def test_encrypted_ca_key_needs_its_passphrase(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca.key").read_bytes()
    loaded = CertificateAuthority.load(tmp_path, passphrase=b"correct horse")
    assert loaded.certificate == ca.certificate
    with pytest.raises(KeyFormatError):
        CertificateAuthority.load(tmp_path)
    with pytest.raises(KeyFormatError):
        CertificateAuthority.load(tmp_path, passphrase=b"wrong")


def test_load_refuses_a_key_that_does_not_match(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "a")
    CertificateAuthority.create(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(KeyFormatError):
        CertificateAuthority.load(tmp_path / "a")


def test_server_certificate_verifies_for_its_names(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path)
    issued = ca.issue_server_certificate(["qrc.example", "127.0.0.1", "::1"])
    cert = issued.certificate
    assert isinstance(cert.public_key(), mldsa.MLDSA65PublicKey)
    cert.verify_directly_issued_by(ca.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["qrc.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=89) < lifetime <= datetime.timedelta(days=91)
    # An independent RFC 5280 path validator (pyca's) accepts the chain for the names...
    now = datetime.datetime.now(datetime.UTC)
    builder = PolicyBuilder().store(Store([ca.certificate])).time(now)
    for name in (x509.DNSName("qrc.example"), x509.IPAddress(ipaddress.ip_address("::1"))):
        chain = builder.build_server_verifier(name).verify(cert, [])
        assert chain[-1] == ca.certificate
    # ... and refuses it for another one.
    with pytest.raises(Exception, match=r"(?i)name|subject|san"):
        builder.build_server_verifier(x509.DNSName("other.example")).verify(cert, [])
    assert b"BEGIN PRIVATE KEY" in issued.private_key_pem


def test_issue_rejects_empty_names(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path)
    with pytest.raises(ValueError):
        ca.issue_server_certificate([])
    with pytest.raises(ValueError):
        ca.issue_server_certificate([" spaced "])


def test_ensure_server_tls_creates_then_keeps(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, NAMES)
    assert files == TLSFiles.in_directory(tmp_path / "tls")
    for path in (files.cert, files.key, files.ca, tmp_path / "tls" / "ca.key"):
        assert path.exists()
    assert _mode(files.key) == 0o600
    first = files.cert.read_bytes(), files.ca.read_bytes()
    assert server_certificate_needs_renewal(files, NAMES) is None
    ensure_server_tls(tmp_path, list(reversed(NAMES)))  # same names, any order
    assert (files.cert.read_bytes(), files.ca.read_bytes()) == first


def test_ensure_server_tls_reissues_when_needed(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, NAMES)
    ca_pem = files.ca.read_bytes()
    original = files.cert.read_bytes()

    # New host names: reissued, same CA.
    ensure_server_tls(tmp_path, [*NAMES, "qrc.internal"])
    assert files.cert.read_bytes() != original
    assert files.ca.read_bytes() == ca_pem
    assert server_certificate_needs_renewal(files, [*NAMES, "qrc.internal"]) is None

    # Expiring soon: reissued.
    assert (
        server_certificate_needs_renewal(
            files, [*NAMES, "qrc.internal"], renew_before=datetime.timedelta(days=365)
        )
        == "expiring"
    )
    before = files.cert.read_bytes()
    ensure_server_tls(tmp_path, [*NAMES, "qrc.internal"], renew_before=datetime.timedelta(days=365))
    assert files.cert.read_bytes() != before

    # Missing key, or a key from elsewhere: reissued.
    files.key.unlink()
    assert server_certificate_needs_renewal(files, NAMES) == "missing"
    ensure_server_tls(tmp_path, NAMES)
    other = CertificateAuthority.create(tmp_path / "other").issue_server_certificate(NAMES)
    files.key.write_bytes(other.private_key_pem)
    assert server_certificate_needs_renewal(files, NAMES) == "key does not match certificate"

    # A certificate from another CA: reissued by ours.
    files.cert.write_bytes(other.certificate_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    assert server_certificate_needs_renewal(files, NAMES, ca_certificate=ca_cert) == (
        "not issued by this CA"
    )
    ensure_server_tls(tmp_path, NAMES)
    x509.load_pem_x509_certificate(files.cert.read_bytes()).verify_directly_issued_by(ca_cert)

    files.cert.write_bytes(b"garbage")
    assert server_certificate_needs_renewal(files, NAMES) == "unreadable"


def test_ensure_with_encrypted_ca(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, NAMES, ca_passphrase=b"pw")
    files.cert.unlink()
    with pytest.raises(KeyFormatError):
        ensure_server_tls(tmp_path, NAMES)  # renewing needs the CA key
    ensure_server_tls(tmp_path, NAMES, ca_passphrase=b"pw")
    assert files.cert.exists()


def test_default_server_names() -> None:
    assert default_server_names("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert default_server_names("10.1.2.3")[-1] == "10.1.2.3"
    everywhere = default_server_names("0.0.0.0")
    assert "localhost" in everywhere and len(everywhere) >= 3


def test_no_world_readable_secret(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files = ensure_server_tls(tmp_path, NAMES)
    finally:
        os.umask(old)
    assert _mode(files.key) == 0o600
    assert _mode(tmp_path / "tls" / "ca.key") == 0o600
