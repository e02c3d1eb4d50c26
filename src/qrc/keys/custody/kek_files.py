"""The sealed KEK files of a data directory: ``kek.sealed`` and ``kek-<id>.sealed``.

The first KEK lives in ``kek.sealed``; each local KEK made by a rotation gets a file of its
own. All are sealed under the same passphrase (the configured master passphrase, or the
development ``master.key``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from qrc.keys.custody.base import Custody, CustodyError
from qrc.keys.custody.local import KEK_FILE, PASSPHRASE_ENV, PASSPHRASE_FILE, LocalCustody

__all__ = ["LocalKekFiles"]


class LocalKekFiles:
    """Create and open the local KEKs of one data directory."""

    def __init__(self, data_dir: Path, passphrase: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._passphrase = passphrase

    def passphrase(self) -> str:
        """The passphrase the KEK files are sealed under."""
        if self._passphrase:
            return self._passphrase
        path = self.data_dir / PASSPHRASE_FILE
        if path.exists():
            return path.read_text("utf-8").strip()
        raise CustodyError(f"set {PASSPHRASE_ENV} to the passphrase the root KEK is sealed with")

    def path_for(self, kek_id: str) -> Path:
        """Where a rotated-in local KEK is sealed."""
        return self.data_dir / f"kek-{kek_id}.sealed"

    def create(self) -> LocalCustody:
        """A new local KEK, sealed into its own file."""
        staging = self.data_dir / f"kek-new-{secrets.token_hex(4)}.sealed"
        custody = LocalCustody.create(staging, self.passphrase())
        staging.rename(self.path_for(custody.kek_id))
        return custody

    def load(self, kek_id: str) -> Custody | None:
        """Open the local KEK ``kek_id`` if its file is here (the loader of a Keyring)."""
        if not kek_id.startswith("local-"):
            return None
        for path in (self.path_for(kek_id), self.data_dir / KEK_FILE):
            if path.exists():
                custody = LocalCustody.open(path, self.passphrase())
                if custody.kek_id == kek_id:
                    return custody
                custody.close()
        return None
