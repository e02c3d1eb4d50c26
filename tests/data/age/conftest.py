"""Helpers of the age tests: the real ``qrc`` and ``age`` processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")

needs_age = pytest.mark.skipif(
    AGE is None or AGE_KEYGEN is None, reason="the age binary (Debian's age) is not installed"
)


def run(
    argv: list[str | Path], stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(a) for a in argv],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def qrc(
    *args: str | Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run([sys.executable, "-m", "qrc", *args], stdin, env)


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def one_line_failure(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line of a failed command (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr.decode()
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]
