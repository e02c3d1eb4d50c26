"""Observers: what the key service reports, to whoever was given to it.

The service tells each observer of every audited use of a key and of every security event,
after the transaction that recorded it has committed, the way Tink passes a monitoring
client into its primitives. Metrics, the failure-burst detector and (later) ``qrc.monitor``
are observers; the service knows none of them by name.

An observer must be quick and must not raise: a failing observer is logged and skipped, so
that monitoring can never change the outcome of a key operation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "KEY_USE_EVENTS",
    "REQUEST_SOURCE",
    "KeyUse",
    "Observer",
    "Observers",
    "SecurityNotice",
    "with_request_source",
]

logger = logging.getLogger(__name__)

REQUEST_SOURCE: ContextVar[str | None] = ContextVar("qrc_request_source", default=None)
"""The network source address of the request being served, set by the API layer (else None)."""

# The audit events of key uses, which carry the request's source address (``details.source``)
# so that anomaly detection (qrc.monitor.anomaly) can tell a token used from a new address.
KEY_USE_EVENTS = frozenset(
    {"key.encrypt", "key.decrypt", "key.rewrap", "key.datakey", "key.sign", "key.verify"}
)


def with_request_source(
    event_type: str, details: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``details`` plus ``source`` (the request's address) for a key use inside a request."""
    source = REQUEST_SOURCE.get()
    if source is None or event_type not in KEY_USE_EVENTS or (details and "source" in details):
        return dict(details) if details is not None else None
    return {**(details or {}), "source": source[:200]}


@dataclass(frozen=True)
class KeyUse:
    """One audited use of a key: ``operation`` is ``encrypt``, ``rotate``, ``create``...

    ``result`` is ``success``, ``failure`` (a decryption that did not open), ``invalid`` (a
    signature that did not verify) or ``denied`` (state or policy refused it).
    """

    operation: str
    result: str
    actor: str
    key_id: str | None = None
    algorithm: str | None = None
    key_version: int | None = None
    source: str | None = None
    """The network address of the request that used the key (None outside API requests)."""


@dataclass(frozen=True)
class SecurityNotice:
    """A security event as recorded (``qrc_security_events``).

    The story's fields: ``description``, ``is_quantum_threat_related``, ``action_taken``;
    its ``source_component`` and ``qrc_algorithm_involved`` are ``source`` and
    ``algorithm`` (also readable under those names). Fields after ``details`` were added
    later, with defaults, so that positional construction keeps working.
    """

    event_type: str
    severity: str
    source: str
    key_id: str | None = None
    algorithm: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    is_quantum_threat_related: bool = False
    action_taken: str | None = None

    @property
    def source_component(self) -> str:
        """The story's name for ``source``: the component that saw the event."""
        return self.source

    @property
    def qrc_algorithm_involved(self) -> str | None:
        """The story's name for ``algorithm``."""
        return self.algorithm


class Observer(Protocol):
    """What the service calls; implement both (a no-op is fine)."""

    def key_used(self, use: KeyUse) -> None:
        """A key was used (or its use refused or failed)."""

    def security_event(self, notice: SecurityNotice) -> None:
        """A security event was recorded."""


class Observers:
    """The observers of one service: a fan-out that never lets an observer's error through."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers: tuple[Observer, ...] = tuple(observers)
        self._lock = threading.Lock()

    def add(self, observer: Observer) -> None:
        """Report to ``observer`` from now on."""
        with self._lock:
            self._observers = (*self._observers, observer)

    def remove(self, observer: Observer) -> None:
        """Stop reporting to ``observer``."""
        with self._lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    def key_used(self, use: KeyUse) -> None:
        """Tell every observer of ``use``."""
        for observer in self._observers:
            try:
                observer.key_used(use)
            except Exception:
                logger.exception("observer %r failed on a key use", observer)

    def security_event(self, notice: SecurityNotice) -> None:
        """Tell every observer of ``notice``."""
        for observer in self._observers:
            try:
                observer.security_event(notice)
            except Exception:
                logger.exception("observer %r failed on a security event", observer)
