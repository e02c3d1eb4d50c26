"""qrc: post-quantum cryptography library, key service and toolkit."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
