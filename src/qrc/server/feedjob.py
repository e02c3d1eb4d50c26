"""The threat feed of a server: its configured publisher key, and a pass on an interval.

:func:`start_feed` is what :func:`qrc.server.monitoring.start_monitoring` calls. With
``QRC_FEED_PUBLISHER_KEY`` set it attaches a :class:`~qrc.monitor.feed.ThreatFeed` to the
service (so ``POST /protocols/feed`` can verify submissions) and starts a daemon thread that
runs :func:`~qrc.monitor.landscape.monitor_quantum_threat_landscape` every
``QRC_FEED_INTERVAL_SECONDS``: fetch ``QRC_FEED_URL`` if set, apply what is due. A pass that
fails is logged and retried at the next interval; the policy never changes on a failure.
"""

from __future__ import annotations

import logging
import threading

from qrc.api.deps import AppState
from qrc.crypto.errors import CryptoError
from qrc.keys.service import KeyService
from qrc.monitor.feed import ThreatFeed, attach_feed
from qrc.monitor.feed_fetch import is_url
from qrc.monitor.feed_format import load_publisher
from qrc.monitor.landscape import monitor_quantum_threat_landscape
from qrc.server.config import ConfigurationError, Settings

__all__ = ["FeedJob", "open_feed", "start_feed"]

logger = logging.getLogger(__name__)
_ACTOR = "threat-feed"


class FeedJob:
    """A daemon thread running one landscape pass at start, then every ``interval`` seconds."""

    def __init__(self, service: KeyService, feed: ThreatFeed, interval: float) -> None:
        self.service, self.feed, self.interval = service, feed, interval
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="qrc-threat-feed")

    def start(self) -> None:
        """Start the passes (the first at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass under way, if any."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                landscape = monitor_quantum_threat_landscape(self.service, self.feed)
                for error in landscape.errors:
                    logger.warning("threat feed: %s", error)
            except Exception:
                logger.exception("threat feed pass failed; retrying next interval")
            self.passes += 1
            self._stop.wait(self.interval)


def open_feed(settings: Settings, service: KeyService) -> ThreatFeed | None:
    """The configured threat feed of ``service`` (None without a publisher key).

    Raises:
        ConfigurationError: the publisher key file cannot be read or is not ML-DSA/SLH-DSA,
            or ``QRC_FEED_URL`` is set without a publisher key or is not https:// or a file.
    """
    if settings.feed_publisher_key is None:
        if settings.feed_url:
            raise ConfigurationError(
                "QRC_FEED_URL is set but QRC_FEED_PUBLISHER_KEY is not: set the publisher's "
                "public key file, or a feed could not be verified"
            )
        return None
    url = settings.feed_url
    if url and is_url(url) and not url.startswith(("https://", "file://")):
        raise ConfigurationError(f"QRC_FEED_URL: {url!r} must be https:// or a file path")
    try:
        publisher = load_publisher(settings.feed_publisher_key)
    except (CryptoError, OSError) as exc:
        raise ConfigurationError(f"QRC_FEED_PUBLISHER_KEY: {exc}") from None
    return ThreatFeed(service, publisher, source=settings.feed_url, ca_file=settings.feed_ca_file)


def start_feed(settings: Settings, service: KeyService, state: AppState) -> list[FeedJob]:
    """Attach the configured feed to ``service`` and start its passes (none unconfigured)."""
    feed = open_feed(settings, service)
    if feed is None:
        return []
    attach_feed(service, feed)
    job = FeedJob(service, feed, settings.feed_interval_seconds)
    job.start()
    logger.info(
        "threat feed: publisher key %s (%s), source %s, every %.0f s",
        feed.publisher.key_id[:16], feed.publisher.algorithm, feed.source or "none",
        settings.feed_interval_seconds,
    )  # fmt: skip
    return [job]
