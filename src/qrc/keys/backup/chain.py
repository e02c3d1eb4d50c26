"""The audit chain as a backup sees it: the keys that verify it, a checkpoint over it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from qrc.keys.audit.log import KeyLookup
from qrc.keys.trail import AuditTrail

__all__ = ["checkpoint_in", "lookup"]


def lookup(trail: AuditTrail, session: Session, explicit: KeyLookup | None) -> KeyLookup:
    """The caller's checkpoint keys, else the store's own (the audit key is a managed key)."""
    return explicit if explicit is not None else dict(trail.trusted_or_store(session))


def checkpoint_in(trail: AuditTrail, session: Session) -> bool:
    """Sign the chain head in the caller's transaction; whether a checkpoint was written."""
    return trail.checkpoint_in(session) is not None
