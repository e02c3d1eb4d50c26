"""Open the root KEK's custody from plain configuration values.

The values come from :class:`qrc.server.config.Settings` (``QRC_CUSTODY``,
``QRC_MASTER_PASSPHRASE``, ``QRC_PKCS11_*``); nothing here reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qrc.keys.custody.base import Custody, CustodyError
from qrc.keys.custody.kek_files import LocalKekFiles
from qrc.keys.custody.local import DEFAULT_ARGON2, Argon2Params, LocalCustody

if TYPE_CHECKING:
    from qrc.keys.custody.pkcs11 import Pkcs11Config

__all__ = ["CUSTODY_KINDS", "CustodyConfig", "kek_hint", "kek_loader", "open_custody"]

CUSTODY_KINDS = ("local", "pkcs11")
_DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_DEFAULT_KEY_LABEL = "qrc-root-kek"


@dataclass(frozen=True)
class CustodyConfig:
    """Where the root KEK is: sealed locally, or in a PKCS#11 token."""

    kind: str = "local"
    master_passphrase: str | None = field(default=None, repr=False)
    pkcs11_module: str = _DEFAULT_MODULE
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)
    pkcs11_key_label: str = _DEFAULT_KEY_LABEL

    def pkcs11(self, key_label: str | None = None) -> Pkcs11Config:
        """The PKCS#11 configuration (``key_label`` overrides the configured label).

        Raises:
            CustodyError: the token or PIN is missing (the message names the variables).
        """
        try:
            from qrc.keys.custody.pkcs11 import Pkcs11Config  # noqa: PLC0415 - optional package
        except ImportError as exc:
            raise CustodyError(f"pkcs11 custody needs the python-pkcs11 package ({exc})") from None
        missing = [
            name
            for name, value in (
                ("QRC_PKCS11_TOKEN", self.pkcs11_token),
                ("QRC_PKCS11_PIN", self.pkcs11_pin),
            )
            if not value
        ]
        if missing:
            raise CustodyError(
                "pkcs11 custody needs " + " and ".join(missing) + " (and optionally "
                f"QRC_PKCS11_MODULE, default {_DEFAULT_MODULE}; QRC_PKCS11_KEY_LABEL, default "
                f"{_DEFAULT_KEY_LABEL})"
            )
        return Pkcs11Config(
            token_label=self.pkcs11_token or "",
            pin=self.pkcs11_pin or "",
            module=self.pkcs11_module,
            key_label=key_label or self.pkcs11_key_label,
        )


def open_custody(
    data_dir: str | os.PathLike[str],
    config: CustodyConfig,
    *,
    create_pkcs11_key: bool = False,
    local_params: Argon2Params = DEFAULT_ARGON2,
) -> Custody:
    """Open the custody ``config.kind`` names: ``local`` (default) or ``pkcs11``.

    ``local`` seals its KEK in ``data_dir``; ``pkcs11`` creates the KEK in the token only if
    ``create_pkcs11_key`` (an explicit setup step, never a silent default).

    Raises:
        CustodyError: unknown kind or incomplete configuration (the message names the
            variables to set); its subclasses as the chosen custody raises them.
    """
    kind = config.kind.strip().lower()
    if kind == "local":
        return LocalCustody.for_data_dir(data_dir, config.master_passphrase, params=local_params)
    if kind == "pkcs11":
        pkcs11 = config.pkcs11()  # says so if python-pkcs11 is missing
        from qrc.keys.custody.pkcs11 import Pkcs11Custody  # noqa: PLC0415 - optional package

        if create_pkcs11_key:
            return Pkcs11Custody.ensure_key(pkcs11)
        return Pkcs11Custody.open(pkcs11)
    raise CustodyError(f"QRC_CUSTODY must be one of {', '.join(CUSTODY_KINDS)}, not {kind!r}")


def kek_loader(data_dir: Path, config: CustodyConfig) -> Callable[[str], Custody | None]:
    """A function opening a KEK by ID: local files here, or the configured token's keys.

    The keyring asks it for KEKs it meets in the store (a rotation made by another process).
    """
    files = LocalKekFiles(data_dir, config.master_passphrase)

    def load(kek_id: str) -> Custody | None:
        if kek_id.startswith("local-"):
            return files.load(kek_id)
        if kek_id.startswith("pkcs11:"):
            parts = kek_id.split(":")
            if len(parts) < 3:
                return None
            try:
                from qrc.keys.custody.pkcs11 import Pkcs11Custody  # noqa: PLC0415

                custody = Pkcs11Custody.open(config.pkcs11(key_label=parts[2]))
            except (CustodyError, ImportError):
                return None
            if custody.kek_id == kek_id:
                return custody
            custody.close()
        return None

    return load


def kek_hint(kek_id: str) -> str:
    """What to set so that KEK ``kek_id`` can be opened."""
    if kek_id.startswith("pkcs11:"):
        label = kek_id.split(":")[2] if kek_id.count(":") >= 2 else "<label>"
        return (
            f"set QRC_PKCS11_TOKEN, QRC_PKCS11_PIN (and QRC_PKCS11_MODULE) so that the token "
            f"holding key label {label!r} can be opened"
        )
    return (
        f"its sealed file (kek-{kek_id}.sealed or kek.sealed) must be in the data directory "
        "and QRC_MASTER_PASSPHRASE must open it"
    )
