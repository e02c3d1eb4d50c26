"""Custody of the root key encryption key (KEK): ``local`` (sealed) or ``pkcs11`` (HSM)."""

from __future__ import annotations

from qrc.keys.custody.base import (
    Custody,
    CustodyError,
    CustodyHealth,
    CustodyUnavailable,
    HealthState,
    UnwrapError,
)

__all__ = [
    "Custody",
    "CustodyError",
    "CustodyHealth",
    "CustodyUnavailable",
    "HealthState",
    "UnwrapError",
]
