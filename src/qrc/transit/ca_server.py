"""The listener's own certificates from the private CA of :mod:`qrc.transit.authority`.

Once ``qrc ca init`` has made the two-level CA (keys in the key service), ``qrc serve`` takes
its ML-DSA-65 and ECDSA P-256 server certificates from its intermediates instead of the file
CA of ``DATA_DIR/tls``: one private CA for the service, its peers and its browsers. Files in
``DATA_DIR/ca/server`` (certificates with their intermediate; keys 0600)::

    server.pem, server.key, server-ecdsa.pem, server-ecdsa.key

The trust bundle ``DATA_DIR/tls/ca.pem`` that qrc's clients use gains the CA's two roots
(the file CA's stay, so clients configured before keep working), and a browser imports
``DATA_DIR/ca/root-ecdsa.pem``. Each server certificate is recorded in ``issued.json`` like
any leaf, so it can be revoked.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from qrc.transit.authority import PrivateCA
from qrc.transit.ca import TLSFiles, _now, _requested_names, _san_names, _write_file

__all__ = ["ensure_ca_server_tls"]

_FILES = {
    "ml-dsa": ("server.pem", "server.key"),
    "ecdsa": ("server-ecdsa.pem", "server-ecdsa.key"),
}


def _needs_renewal(
    cert_file: Path,
    key_file: Path,
    names: Sequence[str],
    intermediate: x509.Certificate,
    renew_before: datetime.timedelta,
    revoked: set[int],
) -> str | None:
    if not cert_file.exists() or not key_file.exists():
        return "missing"
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except (ValueError, TypeError):
        return "unreadable"
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != public
    ):
        return "key does not match certificate"
    if certificate.not_valid_after_utc - _now() < renew_before:
        return "expiring"
    if _san_names(certificate) != _requested_names(names):
        return "host names changed"
    if certificate.serial_number in revoked:
        return "revoked"
    try:
        certificate.verify_directly_issued_by(intermediate)
    except (ValueError, TypeError, InvalidSignature):
        return "not issued by this CA"
    return None


def _bundle(bundle: Path, roots: bytes) -> None:
    """Append the CA's roots to the clients' trust bundle (once)."""
    current = bundle.read_bytes() if bundle.exists() else b""
    if roots in current:
        return
    _write_file(bundle, current.rstrip(b"\n") + b"\n" + roots, 0o644)


def ensure_ca_server_tls(
    ca: PrivateCA,
    names: Sequence[str],
    *,
    bundle: Path,
    validity: datetime.timedelta,
    renew_before: datetime.timedelta,
) -> TLSFiles:
    """Issue (or renew) both server certificates from ``ca``; ``bundle``: the trust bundle
    of qrc's clients (``DATA_DIR/tls/ca.pem``), which gains the CA's roots."""
    directory = ca.directory / "server"
    directory.mkdir(mode=0o700, exist_ok=True)
    revoked = ca.revoked_serials()
    for family, (cert_name, key_name) in _FILES.items():
        reason = _needs_renewal(
            directory / cert_name,
            directory / key_name,
            names,
            ca.certificate(family, "intermediate"),
            renew_before,
            revoked,
        )
        if reason is None:
            continue
        subject = next((n for n in names if not n[0].isdigit() and ":" not in n), "qrc")
        chain, key, _record = ca.issue(
            subject,
            family=family,  # type: ignore[arg-type]
            kind="server",
            names=names,
            validity=validity,
        )
        _write_file(directory / key_name, key, 0o600)
        _write_file(directory / cert_name, chain, 0o644)
    _bundle(bundle, ca.trust_file.read_bytes())
    return TLSFiles(
        cert=directory / "server.pem",
        key=directory / "server.key",
        ca=bundle,
        ecdsa_cert=directory / "server-ecdsa.pem",
        ecdsa_key=directory / "server-ecdsa.key",
        ecdsa_ca=ca.directory / "root-ecdsa.pem",
    )
