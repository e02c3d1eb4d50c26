"""Choose and open the root KEK's custody from the environment (``QRC_CUSTODY``)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from qrc.keys.custody.base import Custody, CustodyError
from qrc.keys.custody.local import DEFAULT_ARGON2, Argon2Params, LocalCustody

__all__ = ["CUSTODY_ENV", "CUSTODY_KINDS", "open_custody"]

CUSTODY_ENV = "QRC_CUSTODY"
CUSTODY_KINDS = ("local", "pkcs11")


def open_custody(
    data_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    create_pkcs11_key: bool = False,
    local_params: Argon2Params = DEFAULT_ARGON2,
) -> Custody:
    """Open the custody ``QRC_CUSTODY`` names: ``local`` (default) or ``pkcs11``.

    ``local`` seals its KEK in ``data_dir`` (``QRC_MASTER_PASSPHRASE``); ``pkcs11`` reads
    ``QRC_PKCS11_MODULE``, ``QRC_PKCS11_TOKEN``, ``QRC_PKCS11_PIN`` and
    ``QRC_PKCS11_KEY_LABEL``, and creates the KEK in the token only if
    ``create_pkcs11_key`` (an explicit setup step, never a silent default).

    Raises:
        CustodyError: unknown kind or incomplete configuration (the message names the
            variables to set); its subclasses as the chosen custody raises them.
    """
    environ = os.environ if env is None else env
    kind = (environ.get(CUSTODY_ENV) or "local").strip().lower()
    if kind == "local":
        return LocalCustody.from_environment(data_dir, environ, params=local_params)
    if kind == "pkcs11":
        # Imported here so that local custody works where python-pkcs11 is not installed.
        try:
            from qrc.keys.custody.pkcs11 import Pkcs11Config, Pkcs11Custody  # noqa: PLC0415
        except ImportError as exc:
            raise CustodyError(
                f"{CUSTODY_ENV}=pkcs11 needs the python-pkcs11 package ({exc})"
            ) from None
        config = Pkcs11Config.from_environment(environ)
        if create_pkcs11_key:
            return Pkcs11Custody.ensure_key(config)
        return Pkcs11Custody.open(config)
    raise CustodyError(f"{CUSTODY_ENV} must be one of {', '.join(CUSTODY_KINDS)}, not {kind!r}")
