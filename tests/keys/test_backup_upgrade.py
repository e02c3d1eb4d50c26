"""Backups made before a migration added nullable columns still restore (the columns are NULL);
a row with a field the store does not know is still refused."""

from __future__ import annotations

import pytest

from qrc.keys.backup.format import BackupCorrupted
from qrc.keys.backup.restore import _decode_row
from qrc.keys.store.models import EncryptedDataIndex

# A qrc_encrypted_data_index row as a backup from before migration 0003 holds it.
OLD_ROW = {
    "id": 7,
    "key_id": "k_" + "0" * 32,
    "key_version": 1,
    "algorithm": "X25519MLKEM768",
    "data_ref": "accounts/42/iban",
    "data_class": "pii",
    "created_at": "2026-11-01T10:00:00.000000Z",
}


def test_a_row_from_before_0003_gets_null_new_columns() -> None:
    row = _decode_row("qrc_encrypted_data_index", EncryptedDataIndex, dict(OLD_ROW))
    assert row["data_ref"] == "accounts/42/iban"
    for column in ("data_type", "location", "integrity_hash", "rewrapped_at"):
        assert row[column] is None


def test_a_row_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(BackupCorrupted):
        _decode_row("qrc_encrypted_data_index", EncryptedDataIndex, {**OLD_ROW, "smuggled": "x"})
