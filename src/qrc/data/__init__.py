"""Data at rest under keys the service manages: the envelope SDK, SQLAlchemy columns, Redis
values, files in the age format, logs and backups.

``DataEncryptor`` (:mod:`qrc.data.sdk`) is loaded on first use, so that importing a
sub-package (the age format, the command line) does not load the SDK's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qrc.data.cache import CacheLimits
    from qrc.data.keysource import KeyServiceUnavailable
    from qrc.data.sdk import DataEncryptor

__all__ = ["CacheLimits", "DataEncryptor", "KeyServiceUnavailable"]

_EXPORTS = {
    "CacheLimits": "qrc.data.cache",
    "DataEncryptor": "qrc.data.sdk",
    "KeyServiceUnavailable": "qrc.data.keysource",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qrc.data' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)
