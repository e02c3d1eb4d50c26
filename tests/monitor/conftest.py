"""A key service on SQLite with keys of several algorithms, and PEM files to scan."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from qrc.crypto.registry import BUILT_IN_STATUS, Status, set_status
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.data_index import IndexEntry
from qrc.keys.policy import AlgorithmPolicy
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from tests.keys.conftest import FAST_ARGON2
from tests.keys.pg import fresh_database

DEPRECATED = "ML-KEM-512"
PASSPHRASE = "passphrase"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    db = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    svc = KeyService(db, Keyring(custody))
    yield svc
    svc.close()
    db.dispose()


@pytest.fixture
def populated(service: KeyService) -> KeyService:
    """Keys of four algorithms, one of them then deprecated; objects indexed under two."""
    keys = service.keys
    keys.create_key(name="kem-768", purpose="encryption", algorithm="ML-KEM-768", actor="t")
    keys.create_key(name="kem-512", purpose="encryption", algorithm=DEPRECATED, actor="t")
    keys.create_key(name="sig-65", purpose="signing", algorithm="ML-DSA-65", actor="t")
    keys.create_key(name="wrap", purpose="key_wrapping", algorithm="AES-256-GCM", actor="t")
    service.data.register(
        [IndexEntry(f"obj/{i}", "kem-768", 1, "invoice" if i % 2 else "ledger") for i in range(5)]
        + [IndexEntry("obj/old", "kem-512", 1, "ledger")],
        actor="t",
    )
    return service


@pytest.fixture
def deprecated() -> Iterator[str]:
    """ML-KEM-512 deprecated in the registry for the test, restored afterwards."""
    set_status(DEPRECATED, Status.DEPRECATED)
    try:
        yield DEPRECATED
    finally:
        set_status(DEPRECATED, BUILT_IN_STATUS[DEPRECATED])


def self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def legacy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with an RSA certificate bundle and an ECDSA key file, as an operator has."""
    where = tmp_path_factory.mktemp("legacy")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (where / "bundle.pem").write_bytes(
        self_signed(rsa_key, "legacy-rsa") + self_signed(ec_key, "legacy-ec")
    )
    (where / "server.key").write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return where


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyService]:
    """A key service on SQLite or PostgreSQL whose policy writes statuses to its own table
    (the registry's stay as they are for the other tests)."""
    custody = LocalCustody.create(tmp_path / "kek.sealed", PASSPHRASE, params=FAST_ARGON2)
    statuses: dict[str, Status] = dict(BUILT_IN_STATUS)

    def build(url: str) -> Iterator[KeyService]:
        db = Database(url)
        db.upgrade()
        policy = AlgorithmPolicy(apply=statuses.__setitem__)
        service = KeyService(
            db, Keyring(custody), min_destruction_delay=timedelta(0), policy=policy
        )
        yield service
        service.close()
        db.dispose()

    if request.param == "sqlite":
        yield from build(f"sqlite:///{tmp_path / 'qrc.db'}")
        return
    with fresh_database() as url:
        yield from build(url)
