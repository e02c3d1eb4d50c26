"""What every ``qrc`` command does the same way: stdin/stdout or files, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

__all__ = ["fail", "passphrase_from", "read_input", "say", "write_output"]


def say(line: str) -> None:
    """One plain line on stderr (no wrapping or markup: scripts parse it)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``qrc: error: message`` and exit with ``code``."""
    say(f"qrc: error: {message}")
    raise typer.Exit(code)


def read_input(path: Path | None) -> bytes:
    """The bytes of ``path``, or of stdin when it is ``None``."""
    return path.read_bytes() if path is not None else sys.stdin.buffer.read()


def write_output(path: Path | None, data: bytes) -> None:
    """Write to ``path``, or to stdout when it is ``None``."""
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        path.write_bytes(data)


def passphrase_from(path: Path | None) -> bytes | None:
    """The passphrase on the first line of ``path`` (``None`` without a file); a clear error
    when the file is empty."""
    if path is None:
        return None
    lines = path.read_bytes().splitlines()
    if not lines or not lines[0]:
        fail(f"{path} is empty: put the passphrase on its first line")
    return lines[0]
