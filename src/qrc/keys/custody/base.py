"""The one interface every custody of the root KEK implements.

The root KEK wraps (encrypts) every private key the store keeps, with AES-256-GCM and
associated data that binds the key ID, version and algorithm (built by the caller). The KEK
itself never leaves its custody: in ``local`` custody it is in memory after being unsealed
with the passphrase; in ``pkcs11`` custody it is a non-extractable key in the token, and the
GCM operation runs inside the token.

Wrapped blobs are self-describing (``docs/formats.md``, "Wrapped key v1"): they name the KEK
that made them, so that KEK rotation can find what still needs rewrapping.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "Custody",
    "CustodyError",
    "CustodyHealth",
    "CustodyUnavailable",
    "HealthState",
    "UnwrapError",
]


class CustodyError(Exception):
    """Base class of custody errors. Messages never carry key material."""


class CustodyUnavailable(CustodyError):
    """The KEK cannot be reached now (HSM offline, token removed, wrong PIN...).

    Nothing was changed; the same operation succeeds once custody is back.
    """


class UnwrapError(CustodyError):
    """The blob does not unwrap under this KEK with this associated data (opaque)."""

    def __init__(self) -> None:
        super().__init__("wrapped key does not unwrap (wrong KEK, context, or tampered)")


class HealthState(enum.StrEnum):
    """Custody health: ``online`` works; ``degraded`` works with a problem; ``offline`` not."""

    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass(frozen=True)
class CustodyHealth:
    """A health report: state, custody kind, KEK ID and a human explanation."""

    state: HealthState
    custody: str
    kek_id: str | None
    detail: str


class Custody(ABC):
    """A root KEK in some custody."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def kek_id(self) -> str:
        """A stable, non-secret identifier of the current KEK."""

    @abstractmethod
    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` under the KEK, binding ``aad``; returns a Wrapped key v1 blob.

        Raises:
            CustodyUnavailable: the KEK cannot be reached now.
        """

    @abstractmethod
    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a blob made by :meth:`wrap` with the same ``aad``.

        Raises:
            UnwrapError: wrong KEK, wrong ``aad``, or a tampered blob.
            CustodyUnavailable: the KEK cannot be reached now.
        """

    @abstractmethod
    def health(self) -> CustodyHealth:
        """Check the KEK is usable (a real round trip, not a cached flag)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and handles."""
