"""The server's anomaly detection: an observer of the key service and a scoring thread.

At start the thread learns from ``QRC_ANOMALY_TRAIN_DAYS`` of the audit chain (and again
every ``QRC_ANOMALY_RETRAIN_HOURS``); every ``QRC_ANOMALY_WINDOW_SECONDS`` it scores the
windows that closed since the last pass, from what the observer heard, and records the
anomalies as security events. Until the history holds ``QRC_ANOMALY_MIN_WINDOWS`` active
windows it only listens. Each node scores what it served itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from qrc.keys.service import KeyService
from qrc.keys.store.db import utcnow
from qrc.monitor.anomaly import Anomaly, AnomalyModel, DetectorSettings, NotTrained
from qrc.monitor.anomaly_observer import AnomalyObserver, read_history, record_anomalies
from qrc.server.config import Settings

__all__ = ["AnomalyJob", "start_anomaly_detection"]

logger = logging.getLogger(__name__)
_RETRY = timedelta(hours=1)


class AnomalyJob:
    """Trains, scores closed windows, records anomalies; :meth:`run_once` is one pass."""

    def __init__(
        self,
        service: KeyService,
        settings: DetectorSettings,
        *,
        train_days: float,
        retrain_hours: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.service = service
        self.settings = settings
        self.train_days = train_days
        self.retrain_every = timedelta(hours=retrain_hours)
        self.clock = clock
        self.observer = AnomalyObserver(clock=clock)
        self.model: AnomalyModel | None = None
        self.trained_at: datetime | None = None
        self.recorded = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="qrc-anomaly")

    def train(self, now: datetime | None = None) -> AnomalyModel | None:
        """Learn from the history up to ``now`` (None while it is too short)."""
        now = now or self.clock()
        self.trained_at = now
        history = read_history(self.service, now - timedelta(days=self.train_days), now)
        try:
            self.model = AnomalyModel.train(history, self.settings)
        except NotTrained as exc:
            logger.info("anomaly detection waits for history: %s", exc)
            self.model = None
        return self.model

    def closed_before(self, now: datetime) -> datetime:
        """The start of the window under way at ``now``: windows before it are closed."""
        stamp = now.timestamp()
        return datetime.fromtimestamp(stamp - stamp % self.settings.window_seconds, UTC)

    def run_once(self, now: datetime | None = None) -> list[Anomaly]:
        """Retrain if due, score the windows closed by ``now``, record what is unusual."""
        now = now or self.clock()
        # Without a model (too little history) it tries again every hour, not every day.
        every = self.retrain_every if self.model is not None else min(self.retrain_every, _RETRY)
        if self.trained_at is None or now - self.trained_at >= every:
            self.train(now)
        events = self.observer.drain(self.closed_before(now))
        if self.model is None or not events:
            return []
        anomalies = self.model.score(events)
        self.recorded += record_anomalies(self.service, anomalies)
        for anomaly in anomalies:
            logger.warning("anomaly: %s", anomaly.explanation)
        return anomalies

    def start(self) -> None:
        """Listen to the service and start the passes (training first)."""
        self.service.observers.add(self.observer)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; the thread ends after the pass under way."""
        self.service.observers.remove(self.observer)
        self._stop.set()

    def _loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                logger.exception("anomaly pass failed; retrying next window")
            if self._stop.wait(self.settings.window_seconds):
                return


def start_anomaly_detection(settings: Settings, service: KeyService) -> list[AnomalyJob]:
    """Start the detector if ``QRC_ANOMALY_ENABLED``; what to stop at shutdown."""
    if not settings.anomaly_enabled:
        return []
    job = AnomalyJob(
        service,
        DetectorSettings(
            window_seconds=settings.anomaly_window_seconds,
            contamination=settings.anomaly_contamination,
            min_windows=settings.anomaly_min_windows,
        ),
        train_days=settings.anomaly_train_days,
        retrain_hours=settings.anomaly_retrain_hours,
    )
    job.start()
    return [job]
