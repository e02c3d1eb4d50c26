"""Refused tunnel peers as the key service's security events.

A tunnel end that runs next to a key service passes :func:`security_event_recorder` as its
``on_refused`` hook: each refused peer becomes a ``tls_handshake_refused`` event (source
``tunnel:<role>``, details: peer address, reason, OpenSSL's detail), which the service's
observers and ``qrc admin audit`` see like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qrc.keys.audit.events import EventType, Severity

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.tunnel import RefusedHook

__all__ = ["security_event_recorder"]


def security_event_recorder(service: KeyService, source: str = "tunnel") -> RefusedHook:
    """A hook that records each refused peer in ``service``'s security events."""

    def record(peer: str, reason: str, detail: str) -> None:
        details = {"peer": peer, "reason": reason, "detail": detail[:300]}
        with service.db.session() as session:
            service.ctx.security_event(
                session, EventType.TLS_HANDSHAKE_REFUSED, Severity.MEDIUM, source, details=details
            )

    return record
