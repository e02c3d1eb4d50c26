"""Key states and the legal transitions between them (NIST SP 800-57 Part 1, §7).

::

    pre_active ──activate──▶ active ◀──resume── suspended
        │                     │  └──suspend──▶ suspended
        │                     ├──deactivate (revoke: superseded / cessation)──▶ deactivated
        └──────────┬──────────┴──revoke: key_compromise──▶ compromised
                   └──(destruction runs; from any state but destroyed)──▶ destroyed

``pending_destruction`` is not a state of its own: a key whose destruction is scheduled keeps
its state (so that cancelling restores it) and the API reports ``pending_destruction`` with
the due date. What each state permits is in :data:`PERMITTED`.
"""

from __future__ import annotations

import enum

__all__ = [
    "PERMITTED",
    "TRANSITIONS",
    "IllegalTransition",
    "KeyState",
    "Operation",
    "Purpose",
    "RevocationReason",
    "check_transition",
    "permits",
]


class KeyState(enum.StrEnum):
    """A key's lifecycle state."""

    PRE_ACTIVE = "pre_active"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"
    COMPROMISED = "compromised"
    DESTROYED = "destroyed"


class Purpose(enum.StrEnum):
    """What a key is for; decides which algorithms fit and which operations it allows."""

    ENCRYPTION = "encryption"
    SIGNING = "signing"
    KEY_WRAPPING = "key_wrapping"


class RevocationReason(enum.StrEnum):
    """Why a key was revoked (RFC 5280 reason codes that apply to keys)."""

    KEY_COMPROMISE = "key_compromise"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"


class Operation(enum.StrEnum):
    """What can be done with a key's material."""

    ENCRYPT = "encrypt"  # also: wrap, sign (protect)
    DECRYPT = "decrypt"  # also: unwrap, verify (process)
    SIGN = "sign"
    VERIFY = "verify"


class IllegalTransition(Exception):
    """The key's state does not allow this change."""


S = KeyState
TRANSITIONS: dict[KeyState, frozenset[KeyState]] = {
    S.PRE_ACTIVE: frozenset({S.ACTIVE, S.DEACTIVATED, S.COMPROMISED, S.DESTROYED}),
    S.ACTIVE: frozenset({S.SUSPENDED, S.DEACTIVATED, S.COMPROMISED, S.DESTROYED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.DEACTIVATED, S.COMPROMISED, S.DESTROYED}),
    S.DEACTIVATED: frozenset({S.COMPROMISED, S.DESTROYED}),
    S.COMPROMISED: frozenset({S.DESTROYED}),
    S.DESTROYED: frozenset(),
}

# Protecting operations need an active key; processing (decrypt, verify) is allowed while
# deactivated so existing data stays readable. A compromised key processes only under the
# explicit recovery flag (checked by the service, and audited).
PERMITTED: dict[KeyState, frozenset[Operation]] = {
    S.PRE_ACTIVE: frozenset(),
    S.ACTIVE: frozenset(Operation),
    S.SUSPENDED: frozenset(),
    S.DEACTIVATED: frozenset({Operation.DECRYPT, Operation.VERIFY}),
    S.COMPROMISED: frozenset(),
    S.DESTROYED: frozenset(),
}


def check_transition(current: KeyState, target: KeyState) -> None:
    """Raise :class:`IllegalTransition` unless ``current → target`` is allowed."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"a key that is {current.value} cannot become {target.value}")


def permits(state: KeyState, operation: Operation, *, recovery: bool = False) -> bool:
    """Whether a key in ``state`` may perform ``operation``."""
    if recovery and state is S.COMPROMISED:
        return operation in (Operation.DECRYPT, Operation.VERIFY)
    return operation in PERMITTED[state]
