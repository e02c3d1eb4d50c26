"""Local custody: the root KEK sealed under a passphrase (Argon2id), wrapping in process.

Argon2 runs with RFC 9106's minimum cost here except in one test that uses the defaults.
"""

from __future__ import annotations

import logging
import os
import pickle
import stat
import struct
import unicodedata
from pathlib import Path

import pytest

from qrc.keys.custody.base import CustodyError, HealthState, UnwrapError
from qrc.keys.custody.local import (
    DEFAULT_ARGON2,
    KEK_FILE,
    PASSPHRASE_ENV,
    PASSPHRASE_FILE,
    Argon2Params,
    LocalCustody,
    SealedFileError,
    SealedFileExists,
    WrongPassphrase,
)
from qrc.keys.custody.wrapped import blob_kek_id

FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
PASSPHRASE = "correct horse battery staple"


def _create(path: Path, passphrase: str = PASSPHRASE) -> LocalCustody:
    return LocalCustody.create(path, passphrase, params=FAST)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_open_round_trip(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    custody = _create(path)
    assert custody.kek_id.startswith("local-") and len(custody.kek_id) == 6 + 16
    blob = custody.wrap(b"ML-KEM seed", b"key-1/v1")
    assert blob_kek_id(blob) == custody.kek_id
    reopened = LocalCustody.open(path, PASSPHRASE)
    assert reopened.kek_id == custody.kek_id
    assert reopened.unwrap(blob, b"key-1/v1") == b"ML-KEM seed"
    assert _mode(path) == 0o600
    # Only the sealed file is left behind (the temporary file was removed).
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEK_FILE]


def test_default_parameters_for_real(tmp_path: Path) -> None:
    """The production defaults (64 MiB, t=3, p=1) are what the file records and uses."""
    path = tmp_path / KEK_FILE
    custody = LocalCustody.create(path, PASSPHRASE)
    data = path.read_bytes()
    id_len = data[5]
    params = struct.unpack_from(">III", data, 6 + id_len)
    assert (
        params
        == (3, 64 * 1024, 1)
        == (
            DEFAULT_ARGON2.time_cost,
            DEFAULT_ARGON2.memory_cost,
            DEFAULT_ARGON2.parallelism,
        )
    )
    blob = custody.wrap(b"k", b"")
    assert LocalCustody.open(path, PASSPHRASE).unwrap(blob, b"") == b"k"


def test_sealed_file_layout(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    custody = _create(path)
    data = path.read_bytes()
    kek_id = custody.kek_id.encode()
    assert data[:6] == b"QRCK\x01" + bytes([len(kek_id)])
    assert data[6 : 6 + len(kek_id)] == kek_id
    pos = 6 + len(kek_id)
    assert struct.unpack_from(">III", data, pos) == (1, 8, 1)
    salt_len = data[pos + 12]
    assert salt_len == 16
    assert len(data) == pos + 12 + 1 + salt_len + 12 + 32 + 16


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    _create(path)
    before = path.read_bytes()
    with pytest.raises(SealedFileExists):
        _create(path, "another passphrase")
    assert path.read_bytes() == before


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    _create(path)
    with pytest.raises(WrongPassphrase) as info:
        LocalCustody.open(path, "Correct horse battery staple")
    assert isinstance(info.value, CustodyError)
    assert "horse" not in str(info.value)
    assert "passphrase" in str(info.value)


def test_tampered_file_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    _create(path)
    data = path.read_bytes()
    for where in range(len(data)):
        tampered = bytearray(data)
        tampered[where] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises((WrongPassphrase, SealedFileError)):
            LocalCustody.open(path, PASSPHRASE)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],
        lambda d: d + b"\x00",
        lambda d: b"",
        lambda d: b"QRCK\x02" + d[5:],
        lambda d: b"QRCX" + d[4:],
        lambda d: d[:5] + b"\x00" + d[6:],
    ],
    ids=["truncated", "trailing", "empty", "version", "magic", "empty-id"],
)
def test_malformed_file(tmp_path: Path, mutate: object) -> None:
    path = tmp_path / KEK_FILE
    _create(path)
    path.write_bytes(mutate(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(SealedFileError):
        LocalCustody.open(path, PASSPHRASE)


def test_hostile_cost_parameters_are_refused_before_hashing(tmp_path: Path) -> None:
    """A file asking for 4 TiB of memory is rejected by parsing, not attempted."""
    path = tmp_path / KEK_FILE
    custody = _create(path)
    data = bytearray(path.read_bytes())
    pos = 6 + len(custody.kek_id)
    struct.pack_into(">III", data, pos, 1, 0xFFFFFFFF, 1)
    path.write_bytes(bytes(data))
    with pytest.raises(SealedFileError):
        LocalCustody.open(path, PASSPHRASE)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SealedFileError, match="not found"):
        LocalCustody.open(tmp_path / "nope", PASSPHRASE)


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(CustodyError):
        _create(tmp_path / KEK_FILE, "")


def test_passphrase_is_nfc_normalised(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    _create(path, unicodedata.normalize("NFC", "pässphrase"))
    LocalCustody.open(path, unicodedata.normalize("NFD", "pässphrase"))
    LocalCustody.open(path, "pässphrase".encode())


def test_binding_and_tampering(tmp_path: Path) -> None:
    custody = _create(tmp_path / KEK_FILE)
    blob = custody.wrap(b"secret", b"key-7/v3/ML-DSA-65")
    assert custody.unwrap(blob, b"key-7/v3/ML-DSA-65") == b"secret"
    for aad, data in [
        (b"key-7/v4/ML-DSA-65", blob),
        (b"key-8/v3/ML-DSA-65", blob),
        (b"key-7/v3/ML-DSA-65", blob[:-1]),
        (b"key-7/v3/ML-DSA-65", blob[:20]),
        (b"key-7/v3/ML-DSA-65", blob[:-1] + bytes([blob[-1] ^ 1])),
        (b"key-7/v3/ML-DSA-65", b""),
    ]:
        with pytest.raises(UnwrapError):
            custody.unwrap(data, aad)


def test_two_custodies_at_once(tmp_path: Path) -> None:
    """Old and new KEK (KEK rotation): each unwraps its own blobs only."""
    old = _create(tmp_path / "old.sealed", "old passphrase")
    new = _create(tmp_path / "new.sealed", "new passphrase")
    assert old.kek_id != new.kek_id
    old_blob = old.wrap(b"one", b"k1")
    new_blob = new.wrap(old.unwrap(old_blob, b"k1"), b"k1")
    assert new.unwrap(new_blob, b"k1") == b"one"
    with pytest.raises(UnwrapError):
        new.unwrap(old_blob, b"k1")
    with pytest.raises(UnwrapError):
        old.unwrap(new_blob, b"k1")
    # A blob relabelled with the other KEK's ID still fails: the ID is authenticated and the
    # key is different.
    forged = new_blob.replace(new.kek_id.encode(), old.kek_id.encode(), 1)
    with pytest.raises(UnwrapError):
        old.unwrap(forged, b"k1")


def test_change_passphrase_keeps_the_kek(tmp_path: Path) -> None:
    path = tmp_path / KEK_FILE
    custody = _create(path)
    blob = custody.wrap(b"secret", b"")
    with pytest.raises(WrongPassphrase):
        LocalCustody.change_passphrase(path, "wrong", "new one", params=FAST)
    LocalCustody.change_passphrase(path, PASSPHRASE, "new one", params=FAST)
    assert _mode(path) == 0o600
    with pytest.raises(WrongPassphrase):
        LocalCustody.open(path, PASSPHRASE)
    reopened = LocalCustody.open(path, "new one")
    assert reopened.kek_id == custody.kek_id
    assert reopened.unwrap(blob, b"") == b"secret"


def test_health_and_close(tmp_path: Path) -> None:
    custody = _create(tmp_path / KEK_FILE)
    report = custody.health()
    assert report.state is HealthState.ONLINE
    assert (report.custody, report.kek_id) == ("local", custody.kek_id)
    blob = custody.wrap(b"x", b"")
    custody.close()
    assert custody.health().state is HealthState.OFFLINE
    with pytest.raises(CustodyError):
        custody.wrap(b"x", b"")
    with pytest.raises(CustodyError):
        custody.unwrap(blob, b"")


def test_no_secret_in_repr_or_pickle(tmp_path: Path) -> None:
    custody = _create(tmp_path / KEK_FILE)
    assert repr(custody) == f"<LocalCustody kek_id={custody.kek_id}>"
    with pytest.raises(TypeError):
        pickle.dumps(custody)


# -- for_data_dir ------------------------------------------------------------------


def test_environment_passphrase(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        custody = LocalCustody.for_data_dir(tmp_path / "data", PASSPHRASE, params=FAST)
    assert not custody.development_passphrase
    assert not (tmp_path / "data" / PASSPHRASE_FILE).exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _mode(tmp_path / "data") == 0o700
    again = LocalCustody.for_data_dir(tmp_path / "data", PASSPHRASE, params=FAST)
    assert again.kek_id == custody.kek_id
    LocalCustody.open(tmp_path / "data" / KEK_FILE, PASSPHRASE)


def test_development_passphrase_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        custody = LocalCustody.for_data_dir(data_dir, None, params=FAST)
    assert custody.development_passphrase
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("DEVELOPMENT ONLY" in w and PASSPHRASE_ENV in w for w in warnings)
    key_file = data_dir / PASSPHRASE_FILE
    assert _mode(key_file) == 0o600 and _mode(data_dir / KEK_FILE) == 0o600
    generated = key_file.read_text().strip()
    assert len(generated) >= 40
    # The passphrase never reaches a log record.
    assert not any(generated in r.getMessage() for r in caplog.records)
    assert "development passphrase" in custody.health().detail
    # Created once: a restart reuses the file and the KEK.
    again = LocalCustody.for_data_dir(data_dir, None, params=FAST)
    assert again.kek_id == custody.kek_id and again.development_passphrase
    assert key_file.read_text().strip() == generated
    # The environment overrides the file (and is the wrong passphrase here).
    with pytest.raises(WrongPassphrase):
        LocalCustody.for_data_dir(data_dir, "other", params=FAST)


def test_sealed_file_without_any_passphrase(tmp_path: Path) -> None:
    _create(tmp_path / KEK_FILE)
    with pytest.raises(CustodyError, match=PASSPHRASE_ENV):
        LocalCustody.for_data_dir(tmp_path, None, params=FAST)
    # ... and no useless passphrase file was generated on the way.
    assert not (tmp_path / PASSPHRASE_FILE).exists()


def test_empty_environment_passphrase(tmp_path: Path) -> None:
    with pytest.raises(CustodyError, match="empty"):
        LocalCustody.for_data_dir(tmp_path, "", params=FAST)


def test_loose_permissions_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    LocalCustody.for_data_dir(tmp_path, None, params=FAST)
    os.chmod(tmp_path / PASSPHRASE_FILE, 0o644)
    with caplog.at_level(logging.WARNING):
        LocalCustody.for_data_dir(tmp_path, None, params=FAST)
    assert any("0600" in r.getMessage() for r in caplog.records)
