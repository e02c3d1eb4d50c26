"""Peer certificates for mutual TLS (tunnel ends, services, agents) from the private CA.

:class:`qrc.transit.ca.CertificateAuthority` issues server certificates only (extended key
usage ``serverAuth``). A tunnel end is both: the server end is a TLS server that checks a
client certificate, the client end presents one. :func:`issue_peer_certificate` signs an
ML-DSA-65 leaf with ``serverAuth`` and ``clientAuth`` from the same CA directory
(``ca.pem`` + ``ca.key``), and :func:`write_peer_files` stores it as ``NAME.pem`` /
``NAME.key`` (0600). This module is what ``qrc tunnel issue`` and the tests use until the
CA grows client certificates of its own (``qrc ca issue``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qrc.crypto import keyfile
from qrc.crypto.errors import KeyFormatError
from qrc.crypto.schemes import get_signature
from qrc.transit.ca import CA_CERT, CA_KEY, IssuedCertificate, key_usage

__all__ = ["PEER_VALIDITY", "issue_peer_certificate", "write_peer_files"]

# Short-lived by default: a tunnel end or an agent is re-issued, not revoked.
PEER_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(minutes=5)


def _load_ca(
    ca_dir: Path, passphrase: bytes | None
) -> tuple[x509.Certificate, mldsa.MLDSA65PrivateKey]:
    certificate = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    qrc_key = keyfile.load_private_pem(
        (ca_dir / CA_KEY).read_bytes(), passphrase, algorithm="ML-DSA-65"
    )
    key = mldsa.MLDSA65PrivateKey.from_seed_bytes(qrc_key.private_bytes())
    public = certificate.public_key()
    if (
        not isinstance(public, mldsa.MLDSA65PublicKey)
        or public.public_bytes_raw() != key.public_key().public_bytes_raw()
    ):
        raise KeyFormatError(f"{ca_dir / CA_KEY} does not match {ca_dir / CA_CERT}")
    return certificate, key


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name.lower()))
    return out


def issue_peer_certificate(
    ca_dir: str | os.PathLike[str],
    common_name: str,
    names: Sequence[str] = (),
    *,
    passphrase: bytes | None = None,
    validity: datetime.timedelta = PEER_VALIDITY,
    not_before: datetime.datetime | None = None,
) -> IssuedCertificate:
    """A new ML-DSA-65 key and a certificate for ``common_name`` usable as TLS client and
    server (``names``: DNS names or IP addresses for the subject alternative name; the
    common name is added when it is not there). ``not_before`` defaults to now minus five
    minutes; with ``validity`` it sets the expiry (tests make expired ones this way)."""
    if not common_name or common_name != common_name.strip():
        raise ValueError(f"invalid common name {common_name!r}")
    ca_cert, ca_key = _load_ca(Path(ca_dir), passphrase)
    key = mldsa.MLDSA65PrivateKey.generate()
    start = not_before or datetime.datetime.now(datetime.UTC) - _BACKDATE
    end = min(start + validity, ca_cert.not_valid_after_utc)
    all_names = list(dict.fromkeys([*names, common_name]))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(ca=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_general_names(all_names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, None)  # ML-DSA signs the certificate directly (RFC 9881)
    )
    qrc_key = get_signature("ML-DSA-65").load_private(key.private_bytes_raw())
    return IssuedCertificate(certificate, keyfile.private_key_to_pem(qrc_key, None))


def write_peer_files(
    issued: IssuedCertificate, directory: str | os.PathLike[str], name: str
) -> tuple[Path, Path]:
    """Write ``NAME.pem`` (0644) and ``NAME.key`` (0600) in ``directory``; returns both."""
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(issued.private_key_pem)
    cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key
