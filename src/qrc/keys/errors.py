"""Errors of the key service. Messages name keys and states, never key material."""

from __future__ import annotations

__all__ = [
    "Conflict",
    "InvalidRequest",
    "KeyNotFound",
    "KeyServiceError",
    "KeyStateError",
    "OperationNotPermitted",
]


class KeyServiceError(Exception):
    """Base class of the key service's errors."""


class KeyNotFound(KeyServiceError):
    """No key has this ID or name."""


class KeyStateError(KeyServiceError):
    """The key's lifecycle state does not allow this (e.g. rotating a destroyed key)."""


class OperationNotPermitted(KeyServiceError):
    """The key exists but may not do this (purpose, version retired, compromised...)."""


class InvalidRequest(KeyServiceError):
    """The request itself is wrong: unknown algorithm, algorithm unfit for the purpose..."""


class Conflict(KeyServiceError):
    """A concurrent change won (name taken, version moved on since the caller looked)."""
