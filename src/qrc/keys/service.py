"""``KeyService``: the key management core the API, data and transport layers use.

It combines :class:`~qrc.keys.management.KeyManagement` (lifecycle),
:class:`~qrc.keys.operations.KeyOperations` (cryptographic use) and
:class:`~qrc.keys.auditing.KeyAuditing` (checkpoints, verification) over one store, one
keyring (the root KEK and any older KEKs) and one audit log.
"""

from __future__ import annotations

from qrc.keys.auditing import KeyAuditing

__all__ = ["KeyService"]


class KeyService(KeyAuditing):
    """Keys: create, use, rotate, revoke, destroy; every step audited."""
