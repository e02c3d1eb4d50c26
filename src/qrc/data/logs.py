"""Log segments sealed at rotation: a ``logging`` handler that writes ``name.N.age``.

:class:`SealedRotatingFileHandler` is :class:`logging.handlers.RotatingFileHandler` whose
rotation encrypts the finished segment to the configured age recipients (``age1pq1...``,
a key-service :class:`~qrc.data.age.keyservice.KeyRecipient`, ...) as ``name.1.age``,
shifts older ones to ``name.2.age`` ... ``name.<backupCount>.age`` (dropping the oldest),
and removes the plaintext segment. Only the segment being written is plaintext on disk.

A segment that cannot be sealed stays as it is (logs are not lost) and the failure goes
to ``Handler.handleError``. Removing a file does not erase its blocks on SSDs or
copy-on-write file systems: keep the live log on storage you trust (``docs/age.md``).
"""

from __future__ import annotations

import logging.handlers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from qrc.data.age import Recipient, check_labels, encrypt

__all__ = ["SealedRotatingFileHandler", "seal_file"]

_BLOCK = 1 << 20


def seal_file(source: str | Path, dest: str | Path, recipients: Sequence[Recipient]) -> None:
    """Encrypt ``source`` to ``dest`` (written beside it, then renamed), then remove ``source``.

    ``dest`` appears only complete; on any error it does not appear and ``source`` stays.
    """
    source, dest = Path(source), Path(dest)
    fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            with encrypt(out, recipients) as writer:
                while block := src.read(_BLOCK):
                    writer.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    source.unlink()


class SealedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotating log file whose rotated segments are age files.

    Args:
        filename: the live (plaintext) log file.
        recipients: who can read the sealed segments; checked at once (they must be
            allowed together, as for any age file).
        max_bytes: rotate when the live file would grow past this size.
        backup_count: sealed segments kept (at least 1).
    """

    def __init__(
        self,
        filename: str | Path,
        recipients: Sequence[Recipient],
        *,
        max_bytes: int,
        backup_count: int,
        encoding: str | None = "utf-8",
    ) -> None:
        if backup_count < 1:
            raise ValueError("backup_count must be at least 1, or segments would be discarded")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive, or the log would never rotate")
        check_labels(recipients)
        self.recipients = list(recipients)
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count, encoding=encoding)
        self.namer = self._age_name
        self.rotator = self._seal

    @staticmethod
    def _age_name(default_name: str) -> str:
        return default_name + ".age"

    def _seal(self, source: str, dest: str) -> None:
        seal_file(source, dest, self.recipients)
