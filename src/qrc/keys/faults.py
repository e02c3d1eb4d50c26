"""Crash-test hook: a process armed with a fault name stops dead at that point.

The crash tests start a real process armed with a name (``QRC_TEST_FAULT``, read with the
rest of the configuration, or :func:`arm` in a test worker) and check that the store is
consistent afterwards. Unarmed, :func:`fault_point` does nothing.
"""

from __future__ import annotations

import os

__all__ = ["arm", "fault_point"]

_armed: str | None = None


def arm(name: str | None) -> None:
    """Stop the process at the fault point ``name`` (``None`` disarms)."""
    global _armed  # noqa: PLW0603 - a process-wide test switch, set once at start
    _armed = name or None


def fault_point(name: str) -> None:
    """Exit at once (status 70, no clean-up) if the process is armed with ``name``."""
    if _armed is not None and _armed == name:
        os._exit(70)
