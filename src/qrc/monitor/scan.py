"""Scan PEM bundles and key files that an operator names for cryptographic assets.

Each certificate, public key and private key found becomes a :class:`FoundAsset` with the
algorithm named as the registry names it where it can (``ECDSA-secp256r1``, ``ML-DSA-65``,
``RSA-2048``). Private keys are read only to learn their algorithm; encrypted ones are
reported without being opened. Nothing found is kept beyond its description.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import REGISTRY, get_info

__all__ = ["FoundAsset", "algorithm_of_key", "certificate_asset", "scan_paths"]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_MAX_FILE = 4 * 1024 * 1024
_SUFFIXES = (".pem", ".crt", ".cer", ".key", ".pub")
# The registry's names for the curves it knows; others keep the curve's own name.
_CURVES = {"secp256r1": "ECDSA-P256", "secp384r1": "ECDSA-P384"}
_OID_NAMES = {info.oid: info.id for info in REGISTRY.values() if info.oid}


@dataclass(frozen=True)
class FoundAsset:
    """One certificate or key found in a file (or in the data directory's ``tls/``)."""

    path: str
    kind: str  # "certificate", "public-key", "private-key"
    algorithm: str
    quantum_safe: bool
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    key_algorithm: str | None = None
    fingerprint: str | None = None
    detail: str | None = None

    @property
    def classical(self) -> bool:
        return not self.quantum_safe

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"classical": self.classical}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime.datetime) else value
        return out


def _quantum_safe(algorithm: str) -> bool:
    try:
        return get_info(algorithm).quantum_safe
    except UnsupportedAlgorithm:
        return False  # RSA, DSA, X25519 and anything unknown: assume the worst


def algorithm_of_key(key: Any) -> str:
    """The algorithm of a public or private key object of ``cryptography``."""
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"RSA-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return _CURVES.get(key.curve.name, f"ECDSA-{key.curve.name}")
    if isinstance(key, (dsa.DSAPublicKey, dsa.DSAPrivateKey)):
        return f"DSA-{key.key_size}"
    simple = {
        ed25519.Ed25519PublicKey: "Ed25519",
        ed25519.Ed25519PrivateKey: "Ed25519",
        ed448.Ed448PublicKey: "Ed448",
        ed448.Ed448PrivateKey: "Ed448",
        x25519.X25519PublicKey: "X25519",
        x25519.X25519PrivateKey: "X25519",
        x448.X448PublicKey: "X448",
        x448.X448PrivateKey: "X448",
    }
    for cls, name in simple.items():
        if isinstance(key, cls):
            return name
    name = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
    name = name.removesuffix("PrivateKey")
    match = re.fullmatch(r"MLDSA(\d+)", name)
    return f"ML-DSA-{match.group(1)}" if match else name


def _signature_algorithm(cert: x509.Certificate) -> str:
    """The registry's name for the signature's OID, else the OID's own name."""
    oid = cert.signature_algorithm_oid
    if oid.dotted_string in _OID_NAMES:
        return _OID_NAMES[oid.dotted_string]
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string


def certificate_asset(cert: x509.Certificate, path: str) -> FoundAsset:
    """A certificate as a found asset (signature algorithm, key, validity)."""
    algorithm = _signature_algorithm(cert)
    try:
        key_algorithm: str | None = algorithm_of_key(cert.public_key())
    except Exception:
        key_algorithm = _OID_NAMES.get(
            cert.public_key_algorithm_oid.dotted_string, cert.public_key_algorithm_oid._name
        )
    safe = _quantum_safe(algorithm) and _quantum_safe(key_algorithm or "")
    return FoundAsset(
        path=path,
        kind="certificate",
        algorithm=algorithm,
        quantum_safe=safe,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_algorithm=key_algorithm,
        fingerprint=cert.fingerprint(_sha256()).hex(),
    )


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    return hashes.SHA256()


def _block_asset(label: str, block: bytes, path: str) -> FoundAsset | None:
    if label in ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"):
        return certificate_asset(x509.load_pem_x509_certificate(block), path)
    if label == "PUBLIC KEY" or label.endswith(" PUBLIC KEY"):
        algorithm = algorithm_of_key(serialization.load_pem_public_key(block))
        return FoundAsset(path, "public-key", algorithm, _quantum_safe(algorithm))
    if label == "ENCRYPTED PRIVATE KEY":
        return FoundAsset(
            path, "private-key", "unknown", False, detail="encrypted: algorithm not read"
        )
    if label.endswith("PRIVATE KEY"):
        algorithm = algorithm_of_key(serialization.load_pem_private_key(block, password=None))
        return FoundAsset(path, "private-key", algorithm, _quantum_safe(algorithm))
    return None


def scan_file(path: Path) -> list[FoundAsset]:
    """Every certificate and key in one PEM file (unreadable blocks are reported as such)."""
    data = path.read_bytes()[:_MAX_FILE]
    found = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        try:
            asset = _block_asset(label, match.group(0), str(path))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            asset = FoundAsset(
                str(path), label.lower().replace(" ", "-"), "unknown", False, detail=str(exc)
            )
        if asset is not None:
            found.append(asset)
    return found


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in _SUFFIXES:
                    yield child
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")


def scan_paths(paths: Iterable[str | Path]) -> list[FoundAsset]:
    """Scan files and directories (``*.pem``, ``*.crt``, ``*.cer``, ``*.key``, ``*.pub``)."""
    found: list[FoundAsset] = []
    for file in _files(Path(p) for p in paths):
        found.extend(scan_file(file))
    return found
