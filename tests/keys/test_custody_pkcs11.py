"""PKCS#11 custody against a real SoftHSM2 token.

Every test gets its own SoftHSM2 configuration and token directory (``SOFTHSM2_CONF``) and
re-initialises the library, which is when SoftHSM2 reads them; so tests are independent even
when pytest-xdist runs tests of several modules in one process. The outage tests take the
token away for real (its directory, or the whole token store, moved aside) and give it back,
in this same process.

Without SoftHSM2 the module skips, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

pkcs11 = pytest.importorskip("pkcs11")

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from pkcs11 import Attribute, KeyType, ObjectClass  # noqa: E402
from pkcs11 import exceptions as p11e  # noqa: E402

from qrc.keys.custody.base import (  # noqa: E402
    CustodyError,
    CustodyUnavailable,
    HealthState,
    UnwrapError,
)
from qrc.keys.custody.factory import CustodyConfig, open_custody  # noqa: E402
from qrc.keys.custody.local import Argon2Params, LocalCustody  # noqa: E402
from qrc.keys.custody.pkcs11 import (  # noqa: E402
    KekExists,
    KekNotFound,
    Pkcs11Config,
    Pkcs11ConfigError,
    Pkcs11Custody,
    reinitialize_library,
)
from qrc.keys.custody.wrapped import aesgcm_wrap, blob_kek_id, parse_blob  # noqa: E402

_CANDIDATES = [
    os.environ.get("QRC_PKCS11_MODULE", ""),
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
]
MODULE = next((c for c in _CANDIDATES if c and os.path.isfile(c)), "")
UTIL = shutil.which("softhsm2-util")

if not (MODULE and UTIL):
    _MESSAGE = (
        "SoftHSM2 not found (softhsm2-util and libsofthsm2.so); install the Debian package "
        "softhsm2 (`apt-get install -y softhsm2`) or set QRC_PKCS11_MODULE"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(_MESSAGE, pytrace=False)
    pytest.skip(_MESSAGE, allow_module_level=True)

PIN = "314159"
SO_PIN = "27182818"
FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class SoftHsm:
    conf: Path
    tokendir: Path
    config: Pkcs11Config

    def init_token(self, label: str) -> None:
        subprocess.run(
            [UTIL, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
        )

    def token_dirs(self) -> list[Path]:
        return sorted(p for p in self.tokendir.iterdir() if p.is_dir())


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsm]:
    tokendir = tmp_path / "tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    soft = SoftHsm(conf, tokendir, Pkcs11Config(token_label="qrc-test", pin=PIN, module=MODULE))
    soft.init_token("qrc-test")
    # SoftHSM2 reads SOFTHSM2_CONF at C_Initialize only.
    reinitialize_library(MODULE)
    yield soft
    reinitialize_library(MODULE)  # drop sessions on this token before its files go


@pytest.fixture
def custody(hsm: SoftHsm) -> Iterator[Pkcs11Custody]:
    opened = Pkcs11Custody.create_key(hsm.config)
    yield opened
    opened.close()


def _raw_session(hsm: SoftHsm) -> pkcs11.Session:
    """A session outside the custody (login is shared per token, so no PIN is needed)."""
    return pkcs11.lib(MODULE).get_token(token_label=hsm.config.token_label).open()


def test_key_is_non_extractable_and_sensitive(hsm: SoftHsm, custody: Pkcs11Custody) -> None:
    session = _raw_session(hsm)
    key = session.get_key(object_class=ObjectClass.SECRET_KEY, label="qrc-root-kek")
    assert key[Attribute.KEY_TYPE] == KeyType.AES
    assert key[Attribute.VALUE_LEN] == 32
    assert key[Attribute.TOKEN] is True
    assert key[Attribute.PRIVATE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.ALWAYS_SENSITIVE] is True
    assert key[Attribute.WRAP] is False
    with pytest.raises(p11e.AttributeSensitive):
        key[Attribute.VALUE]
    # Nor can it be made extractable afterwards.
    with pytest.raises(p11e.PKCS11Error):
        key[Attribute.EXTRACTABLE] = True
    session.close()


def test_round_trip_in_token(custody: Pkcs11Custody) -> None:
    for size in (0, 1, 64, 14_000, 200_000):
        data = os.urandom(size)
        blob = custody.wrap(data, b"key-1/v1/ML-KEM-768")
        assert len(blob) == len(parse_blob(blob).header) + 12 + size + 16
        assert custody.unwrap(blob, b"key-1/v1/ML-KEM-768") == data
    assert custody.kind == "pkcs11"


def test_kek_id(hsm: SoftHsm, custody: Pkcs11Custody) -> None:
    serial = pkcs11.lib(MODULE).get_token(token_label="qrc-test").serial.decode().strip()
    prefix, token_serial, label, key_id = custody.kek_id.split(":")
    assert (prefix, token_serial, label) == ("pkcs11", serial, "qrc-root-kek")
    assert len(bytes.fromhex(key_id)) == 8
    assert blob_kek_id(custody.wrap(b"k", b"")) == custody.kek_id
    again = Pkcs11Custody.open(hsm.config)
    assert again.kek_id == custody.kek_id
    again.close()


def test_binding_and_tampering(custody: Pkcs11Custody) -> None:
    blob = custody.wrap(b"secret", b"key-1/v1")
    bad = [
        (blob, b"key-1/v2"),
        (blob, b""),
        (blob[:-1], b"key-1/v1"),
        (blob + b"\x00", b"key-1/v1"),
        (blob[:30], b"key-1/v1"),
        (b"", b"key-1/v1"),
    ]
    for where in range(0, len(blob), 3):
        flipped = bytearray(blob)
        flipped[where] ^= 0x80
        bad.append((bytes(flipped), b"key-1/v1"))
    for data, aad in bad:
        with pytest.raises(UnwrapError):
            custody.unwrap(data, aad)
    # Failed tag checks did not disturb the session.
    assert custody.unwrap(blob, b"key-1/v1") == b"secret"
    assert custody.health().state is HealthState.ONLINE


def test_blobs_follow_the_written_format(hsm: SoftHsm) -> None:
    """With an extractable test key, the token's blob opens with AESGCM per the spec, and a
    blob built per the spec in Python opens in the token: both sides agree on the format."""
    session = pkcs11.lib(MODULE).get_token(token_label="qrc-test").open(user_pin=PIN, rw=True)
    session.generate_key(
        KeyType.AES,
        256,
        label="spec-check",
        store=True,
        template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
    )
    custody = Pkcs11Custody.open(replace(hsm.config, key_label="spec-check"))
    assert custody.kek_id.endswith(":spec-check")  # no CKA_ID: no suffix
    value = session.get_key(label="spec-check")[Attribute.VALUE]
    blob = custody.wrap(b"format check", b"ctx")
    parsed = parse_blob(blob)
    assert AESGCM(value).decrypt(parsed.nonce, parsed.ciphertext, parsed.header + b"ctx") == (
        b"format check"
    )
    python_blob = aesgcm_wrap(AESGCM(value), custody.kek_id, b"from python", b"ctx")
    assert custody.unwrap(python_blob, b"ctx") == b"from python"
    custody.close()
    session.close()


def test_create_open_ensure(hsm: SoftHsm) -> None:
    with pytest.raises(KekNotFound, match="create_key"):
        Pkcs11Custody.open(hsm.config)
    created = Pkcs11Custody.ensure_key(hsm.config)
    with pytest.raises(KekExists):
        Pkcs11Custody.create_key(hsm.config)
    ensured = Pkcs11Custody.ensure_key(hsm.config)
    assert ensured.kek_id == created.kek_id
    blob = created.wrap(b"k", b"")
    created.close()
    # Closing one custody did not log the token out under the other.
    assert ensured.unwrap(blob, b"") == b"k"
    ensured.close()


def test_two_custodies_same_token(hsm: SoftHsm) -> None:
    """Old and new KEK in one token (KEK rotation): both open, each unwraps only its own."""
    old = Pkcs11Custody.create_key(hsm.config)
    new = Pkcs11Custody.create_key(replace(hsm.config, key_label="qrc-root-kek-2"))
    assert old.kek_id != new.kek_id
    old_blob = old.wrap(b"private", b"k1")
    new_blob = new.wrap(old.unwrap(old_blob, b"k1"), b"k1")
    with pytest.raises(UnwrapError):
        new.unwrap(old_blob, b"k1")
    with pytest.raises(UnwrapError):
        old.unwrap(new_blob, b"k1")
    # Same-length relabelling: the IDs differ only in the label, so swap the headers.
    forged = new_blob.replace(new.kek_id.encode(), old.kek_id.encode(), 1)
    if forged != new_blob:
        with pytest.raises(UnwrapError):
            old.unwrap(forged, b"k1")
    old.close()
    assert new.unwrap(new_blob, b"k1") == b"private"
    new.close()


def test_local_and_pkcs11_at_once(hsm: SoftHsm, tmp_path: Path) -> None:
    """KEK rotation local → pkcs11 needs both open at once."""
    local = LocalCustody.create(tmp_path / "kek.sealed", "pass", params=FAST)
    token = Pkcs11Custody.create_key(hsm.config)
    blob = local.wrap(b"seed", b"k")
    moved = token.wrap(local.unwrap(blob, b"k"), b"k")
    assert token.unwrap(moved, b"k") == b"seed"
    with pytest.raises(UnwrapError):
        token.unwrap(blob, b"k")
    with pytest.raises(UnwrapError):
        local.unwrap(moved, b"k")
    token.close()


def test_wrong_pin_is_not_retried(hsm: SoftHsm) -> None:
    Pkcs11Custody.create_key(hsm.config).close()
    reinitialize_library(MODULE)  # log out, so the wrong PIN is actually tried
    with pytest.raises(CustodyUnavailable) as info:
        Pkcs11Custody.open(replace(hsm.config, pin="000000"))
    assert "QRC_PKCS11_PIN" in str(info.value)
    assert "000000" not in str(info.value) and PIN not in str(info.value)
    assert PIN not in repr(hsm.config)


def test_unknown_token_and_module(hsm: SoftHsm, tmp_path: Path) -> None:
    with pytest.raises(CustodyUnavailable, match="no-such-token"):
        Pkcs11Custody.open(replace(hsm.config, token_label="no-such-token"))
    with pytest.raises(CustodyUnavailable, match="unreachable"):
        Pkcs11Custody.open(replace(hsm.config, module=str(tmp_path / "missing.so")))


def test_duplicate_labels_are_an_error(hsm: SoftHsm) -> None:
    session = pkcs11.lib(MODULE).get_token(token_label="qrc-test").open(user_pin=PIN, rw=True)
    for _ in range(2):
        session.generate_key(KeyType.AES, 256, label="twice", store=True)
    with pytest.raises(Pkcs11ConfigError, match="unique"):
        Pkcs11Custody.open(replace(hsm.config, key_label="twice"))
    session.close()


def test_config_from_settings() -> None:
    with pytest.raises(CustodyError) as info:
        CustodyConfig(kind="pkcs11").pkcs11()
    assert "QRC_PKCS11_TOKEN" in str(info.value) and "QRC_PKCS11_PIN" in str(info.value)
    config = CustodyConfig(kind="pkcs11", pkcs11_token="t", pkcs11_pin="1").pkcs11()
    assert (config.key_label, config.module) == ("qrc-root-kek", "/usr/lib/softhsm/libsofthsm2.so")
    with pytest.raises(Pkcs11ConfigError, match="QRC_PKCS11_KEY_LABEL"):
        Pkcs11Config(token_label="t", pin="1", key_label="bad label")


def test_factory_opens_pkcs11(hsm: SoftHsm, tmp_path: Path) -> None:
    env = CustodyConfig(
        kind="pkcs11", pkcs11_module=MODULE, pkcs11_token="qrc-test", pkcs11_pin=PIN
    )
    with pytest.raises(KekNotFound):
        open_custody(tmp_path, env)
    created = open_custody(tmp_path, env, create_pkcs11_key=True)
    opened = open_custody(tmp_path, env)
    assert isinstance(opened, Pkcs11Custody) and opened.kek_id == created.kek_id
    assert opened.unwrap(created.wrap(b"k", b""), b"") == b"k"
    created.close()
    opened.close()


# -- outages ---------------------------------------------------------------------------


def _assert_offline(custody: Pkcs11Custody, blob: bytes) -> None:
    with pytest.raises(CustodyUnavailable, match="unreachable") as info:
        custody.wrap(b"during outage", b"k")
    assert "nothing was changed" in str(info.value)
    with pytest.raises(CustodyUnavailable):
        custody.unwrap(blob, b"k")
    report = custody.health()
    assert report.state is HealthState.OFFLINE
    assert report.kek_id == custody.kek_id
    assert "unreachable" in report.detail


def _assert_back(custody: Pkcs11Custody, blob: bytes) -> None:
    # Nothing lost: the blob wrapped before the outage unwraps after it.
    assert custody.unwrap(blob, b"k") == b"before outage"
    first = custody.health()
    assert first.state is HealthState.DEGRADED, first
    assert "reconnect" in first.detail
    assert custody.health().state is HealthState.ONLINE
    assert custody.unwrap(custody.wrap(b"after", b"k"), b"k") == b"after"


def test_token_removed_and_returned(hsm: SoftHsm, custody: Pkcs11Custody, tmp_path: Path) -> None:
    """The token's directory disappears (token unplugged) and comes back."""
    blob = custody.wrap(b"before outage", b"k")
    assert custody.health().state is HealthState.ONLINE
    (token_dir,) = hsm.token_dirs()
    aside = tmp_path / "aside"
    token_dir.rename(aside)
    _assert_offline(custody, blob)
    _assert_offline(custody, blob)  # repeated failures stay clean
    aside.rename(token_dir)
    _assert_back(custody, blob)


def test_token_store_unreachable_and_returned(
    hsm: SoftHsm, custody: Pkcs11Custody, tmp_path: Path
) -> None:
    """The whole token store is gone: the library itself cannot initialise (HSM offline)."""
    blob = custody.wrap(b"before outage", b"k")
    aside = tmp_path / "tokens-aside"
    hsm.tokendir.rename(aside)
    _assert_offline(custody, blob)
    aside.rename(hsm.tokendir)
    _assert_back(custody, blob)


def test_outage_with_two_custodies(hsm: SoftHsm, tmp_path: Path) -> None:
    """Both custodies on the token recover; the library is re-initialised once per outage."""
    old = Pkcs11Custody.create_key(hsm.config)
    new = Pkcs11Custody.create_key(replace(hsm.config, key_label="qrc-root-kek-2"))
    old_blob, new_blob = old.wrap(b"before outage", b"k"), new.wrap(b"before outage", b"k")
    aside = tmp_path / "aside"
    (token_dir,) = hsm.token_dirs()
    token_dir.rename(aside)
    _assert_offline(old, old_blob)
    _assert_offline(new, new_blob)
    aside.rename(token_dir)
    _assert_back(old, old_blob)
    assert new.unwrap(new_blob, b"k") == b"before outage"
    old.close()
    new.close()


def test_a_different_token_under_the_same_label_is_refused(
    hsm: SoftHsm, custody: Pkcs11Custody, tmp_path: Path
) -> None:
    """After an outage, a new token with the same label and key label is not silently used."""
    blob = custody.wrap(b"before outage", b"k")
    (token_dir,) = hsm.token_dirs()
    aside = tmp_path / "aside"
    token_dir.rename(aside)
    hsm.init_token("qrc-test")
    impostor = Pkcs11Custody.create_key(hsm.config)
    impostor.close()
    with pytest.raises(CustodyError, match="different key"):
        custody.wrap(b"x", b"k")
    assert custody.health().state is HealthState.OFFLINE
    for directory in hsm.token_dirs():
        shutil.rmtree(directory)
    aside.rename(token_dir)
    reinitialize_library(MODULE)
    assert custody.unwrap(blob, b"k") == b"before outage"


def test_closed_custody(custody: Pkcs11Custody) -> None:
    custody.close()
    with pytest.raises(CustodyError, match="closed"):
        custody.wrap(b"x", b"")
    assert custody.health().state is HealthState.OFFLINE
    custody.close()  # idempotent


def test_slow_round_trip_is_degraded(hsm: SoftHsm) -> None:
    custody = Pkcs11Custody.create_key(replace(hsm.config, slow_seconds=0.0))
    report = custody.health()
    assert report.state is HealthState.DEGRADED and "slow" in report.detail
    custody.close()


def test_concurrent_use(custody: Pkcs11Custody) -> None:
    """Calls from many threads are serialised (the library runs without OS locking)."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                data = f"{n}-{i}".encode()
                assert custody.unwrap(custody.wrap(data, data), data) == data
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
