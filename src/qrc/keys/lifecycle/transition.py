"""One state change of a key, checked against the SP 800-57 transition table."""

from __future__ import annotations

from datetime import datetime

from qrc.keys.errors import KeyStateError
from qrc.keys.states import IllegalTransition, KeyState, check_transition
from qrc.keys.store.models import Key

__all__ = ["move_to"]


def move_to(key: Key, target: KeyState, now: datetime) -> None:
    """Move ``key`` to ``target`` (the caller holds its row lock and audits the change).

    Raises:
        KeyStateError: the transition is not allowed from the key's state.
    """
    try:
        check_transition(KeyState(key.status), target)
    except IllegalTransition as exc:
        raise KeyStateError(str(exc)) from None
    key.status = target.value
    key.updated_at = now
