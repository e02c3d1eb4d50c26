"""A private post-quantum certificate authority for the service's TLS.

Everything is ML-DSA-65 (FIPS 204; certificates per RFC 9881): the self-signed CA
certificate, the CA's signatures, and the server key. Files, in one directory (``DIR/tls``
for the service)::

    ca.pem       CA certificate: what clients trust (not secret)
    ca.key       CA private key, PKCS#8, mode 0600
    server.pem   server certificate (leaf only)
    server.key   server private key, PKCS#8, unencrypted, mode 0600

``ca.key`` is encrypted (PKCS#8 PBES2, :mod:`qrc.crypto.keyfile`) when a passphrase is
given, else stored plain with mode 0600 in a 0700 directory, like ``server.key``, which
the server must read unattended at every start. A CA passphrase then guards only the
issuing of certificates: renewing the server certificate needs it.

A later issue grows this into a full private CA (client certificates for mutual TLS,
revocation); the file layout and :class:`CertificateAuthority` are its starting point.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qrc.crypto import keyfile
from qrc.crypto.errors import KeyFormatError
from qrc.crypto.schemes import get_signature

__all__ = [
    "CA_VALIDITY",
    "RENEW_BEFORE",
    "SERVER_VALIDITY",
    "CertificateAuthority",
    "IssuedCertificate",
    "TLSFiles",
    "default_server_names",
    "ensure_server_tls",
    "key_usage",
    "renewal_reason",
    "root_certificate",
    "server_certificate",
    "server_certificate_needs_renewal",
]

CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=90)
# Renew once a third of the lifetime is left, as ACME clients do.
RENEW_BEFORE = datetime.timedelta(days=30)
# Tolerate clocks that run a little behind ours.
_BACKDATE = datetime.timedelta(minutes=5)

_ALGORITHM = "ML-DSA-65"
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"


@dataclass(frozen=True)
class TLSFiles:
    """Where a server's TLS material lives: certificate, private key, and the CA to trust."""

    cert: Path
    key: Path
    ca: Path
    ecdsa_cert: Path | None = None
    """The ECDSA server certificate held beside the ML-DSA one (:mod:`qrc.transit.pki`)."""
    ecdsa_key: Path | None = None
    ecdsa_ca: Path | None = None
    """The ECDSA root alone (what a browser's trust store imports)."""

    @classmethod
    def in_directory(cls, directory: str | os.PathLike[str]) -> TLSFiles:
        """The standard file names inside ``directory`` (e.g. ``DIR/tls``)."""
        d = Path(directory)
        return cls(cert=d / SERVER_CERT, key=d / SERVER_KEY, ca=d / CA_CERT)


@dataclass(frozen=True)
class IssuedCertificate:
    """A freshly issued certificate with its private key (PKCS#8 PEM, unencrypted)."""

    certificate: x509.Certificate
    private_key_pem: bytes

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temporary file + rename), created with ``mode`` from the start."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed it; never widened.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _split_names(
    names: Iterable[str],
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in names:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            if not name or name != name.strip():
                raise ValueError(f"invalid host name {name!r}") from None
            if name.lower() not in dns:
                dns.append(name.lower())
        else:
            if ip not in ips:
                ips.append(ip)
    if not dns and not ips:
        raise ValueError("a server certificate needs at least one host name or IP address")
    return dns, ips


def _san_names(certificate: x509.Certificate) -> set[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    return dns | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def _requested_names(names: Iterable[str]) -> set[str]:
    dns, ips = _split_names(names)
    return set(dns) | {str(ip) for ip in ips}


class CertificateAuthority:
    """A private CA: an ML-DSA-65 key and its self-signed certificate in one directory."""

    __slots__ = ("_certificate", "_directory", "_key")

    def __init__(
        self, directory: Path, certificate: x509.Certificate, key: mldsa.MLDSA65PrivateKey
    ) -> None:
        self._directory = directory
        self._certificate = certificate
        self._key = key

    def __repr__(self) -> str:
        return f"CertificateAuthority({str(self._directory)!r}, {self.subject!r})"

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def ca_file(self) -> Path:
        """The CA certificate file clients trust."""
        return self._directory / CA_CERT

    @property
    def subject(self) -> str:
        return self._certificate.subject.rfc4514_string()

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        d = Path(directory)
        return (d / CA_CERT).exists() and (d / CA_KEY).exists()

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes | None = None,
        common_name: str = "qrc private CA",
        validity: datetime.timedelta = CA_VALIDITY,
    ) -> CertificateAuthority:
        """Make a new CA in ``directory`` (created 0700); refuses to overwrite one."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (d / CA_KEY).exists() or (d / CA_CERT).exists():
            raise FileExistsError(f"a certificate authority already exists in {d}")
        key = mldsa.MLDSA65PrivateKey.generate()
        # ML-DSA signs the certificate directly: no separate hash (RFC 9881).
        certificate = root_certificate(key, common_name, validity, None)
        # Key first: a certificate without its key would make the CA unusable.
        _write_file(d / CA_KEY, _key_pem(key, passphrase), 0o600)
        _write_file(d / CA_CERT, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(d, certificate, key)

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None
    ) -> CertificateAuthority:
        """Load the CA in ``directory``; raises KeyFormatError if the key does not match."""
        d = Path(directory)
        certificate = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
        qrc_key = keyfile.load_private_pem(
            (d / CA_KEY).read_bytes(), passphrase, algorithm=_ALGORITHM
        )
        key = mldsa.MLDSA65PrivateKey.from_seed_bytes(qrc_key.private_bytes())
        public_raw = key.public_key().public_bytes_raw()
        cert_key = certificate.public_key()
        if not isinstance(cert_key, mldsa.MLDSA65PublicKey) or (
            cert_key.public_bytes_raw() != public_raw
        ):
            raise KeyFormatError(f"{d / CA_KEY} does not match {d / CA_CERT}")
        return cls(d, certificate, key)

    def issue_server_certificate(
        self, names: Sequence[str], *, validity: datetime.timedelta = SERVER_VALIDITY
    ) -> IssuedCertificate:
        """A new ML-DSA-65 server key and certificate for DNS names and IP addresses."""
        key = mldsa.MLDSA65PrivateKey.generate()
        certificate = server_certificate(
            key.public_key(), names, self._certificate, self._key, validity, None
        )
        return IssuedCertificate(certificate, _key_pem(key, None))


def root_certificate(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str,
    validity: datetime.timedelta,
    digest: hashes.SHA256 | hashes.SHA384 | None,
) -> x509.Certificate:
    """A self-signed CA certificate for ``key`` (``digest`` None for ML-DSA, RFC 9881)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qrc"),
        ]
    )
    now = _now()
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        # path_length=0: this CA issues end-entity certificates only.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .sign(key, digest)
    )


def server_certificate(
    public: CertificatePublicKeyTypes,
    names: Sequence[str],
    issuer: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    validity: datetime.timedelta,
    digest: hashes.SHA256 | hashes.SHA384 | None,
) -> x509.Certificate:
    """A TLS server certificate for ``public`` and DNS names / IP addresses ``names``,
    issued by ``issuer`` and valid no longer than it."""
    dns, ips = _split_names(names)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ip) for ip in ips]
    now = _now()
    common_name = dns[0] if dns else str(ips[0])
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + validity, issuer.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .sign(issuer_key, digest)
    )


def renewal_reason(
    certificate: x509.Certificate,
    names: Iterable[str],
    renew_before: datetime.timedelta,
    ca_certificate: x509.Certificate | None,
) -> str | None:
    """Why a server certificate whose key matches must be reissued, or None."""
    if certificate.not_valid_after_utc - _now() < renew_before:
        return "expiring"
    if _san_names(certificate) != _requested_names(names):
        return "host names changed"
    if ca_certificate is not None:
        try:
            certificate.verify_directly_issued_by(ca_certificate)
        except (ValueError, TypeError, InvalidSignature):
            return "not issued by this CA"
    return None


def key_usage(*, ca: bool) -> x509.KeyUsage:
    """Key usage of a CA (certificates and CRLs) or of an end entity (signatures only)."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: mldsa.MLDSA65PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM (seed form), through qrc's key-file code so that encryption is PBES2."""
    qrc_key = get_signature(_ALGORITHM).load_private(key.private_bytes_raw())
    return keyfile.private_key_to_pem(qrc_key, passphrase)


def server_certificate_needs_renewal(
    files: TLSFiles,
    names: Iterable[str],
    *,
    ca_certificate: x509.Certificate | None = None,
    renew_before: datetime.timedelta = RENEW_BEFORE,
) -> str | None:
    """Why the server certificate in ``files`` must be (re)issued, or None if it is fine."""
    if not files.cert.exists() or not files.key.exists():
        return "missing"
    try:
        certificate = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    except (ValueError, TypeError):
        return "unreadable"
    cert_key = certificate.public_key()
    if not isinstance(key, mldsa.MLDSA65PrivateKey) or not isinstance(
        cert_key, mldsa.MLDSA65PublicKey
    ):
        return "not ML-DSA-65"
    if cert_key.public_bytes_raw() != key.public_key().public_bytes_raw():
        return "key does not match certificate"
    return renewal_reason(certificate, names, renew_before, ca_certificate)


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def default_server_names(host: str) -> list[str]:
    """Names a server certificate for ``host`` should carry (loopback always included)."""
    names = ["localhost", "127.0.0.1", "::1"]
    if not host or _is_unspecified(host):
        # Listening everywhere: clients may use the machine's own name.
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(host)
    seen: list[str] = []
    for n in names:
        if n and n.lower() not in (s.lower() for s in seen):
            seen.append(n)
    return seen


def ensure_server_tls(
    data_dir: str | os.PathLike[str],
    names: Sequence[str],
    *,
    ca_passphrase: bytes | None = None,
    renew_before: datetime.timedelta = RENEW_BEFORE,
    validity: datetime.timedelta = SERVER_VALIDITY,
) -> TLSFiles:
    """Create the CA in ``data_dir/tls`` if missing; (re)issue the server certificate if it is
    missing, unreadable, expiring, for other names, or not from this CA. Returns the files."""
    tls_dir = Path(data_dir) / "tls"
    files = TLSFiles.in_directory(tls_dir)
    if CertificateAuthority.exists(tls_dir):
        ca_certificate = x509.load_pem_x509_certificate(files.ca.read_bytes())
        ca: CertificateAuthority | None = None
    else:
        ca = CertificateAuthority.create(tls_dir, passphrase=ca_passphrase)
        ca_certificate = ca.certificate
    reason = server_certificate_needs_renewal(
        files, names, ca_certificate=ca_certificate, renew_before=renew_before
    )
    if reason is not None:
        if ca is None:
            ca = CertificateAuthority.load(tls_dir, passphrase=ca_passphrase)
        issued = ca.issue_server_certificate(names, validity=validity)
        _write_file(files.key, issued.private_key_pem, 0o600)
        _write_file(files.cert, issued.certificate_pem, 0o644)
    return files
