"""``open_custody``: choosing the custody (``QRC_CUSTODY``) with errors that say what to set.

The pkcs11 path against a real token is tested in test_custody_pkcs11.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qrc.keys.custody.base import CustodyError
from qrc.keys.custody.factory import CustodyConfig, open_custody
from qrc.keys.custody.local import Argon2Params, LocalCustody

FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


def test_local_is_the_default(tmp_path: Path) -> None:
    custody = open_custody(tmp_path, CustodyConfig(master_passphrase="pass"), local_params=FAST)
    assert isinstance(custody, LocalCustody) and custody.kind == "local"
    assert not custody.development_passphrase
    again = open_custody(
        tmp_path, CustodyConfig(kind="LOCAL", master_passphrase="pass"), local_params=FAST
    )
    assert again.kek_id == custody.kek_id
    assert again.unwrap(custody.wrap(b"k", b"a"), b"a") == b"k"


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(CustodyError, match="QRC_CUSTODY") as info:
        open_custody(tmp_path, CustodyConfig(kind="vault"))
    assert "local" in str(info.value) and "pkcs11" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_pkcs11_needs_its_variables(tmp_path: Path) -> None:
    pytest.importorskip("pkcs11")
    with pytest.raises(CustodyError) as info:
        open_custody(tmp_path, CustodyConfig(kind="pkcs11", pkcs11_token="t"))
    assert "QRC_PKCS11_PIN" in str(info.value)
    assert "QRC_PKCS11_TOKEN" not in str(info.value).split("(")[0]
