"""Open the key service of a data directory from the environment.

``QRC_DATABASE_URL`` (default: SQLite in the data directory), ``QRC_CUSTODY`` (``local`` or
``pkcs11``, see :mod:`qrc.keys.custody.factory`), ``QRC_DESTRUCTION_DELAY_DAYS`` (default 7).
The keyring can also open older or newer KEKs by ID: the local KEK files of the data
directory, and keys of the configured PKCS#11 token by label, so that a KEK rotation made
by another process is followed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from qrc.keys.custody.base import Custody, CustodyError
from qrc.keys.custody.factory import open_custody
from qrc.keys.db import Database
from qrc.keys.kek import LocalKekFiles
from qrc.keys.service import KeyService
from qrc.keys.wrapping import Keyring

__all__ = ["DEFAULT_DATA_DIR", "kek_loader", "open_service"]

DEFAULT_DATA_DIR = Path(".qrc")


def kek_loader(data_dir: Path, env: Mapping[str, str]) -> Callable[[str], Custody | None]:
    """A function opening a KEK by ID: local files here, or the configured token's keys."""
    files = LocalKekFiles(data_dir, env)

    def load(kek_id: str) -> Custody | None:
        if kek_id.startswith("local-"):
            return files.load(kek_id)
        if kek_id.startswith("pkcs11:"):
            from qrc.keys.custody.pkcs11 import Pkcs11Config, Pkcs11Custody  # noqa: PLC0415

            parts = kek_id.split(":")
            if len(parts) < 3:
                return None
            try:
                config = replace(Pkcs11Config.from_environment(env), key_label=parts[2])
                custody = Pkcs11Custody.open(config)
            except CustodyError:
                return None
            if custody.kek_id == kek_id:
                return custody
            custody.close()
        return None

    return load


def open_service(
    data_dir: Path | None = None, env: Mapping[str, str] | None = None, *, migrate: bool = True
) -> KeyService:
    """The key service for ``data_dir`` (default ``./.qrc``), migrated to the current schema."""
    environ = os.environ if env is None else env
    directory = Path(data_dir or DEFAULT_DATA_DIR)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = environ.get("QRC_DATABASE_URL") or f"sqlite:///{directory.resolve() / 'qrc.db'}"
    db = Database(url)
    if migrate:
        db.upgrade()
    custody = open_custody(directory, environ)
    days = float(environ.get("QRC_DESTRUCTION_DELAY_DAYS") or 7)
    return KeyService(
        db,
        Keyring(custody, loader=kek_loader(directory, environ)),
        destruction_delay=timedelta(days=days),
    )
