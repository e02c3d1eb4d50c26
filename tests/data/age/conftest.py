"""Helpers of the age tests: the real ``qrc`` and ``age`` processes."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
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


def on_a_terminal(argv: list[str], answers: list[bytes]) -> int:
    """Run ``argv`` on a pseudo-terminal, typing ``answers`` at its prompts (age reads
    passphrases from the terminal only); its exit status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: age, with the pty as its controlling terminal
        os.execvp(argv[0], argv)
    pending, deadline = list(answers), time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            if pending and b":" in data:
                os.write(fd, pending.pop(0) + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
