"""The first start of a data directory: a bootstrap admin token written to ``admin.token``.

The token is created and audited in one transaction (fail closed): if its audit event
cannot be written, no token exists and no file is left behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from qrc.keys.access.tokens import Role
from qrc.keys.service import KeyService

__all__ = ["ADMIN_TOKEN_FILE", "BOOTSTRAP_ACTOR", "bootstrap_admin_token"]

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105  # nosec B105 - a file name
BOOTSTRAP_ACTOR = "bootstrap"


def bootstrap_admin_token(service: KeyService, data_dir: Path) -> Path:
    """Create the first admin token into ``DATA_DIR/admin.token`` (0600) if there is none.

    Nothing happens when the file exists or an admin token is already in the store.
    """
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists() or service.tokens.has_admin():
        return path
    # The file first (O_EXCL: a concurrent start loses here), then the token: a token that
    # could not be written anywhere would be an unusable admin nobody can revoke by name.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            _, token = service.tokens.create(
                name="bootstrap-admin", role=Role.ADMIN.value, actor=BOOTSTRAP_ACTOR
            )
            handle.write(token + "\n")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path
