"""The classical (ECDSA) half of the private CA, and a listener's certificates in both families.

Browsers negotiate ``X25519MLKEM768`` but cannot trust an ML-DSA root (no browser trust store
holds one yet), so the server also holds an ECDSA chain from the same private CA and
OpenSSL picks per handshake (:mod:`qrc.transit.listener`). Files, beside those of
:mod:`qrc.transit.ca` in ``DIR/tls``::

    ca-ecdsa.pem        ECDSA P-384 root (what browsers and curl trust)
    ca-ecdsa.key        its private key, PKCS#8, mode 0600 (encrypted with the CA passphrase)
    server-ecdsa.pem    ECDSA P-256 server certificate (leaf only)
    server-ecdsa.key    its private key, mode 0600
    ca.pem              the trust bundle: the ML-DSA root, then the ECDSA root

Profiles follow RFC 5280 (basic constraints and key usage critical, SKI/AKI, SAN).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from qrc.transit.ca import (
    CA_VALIDITY,
    RENEW_BEFORE,
    SERVER_VALIDITY,
    TLSFiles,
    _write_file,
    ensure_server_tls,
    renewal_reason,
    root_certificate,
    server_certificate,
)

__all__ = [
    "CERTIFICATE_POLICIES",
    "CertificatePolicy",
    "EcdsaAuthority",
    "ensure_listener_tls",
]

CertificatePolicy = Literal["ml-dsa", "dual", "ecdsa"]
CERTIFICATE_POLICIES: Final = ("ml-dsa", "dual", "ecdsa")
ECDSA_CA_CERT, ECDSA_CA_KEY = "ca-ecdsa.pem", "ca-ecdsa.key"
ECDSA_SERVER_CERT, ECDSA_SERVER_KEY = "server-ecdsa.pem", "server-ecdsa.key"
_PEM_END: Final = b"-----END CERTIFICATE-----"


def _private_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


class EcdsaAuthority:
    """The ECDSA P-384 root of the private CA, in ``directory`` beside the ML-DSA one."""

    __slots__ = ("certificate", "directory", "key")

    def __init__(
        self, directory: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.directory, self.certificate, self.key = directory, certificate, key

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        d = Path(directory)
        return (d / ECDSA_CA_CERT).exists() and (d / ECDSA_CA_KEY).exists()

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes | None = None,
        common_name: str = "qrc private CA (ECDSA)",
        validity: datetime.timedelta = CA_VALIDITY,
    ) -> EcdsaAuthority:
        """A new self-signed ECDSA P-384 root; refuses to overwrite one."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (d / ECDSA_CA_KEY).exists() or (d / ECDSA_CA_CERT).exists():
            raise FileExistsError(f"an ECDSA certificate authority already exists in {d}")
        key = ec.generate_private_key(ec.SECP384R1())
        certificate = root_certificate(key, common_name, validity, hashes.SHA384())
        _write_file(d / ECDSA_CA_KEY, _private_pem(key, passphrase), 0o600)
        _write_file(d / ECDSA_CA_CERT, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(d, certificate, key)

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None
    ) -> EcdsaAuthority:
        d = Path(directory)
        certificate = x509.load_pem_x509_certificate((d / ECDSA_CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((d / ECDSA_CA_KEY).read_bytes(), passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or (
            key.public_key() != certificate.public_key()
        ):
            raise ValueError(f"{d / ECDSA_CA_KEY} does not match {d / ECDSA_CA_CERT}")
        return cls(d, certificate, key)

    def issue_server_certificate(
        self, names: Sequence[str], *, validity: datetime.timedelta = SERVER_VALIDITY
    ) -> tuple[x509.Certificate, bytes]:
        """A new ECDSA P-256 server key and certificate (key as unencrypted PKCS#8 PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = server_certificate(
            key.public_key(), names, self.certificate, self.key, validity, hashes.SHA384()
        )
        return certificate, _private_pem(key, None)


def _ecdsa_needs_renewal(
    cert_file: Path,
    key_file: Path,
    names: Sequence[str],
    root: x509.Certificate,
    renew_before: datetime.timedelta,
) -> str | None:
    if not cert_file.exists() or not key_file.exists():
        return "missing"
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except (ValueError, TypeError):
        return "unreadable"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or (
        key.public_key() != certificate.public_key()
    ):
        return "key does not match certificate"
    return renewal_reason(certificate, names, renew_before, root)


def _bundle(ca_file: Path, root: x509.Certificate) -> None:
    """Make ``ca.pem`` hold the ECDSA root after the ML-DSA one (once)."""
    current = ca_file.read_bytes()
    pem = root.public_bytes(serialization.Encoding.PEM)
    if pem in current:
        return
    first = current.split(_PEM_END, 1)[0] + _PEM_END + b"\n"
    _write_file(ca_file, first + pem, 0o644)


def ensure_listener_tls(
    data_dir: str | os.PathLike[str],
    names: Sequence[str],
    *,
    certificates: CertificatePolicy = "dual",
    ca_passphrase: bytes | None = None,
    validity: datetime.timedelta = SERVER_VALIDITY,
    renew_before: datetime.timedelta = RENEW_BEFORE,
) -> TLSFiles:
    """:func:`~qrc.transit.ca.ensure_server_tls` for both families: the ML-DSA CA and server
    certificate always (``ca.pem`` is what qrc's clients trust), and with ``dual`` or
    ``ecdsa`` the ECDSA root and server certificate too, each (re)issued when missing,
    expiring, for other names or not from this CA. ``TLSFiles.ecdsa_*`` name the ECDSA files;
    ``TLSFiles.cert`` is None-free but unused under ``ecdsa``."""
    if certificates not in CERTIFICATE_POLICIES:
        raise ValueError(f"certificate policy must be one of {', '.join(CERTIFICATE_POLICIES)}")
    files = ensure_server_tls(
        data_dir, names, ca_passphrase=ca_passphrase, validity=validity, renew_before=renew_before
    )
    tls_dir = Path(data_dir) / "tls"
    if EcdsaAuthority.exists(tls_dir):
        root = x509.load_pem_x509_certificate((tls_dir / ECDSA_CA_CERT).read_bytes())
        authority: EcdsaAuthority | None = None
    else:
        authority = EcdsaAuthority.create(tls_dir, passphrase=ca_passphrase)
        root = authority.certificate
    _bundle(files.ca, root)
    files = replace(
        files,
        ecdsa_cert=tls_dir / ECDSA_SERVER_CERT,
        ecdsa_key=tls_dir / ECDSA_SERVER_KEY,
        ecdsa_ca=tls_dir / ECDSA_CA_CERT,
    )
    if certificates == "ml-dsa":
        return replace(files, ecdsa_cert=None, ecdsa_key=None)
    ecdsa_cert, ecdsa_key = tls_dir / ECDSA_SERVER_CERT, tls_dir / ECDSA_SERVER_KEY
    reason = _ecdsa_needs_renewal(ecdsa_cert, ecdsa_key, names, root, renew_before)
    if reason is not None:
        if authority is None:
            authority = EcdsaAuthority.load(tls_dir, passphrase=ca_passphrase)
        certificate, key_pem = authority.issue_server_certificate(names, validity=validity)
        _write_file(ecdsa_key, key_pem, 0o600)
        _write_file(ecdsa_cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return files
