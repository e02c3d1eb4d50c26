"""The monitoring a server runs beside the API: threat feed, event sinks, anomaly detection.

Each part is optional and configured in :class:`Settings`; :func:`start_monitoring` starts
the ones configured and returns what must be stopped at shutdown, in the order to stop them.
"""

from __future__ import annotations

import logging
from typing import Protocol

from qrc.api.deps import AppState
from qrc.keys.service import KeyService
from qrc.monitor.risk_config import load_risk_config
from qrc.server.anomalyjob import start_anomaly_detection
from qrc.server.config import Settings
from qrc.server.feedjob import start_feed
from qrc.server.sinkjob import start_sinks

__all__ = ["Stoppable", "start_monitoring"]

logger = logging.getLogger(__name__)


class Stoppable(Protocol):
    """A running part that can be told to stop."""

    def stop(self) -> None:
        """Stop (quickly; daemon threads may finish their current step)."""


def start_monitoring(settings: Settings, service: KeyService, state: AppState) -> list[Stoppable]:
    """Start the configured monitoring parts; the caller stops each at shutdown."""
    running: list[Stoppable] = []
    state.risk_config = load_risk_config(  # risk: the model GET /risk and the dashboard use
        settings.risk_file, migration_years=settings.risk_migration_years
    )
    # One line per part, each in its own module: (part) running.extend(start_part(...)).
    running.extend(start_sinks(settings, service, state))  # event sinks: webhook, syslog
    running.extend(start_feed(settings, service, state))  # threat feed: fetch, apply
    running.extend(start_anomaly_detection(settings, service))  # anomalies: learn, score
    return running
