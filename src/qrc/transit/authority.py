"""The private CA for services and agents: a root and an intermediate in each family, keys
held by the key service, short-lived leaf certificates, revocation and CRLs.

Families (RFC 5280 profiles; ML-DSA per RFC 9881):

========  ===============  ======================  ==========================
family    root (20 years)  intermediate (5 years)  leaves (7 days by default)
========  ===============  ======================  ==========================
ml-dsa    ML-DSA-87        ML-DSA-65               ML-DSA-65
ecdsa     ECDSA P-384      ECDSA P-384             ECDSA P-256
========  ===============  ======================  ==========================

The four CA keys are reserved keys of the key service (label ``qrc.system=ca``): wrapped under
the root KEK, in its backups, each use audited (``ca.key_use``), and no generic route can
use, suspend or destroy them. Leaf keys are made here and handed to the caller once; the CA
keeps only the certificates. Public files, in ``DATA_DIR/ca``::

    root-<family>.pem, intermediate-<family>.pem   the CA certificates
    trust.pem                                      both roots: what peers trust
    issued.json                                    every certificate issued, revocations
    crl-<family>.pem                               CRLs, signed by the intermediates
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qrc.crypto.base import SigningKey
from qrc.transit.ca import _write_file, key_usage

__all__ = [
    "FAMILIES",
    "LEAF_VALIDITY",
    "CAKeySource",
    "Family",
    "IssuedRecord",
    "PrivateCA",
    "ServiceCAKeys",
]

Family = Literal["ml-dsa", "ecdsa"]
FAMILIES: Final[tuple[Family, ...]] = ("ml-dsa", "ecdsa")
Kind = Literal["client", "server"]
ROOT_VALIDITY: Final = datetime.timedelta(days=20 * 365)
INTERMEDIATE_VALIDITY: Final = datetime.timedelta(days=5 * 365)
LEAF_VALIDITY: Final = datetime.timedelta(days=7)
CRL_VALIDITY: Final = datetime.timedelta(days=7)
_BACKDATE: Final = datetime.timedelta(minutes=5)
# (family, level) -> (reserved key name, algorithm)
_CA_KEYS: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("ml-dsa", "root"): ("qrc-ca-ml-dsa-root", "ML-DSA-87"),
    ("ml-dsa", "intermediate"): ("qrc-ca-ml-dsa-intermediate", "ML-DSA-65"),
    ("ecdsa", "root"): ("qrc-ca-ecdsa-root", "ECDSA-P384"),
    ("ecdsa", "intermediate"): ("qrc-ca-ecdsa-intermediate", "ECDSA-P384"),
}
_ISSUED = "issued.json"

CAPrivateKey = mldsa.MLDSA87PrivateKey | mldsa.MLDSA65PrivateKey | ec.EllipticCurvePrivateKey


class CAKeySource(Protocol):
    """Where the CA's private keys are (the key service; a test may hold them in memory)."""

    def signing_key(self, name: str, algorithm: str, purpose: str) -> SigningKey: ...


class _KeyLifecycle(Protocol):
    def system_signing_key(
        self, *, name: str, algorithm: str, role: str, actor: str, purpose: str
    ) -> SigningKey: ...


class ServiceCAKeys:
    """The CA keys as reserved keys of the key service (``service.keys``)."""

    def __init__(self, keys: _KeyLifecycle, actor: str) -> None:
        self.keys, self.actor = keys, actor

    def signing_key(self, name: str, algorithm: str, purpose: str) -> SigningKey:
        return self.keys.system_signing_key(
            name=name, algorithm=algorithm, role="ca", actor=self.actor, purpose=purpose
        )


def _pyca_key(key: SigningKey) -> CAPrivateKey:
    raw = key.private_bytes()
    if key.algorithm == "ML-DSA-87":
        return mldsa.MLDSA87PrivateKey.from_seed_bytes(raw)
    if key.algorithm == "ML-DSA-65":
        return mldsa.MLDSA65PrivateKey.from_seed_bytes(raw)
    if key.algorithm == "ECDSA-P384":
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP384R1())
    raise ValueError(f"{key.algorithm} is not a CA key algorithm here")


def _hash_for(key: CAPrivateKey) -> hashes.SHA384 | None:
    # ML-DSA signs the encoding directly (RFC 9881); ECDSA P-384 with SHA-384.
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qrc"),
        ]
    )


@dataclass
class IssuedRecord:
    """One issued leaf certificate, as ``issued.json`` keeps it."""

    serial: str  # hexadecimal
    family: str
    kind: str
    subject: str
    names: list[str]
    not_after: str
    identity: str | None = None
    """What the certificate stands for: an API token ID (mutual TLS maps it to the token's
    role and key scope), or None."""
    revoked_at: str | None = None
    reason: str | None = None

    @property
    def expired(self) -> bool:
        return datetime.datetime.fromisoformat(self.not_after) <= _now()


class PrivateCA:
    """The CA in ``directory`` with its keys from ``keys``."""

    def __init__(self, directory: str | os.PathLike[str], keys: CAKeySource) -> None:
        self.directory = Path(directory)
        self.keys = keys

    # ------------------------------------------------------------------ files
    def certificate(self, family: str, level: str) -> x509.Certificate:
        path = self.directory / f"{level}-{family}.pem"
        return x509.load_pem_x509_certificate(path.read_bytes())

    @property
    def trust_file(self) -> Path:
        return self.directory / "trust.pem"

    def crl_file(self, family: str) -> Path:
        return self.directory / f"crl-{family}.pem"

    def exists(self) -> bool:
        return self.trust_file.exists()

    def records(self) -> list[IssuedRecord]:
        path = self.directory / _ISSUED
        if not path.exists():
            return []
        return [IssuedRecord(**item) for item in json.loads(path.read_text())]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer of ``issued.json`` and the CRLs at a time (``qrc ca`` commands and the
        server's CRL refresh may run together)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _save(self, records: Sequence[IssuedRecord]) -> None:
        data = json.dumps([asdict(r) for r in records], indent=1).encode()
        _write_file(self.directory / _ISSUED, data, 0o644)

    def _key(self, family: str, level: str, purpose: str) -> CAPrivateKey:
        name, algorithm = _CA_KEYS[(family, level)]
        return _pyca_key(self.keys.signing_key(name, algorithm, purpose))

    # ------------------------------------------------------------------ init
    def init(self) -> None:
        """Create the roots and intermediates of both families (refuses to overwrite)."""
        if self.exists():
            raise FileExistsError(f"a CA already exists in {self.directory}")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        trust = b""
        now = _now()
        for family in FAMILIES:
            root_key = self._key(family, "root", "init")
            label = "ML-DSA" if family == "ml-dsa" else "ECDSA"
            root_name = _name(f"qrc root CA ({label})")
            root = self._ca_certificate(
                root_name, root_key.public_key(), root_name, root_key, now + ROOT_VALIDITY, 1
            )
            inter_key = self._key(family, "intermediate", "init")
            intermediate = self._ca_certificate(
                _name(f"qrc intermediate CA ({label})"),
                inter_key.public_key(),
                root_name,
                root_key,
                now + INTERMEDIATE_VALIDITY,
                0,
            )
            for level, cert in (("root", root), ("intermediate", intermediate)):
                pem = cert.public_bytes(serialization.Encoding.PEM)
                _write_file(self.directory / f"{level}-{family}.pem", pem, 0o644)
            trust += root.public_bytes(serialization.Encoding.PEM)
        self._save([])
        self.publish_crls()
        _write_file(self.trust_file, trust, 0o644)

    @staticmethod
    def _ca_certificate(
        subject: x509.Name,
        public_key: Any,
        issuer: x509.Name,
        issuer_key: CAPrivateKey,
        not_after: datetime.datetime,
        path_length: int,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
            .add_extension(key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                False,
            )
            .sign(issuer_key, _hash_for(issuer_key))
        )

    # ------------------------------------------------------------------ leaves
    def issue(
        self,
        subject: str,
        *,
        family: Family = "ml-dsa",
        kind: Kind = "client",
        names: Sequence[str] = (),
        identity: str | None = None,
        validity: datetime.timedelta = LEAF_VALIDITY,
    ) -> tuple[bytes, bytes, IssuedRecord]:
        """A new leaf key and certificate: (certificate chain PEM, key PEM, record).

        ``kind`` sets the extended key usage (clientAuth or serverAuth); ``names`` go in the
        subjectAltName (DNS names, IP addresses); ``identity`` is what mutual TLS maps the
        certificate to (an API token ID).
        """
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
        if not subject or len(subject) > 64:
            raise ValueError("the subject (common name) is 1 to 64 characters")
        intermediate = self.certificate(family, "intermediate")
        key: mldsa.MLDSA65PrivateKey | ec.EllipticCurvePrivateKey = (
            mldsa.MLDSA65PrivateKey.generate()
            if family == "ml-dsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        now = _now()
        not_after = min(now + validity, intermediate.not_valid_after_utc)
        usage = (
            ExtendedKeyUsageOID.CLIENT_AUTH if kind == "client" else ExtendedKeyUsageOID.SERVER_AUTH
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    intermediate.public_key()  # type: ignore[arg-type]
                ),
                False,
            )
        )
        sans = [_general_name(n) for n in names]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        signer = self._key(family, "intermediate", f"issue {kind} {subject}")
        certificate = builder.sign(signer, _hash_for(signer))
        record = IssuedRecord(
            serial=format(certificate.serial_number, "x"),
            family=family,
            kind=kind,
            subject=subject,
            names=list(names),
            not_after=not_after.isoformat(),
            identity=identity,
        )
        with self._locked():
            self._save([*self.records(), record])
        chain = certificate.public_bytes(serialization.Encoding.PEM) + intermediate.public_bytes(
            serialization.Encoding.PEM
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return chain, key_pem, record

    def find(self, serial: str) -> IssuedRecord:
        wanted = serial.lower().removeprefix("0x").lstrip("0")
        for record in self.records():
            if record.serial.lstrip("0") == wanted:
                return record
        raise KeyError(f"no certificate with serial {serial} was issued here")

    def renew(
        self, serial: str, *, validity: datetime.timedelta = LEAF_VALIDITY
    ) -> tuple[bytes, bytes, IssuedRecord]:
        """A new key and certificate for what ``serial`` was issued for."""
        old = self.find(serial)
        if old.revoked_at is not None:
            raise ValueError(f"certificate {serial} is revoked: issue a new one instead")
        return self.issue(
            old.subject,
            family=old.family,  # type: ignore[arg-type]
            kind=old.kind,  # type: ignore[arg-type]
            names=old.names,
            identity=old.identity,
            validity=validity,
        )

    def revoke(self, serial: str, reason: str = "unspecified") -> IssuedRecord:
        """Revoke a leaf and publish new CRLs."""
        flag = _reason(reason)
        with self._locked():
            records = self.records()
            found = self.find(serial)
            for record in records:
                if record.serial == found.serial and record.revoked_at is None:
                    record.revoked_at = _now().isoformat()
                    record.reason = flag.value
                    found = record
            self._save(records)
            self._publish_crls(records)
        return found

    def revoked_serials(self) -> set[int]:
        return {int(r.serial, 16) for r in self.records() if r.revoked_at is not None}

    def publish_crls(self) -> None:
        """Sign and write a fresh CRL per family (RFC 5280 section 5), with a CRL number."""
        with self._locked():
            self._publish_crls(self.records())

    def _publish_crls(self, records: Sequence[IssuedRecord]) -> None:
        now = _now()
        for family in FAMILIES:
            intermediate = self.certificate(family, "intermediate")
            path = self.crl_file(family)
            number = 1
            if path.exists():
                previous = x509.load_pem_x509_crl(path.read_bytes())
                number = (
                    int(
                        previous.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                    )
                    + 1
                )
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(intermediate.subject)
                .last_update(now - _BACKDATE)
                .next_update(now + CRL_VALIDITY)
                .add_extension(x509.CRLNumber(number), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(
                        intermediate.public_key()  # type: ignore[arg-type]
                    ),
                    critical=False,
                )
            )
            for record in records:
                if record.family != family or record.revoked_at is None:
                    continue
                revoked = (
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(record.serial, 16))
                    .revocation_date(datetime.datetime.fromisoformat(record.revoked_at))
                    .add_extension(x509.CRLReason(x509.ReasonFlags(record.reason)), False)
                    .build()
                )
                builder = builder.add_revoked_certificate(revoked)
            signer = self._key(family, "intermediate", "crl")
            crl = builder.sign(signer, _hash_for(signer))
            _write_file(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)

    def crls_due(self, within: datetime.timedelta = CRL_VALIDITY / 2) -> bool:
        """Whether a CRL is missing or expires within ``within``."""
        for family in FAMILIES:
            path = self.crl_file(family)
            if not path.exists():
                return True
            crl = x509.load_pem_x509_crl(path.read_bytes())
            next_update = crl.next_update_utc
            if next_update is None or next_update - _now() < within:
                return True
        return False


def _reason(reason: str) -> x509.ReasonFlags:
    """An RFC 5280 reason by name (``key_compromise``) or value (``keyCompromise``)."""
    try:
        return x509.ReasonFlags[reason.replace("-", "_")]
    except KeyError:
        try:
            return x509.ReasonFlags(reason)
        except ValueError:
            names = ", ".join(f.name for f in x509.ReasonFlags if f.name != "remove_from_crl")
            raise ValueError(f"unknown revocation reason {reason!r}; one of {names}") from None


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.lower())
