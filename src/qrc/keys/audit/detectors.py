"""Detectors: observers of the key service that turn patterns into security events.

:class:`FailureBurstDetector` raises ``decryption_failure_burst`` when one key sees
:data:`DECRYPTION_BURST_THRESHOLD` failed decryptions within
:data:`DECRYPTION_BURST_WINDOW`. It counts in the audit chain, not in memory, so failures
spread over several service nodes add up, and it records at most one event per key per
window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from qrc.keys.audit.events import (
    DECRYPTION_BURST_THRESHOLD,
    DECRYPTION_BURST_WINDOW,
    EventType,
    Severity,
    decryption_failures_since,
    notice_of,
    record_event,
)
from qrc.keys.audit.log import AuditLog
from qrc.keys.observers import KeyUse, SecurityNotice
from qrc.keys.store.db import Database
from qrc.keys.store.models import SecurityEvent

__all__ = ["FailureBurstDetector"]


class FailureBurstDetector:
    """Flags bursts of failed decryptions on one key (an observer of the key service)."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        report: Callable[[SecurityNotice], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.report = report

    def key_used(self, use: KeyUse) -> None:
        """Count a failed decryption; record a burst when the threshold is reached."""
        if use.operation != "decrypt" or use.result != "failure" or use.key_id is None:
            return
        now = self.clock()
        since = now - DECRYPTION_BURST_WINDOW
        notice = None
        with self.db.session() as session:
            if decryption_failures_since(session, use.key_id, since) < DECRYPTION_BURST_THRESHOLD:
                return
            # At the threshold: serialise with every other recorder (the audit lock), then
            # count again, so that concurrent failures record one burst, not several.
            AuditLog.lock(session)
            failures = decryption_failures_since(session, use.key_id, since)
            already = session.scalar(
                select(SecurityEvent.id).where(
                    SecurityEvent.key_id == use.key_id,
                    SecurityEvent.event_type == EventType.DECRYPTION_FAILURE_BURST.value,
                    SecurityEvent.at >= since,
                )
            )
            if already is not None:
                return
            details = {"failures": failures, "window_seconds": 60}
            event = record_event(
                session,
                EventType.DECRYPTION_FAILURE_BURST,
                Severity.HIGH,
                use.actor,
                key_id=use.key_id,
                algorithm=use.algorithm,
                details=details,
            )
            notice = notice_of(event)
        if notice is not None and self.report is not None:
            self.report(notice)

    def security_event(self, notice: SecurityNotice) -> None:
        """Not used: this detector watches key uses only."""
