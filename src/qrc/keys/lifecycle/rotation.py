"""Rotation: a new version becomes primary; older ones still decrypt and verify.

Used by :meth:`KeyLifecycle.rotate` (on request) and by the scheduler (when a key's
rotation period is due). The caller holds the key's row lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from qrc.keys.context import ServiceContext
from qrc.keys.errors import Conflict, KeyStateError
from qrc.keys.faults import fault_point
from qrc.keys.states import KeyState
from qrc.keys.store.models import Key

__all__ = ["ROTATABLE", "rotate_locked"]

ROTATABLE = (KeyState.ACTIVE, KeyState.PRE_ACTIVE, KeyState.SUSPENDED)


def rotate_locked(
    ctx: ServiceContext,
    session: Session,
    key: Key,
    actor: str,
    expected_version: int | None,
    now: datetime | None = None,
    algorithm: str | None = None,
) -> None:
    """Add a version to ``key`` and make it primary, audited in ``session``.

    ``algorithm`` (a registry ID the caller has checked against the key's purpose and the
    policy) moves the key to it: the new version uses it, older versions keep their own,
    and the key's ``algorithm`` becomes the primary version's.

    Raises:
        KeyStateError: the key cannot be rotated in its state, or is pending destruction.
        Conflict: ``expected_version`` is given and the key is no longer at it.
    """
    if key.status not in ROTATABLE:
        raise KeyStateError(f"a key that is {key.status} cannot be rotated")
    if key.destruction_due_at is not None:
        raise KeyStateError("the key is pending destruction: cancel that first")
    if expected_version is not None and key.primary_version != expected_version:
        raise Conflict(
            f"key {key.name!r} is at version {key.primary_version}, not {expected_version}"
        )
    version = key.primary_version + 1
    previous = key.algorithm
    target = algorithm or previous
    session.add(ctx.material.new_version(session, key.id, version, target))
    session.flush()
    fault_point("rotate-after-insert")
    now = now or ctx.clock()
    key.primary_version = version
    key.algorithm = target
    key.updated_at = now
    if key.rotation_period_seconds:
        key.next_rotation_at = now + timedelta(seconds=key.rotation_period_seconds)
    details = None
    if target != previous:
        details = {"from_algorithm": previous, "to_algorithm": target}
    ctx.record(session, "key.rotate", actor, key=key, key_version=version, details=details)
