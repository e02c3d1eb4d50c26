"""Witnesses: where each new audit checkpoint is published, outside the database.

A verifier compares the store with the latest checkpoint a witness holds: a chain cut
short, rewritten before that checkpoint, or stripped of its checkpoints no longer matches.
Like a c2sp.org/tlog-witness, a witness keeps the latest checkpoint of each log and refuses
to go back: a checkpoint of fewer events, or of as many events with another head (a fork),
is refused.

- :class:`FileWitness` — ``DATA_DIR/audit-witness.note``, replaced atomically (the embedded
  default). With several nodes on one database, point every node at one shared path; only
  the node that makes a checkpoint publishes it.
- :class:`MemoryWitness` — in memory (the library used alone, tests).

The monitoring issue adds syslog and webhook witnesses; anything with ``publish`` and
``latest`` is one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path
from typing import Protocol

from qrc.keys.audit.format import AuditError
from qrc.keys.audit.note import InvalidNote, parse_note

__all__ = ["WITNESS_FILE", "FileWitness", "MemoryWitness", "Witness", "WitnessRefused"]

WITNESS_FILE = "audit-witness.note"
_MAX_NOTE = 16 * 1024


class WitnessRefused(AuditError):
    """The witness holds a later or conflicting checkpoint than the one offered."""


class Witness(Protocol):
    """Somewhere outside the database that keeps the latest checkpoint."""

    def publish(self, note: bytes) -> None:
        """Keep ``note`` as the latest checkpoint (refusing to go back)."""

    def latest(self) -> bytes | None:
        """The latest checkpoint kept, or ``None``."""


def _check_forward(current: bytes | None, new: bytes) -> None:
    fresh = parse_note(new)
    if current is None:
        return
    try:
        held = parse_note(current)
    except InvalidNote:
        return  # a damaged witness file is replaced; verification reports the damage
    if held.origin != fresh.origin:
        return  # another log (a restored store under a new audit key): start over
    if fresh.seq < held.seq:
        raise WitnessRefused(
            f"the witness holds a checkpoint of {held.seq} events; refusing one of {fresh.seq}"
        )
    if fresh.seq == held.seq and fresh.head_hash != held.head_hash:
        raise WitnessRefused(f"two different heads for {fresh.seq} events: the log forked")


class MemoryWitness:
    """The latest checkpoint, in memory."""

    def __init__(self) -> None:
        self._note: bytes | None = None
        self._lock = threading.Lock()

    def publish(self, note: bytes) -> None:
        """Keep ``note`` (refusing to go back)."""
        with self._lock:
            _check_forward(self._note, note)
            self._note = bytes(note)

    def latest(self) -> bytes | None:
        """The latest checkpoint kept."""
        return self._note


class FileWitness:
    """The latest checkpoint in a file, replaced atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def publish(self, note: bytes) -> None:
        """Keep ``note`` (refusing to go back)."""
        with self._lock:
            _check_forward(self.latest(), note)
            staging = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, note)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(staging, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    staging.unlink()
                raise

    def latest(self) -> bytes | None:
        """The latest checkpoint kept, or ``None`` if there is no file."""
        try:
            with self.path.open("rb") as handle:
                return handle.read(_MAX_NOTE + 1)
        except FileNotFoundError:
            return None
