"""The event sinks of a process, built from its settings and attached to its key service.

:func:`start_sinks` is what :func:`qrc.server.monitoring.start_monitoring` calls: with a
webhook or syslog receiver configured it makes a :class:`SinkDispatcher`, adds it to the
service's observers (security events), puts a :class:`WitnessTee` in front of the service's
witness (audit checkpoints), and exports the sinks' counters as metrics. The command line
(``qrc incident``) uses :func:`open_sinks` the same way and flushes before it exits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from qrc.monitor.sinks import Backoff, Sink, SinkDispatcher, SinkStats, WitnessTee
from qrc.server.config import ConfigurationError, Settings

if TYPE_CHECKING:
    from qrc.api.deps import AppState
    from qrc.crypto.base import SigningKey
    from qrc.keys.service import KeyService

__all__ = ["attach", "build_sinks", "open_sinks", "render_sink_metrics", "start_sinks"]


def _signing_key(settings: Settings) -> SigningKey | None:
    from qrc.crypto.base import SigningKey  # noqa: PLC0415
    from qrc.crypto.errors import KeyFormatError  # noqa: PLC0415
    from qrc.crypto.keyfile import load_private_pem  # noqa: PLC0415

    path = settings.webhook_signing_key
    if path is None:
        return None
    try:
        key = load_private_pem(path.read_bytes())
    except (OSError, KeyFormatError) as exc:
        raise ConfigurationError(
            f"QRC_WEBHOOK_SIGNING_KEY: cannot read {path} ({exc}); give an unencrypted "
            "PKCS#8 PEM ML-DSA key (qrc keygen -a ML-DSA-65 -o FILE)"
        ) from None
    if not isinstance(key, SigningKey) or not key.algorithm.startswith(("ML-DSA", "SLH-DSA")):
        raise ConfigurationError(
            f"QRC_WEBHOOK_SIGNING_KEY: {path} holds a {key.algorithm} key; give an ML-DSA or "
            "SLH-DSA signing key"
        )
    return key


def build_sinks(settings: Settings) -> list[Sink]:
    """The sinks ``settings`` configure (none: an empty list).

    Raises:
        ConfigurationError: a sink's settings are incomplete or invalid (the message names
            the variable and what to set).
    """
    sinks: list[Sink] = []
    if settings.webhook_url:
        from qrc.monitor.sinks_webhook import WebhookSink, parse_secret  # noqa: PLC0415

        secret = None
        if settings.webhook_secret is not None:
            try:
                secret = parse_secret(settings.webhook_secret.get_secret_value())
            except ValueError as exc:
                raise ConfigurationError(f"QRC_WEBHOOK_SECRET: {exc}") from None
        signer = _signing_key(settings)
        if secret is None and signer is None:
            raise ConfigurationError(
                "QRC_WEBHOOK_URL is set but deliveries would be unsigned: set "
                "QRC_WEBHOOK_SECRET (32 random bytes, e.g. whsec_$(openssl rand -base64 32)) "
                "or QRC_WEBHOOK_SIGNING_KEY"
            )
        try:
            sinks.append(
                WebhookSink(
                    settings.webhook_url,
                    secret=secret,
                    signer=signer,
                    ca_file=str(settings.webhook_ca_file) if settings.webhook_ca_file else None,
                    tls_mode=settings.webhook_tls_mode,
                    timeout=settings.sink_timeout_seconds,
                )
            )
        except ValueError as exc:
            raise ConfigurationError(f"QRC_WEBHOOK_URL: {exc}") from None
    if settings.syslog_address:
        from qrc.monitor.sinks_syslog import SyslogSink  # noqa: PLC0415

        try:
            sinks.append(
                SyslogSink(
                    settings.syslog_address,
                    facility=settings.syslog_facility,
                    ca_file=str(settings.syslog_ca_file) if settings.syslog_ca_file else None,
                    timeout=settings.sink_timeout_seconds,
                )
            )
        except ValueError as exc:
            raise ConfigurationError(f"QRC_SYSLOG_ADDRESS: {exc}") from None
    return sinks


def attach(dispatcher: SinkDispatcher, service: KeyService) -> None:
    """Make ``dispatcher`` hear ``service``'s security events and checkpoints."""
    service.observers.add(dispatcher)
    trail = service.audit
    if not isinstance(trail.witness, WitnessTee):
        trail.witness = WitnessTee(trail.witness, dispatcher.checkpoint)


def _dispatcher(settings: Settings, service: KeyService, sinks: list[Sink]) -> SinkDispatcher:
    return SinkDispatcher(
        sinks,
        node=service.ctx.node,
        capacity=settings.sink_queue_size,
        backoff=Backoff(settings.sink_retry_seconds, settings.sink_max_retry_seconds),
    )


def render_sink_metrics(stats: list[SinkStats]) -> list[str]:
    """Prometheus lines of the sinks' counters."""
    out = [
        "# HELP qrc_sink_events_total Events per sink: queued, delivered, retried.",
        "# TYPE qrc_sink_events_total counter",
    ]
    for s in stats:
        for outcome in ("queued", "delivered", "retries"):
            out.append(f'qrc_sink_events_total{{sink="{s.sink}",outcome="{outcome}"}} '
                       f"{getattr(s, outcome)}")  # fmt: skip
    out += [
        "# HELP qrc_sink_dropped_total Events a sink lost, by reason.",
        "# TYPE qrc_sink_dropped_total counter",
    ]
    for s in stats:
        for reason, n in sorted(s.dropped.items()):
            out.append(f'qrc_sink_dropped_total{{sink="{s.sink}",reason="{reason}"}} {n}')
    out += ["# HELP qrc_sink_queue_depth Events waiting.", "# TYPE qrc_sink_queue_depth gauge"]
    out += [f'qrc_sink_queue_depth{{sink="{s.sink}"}} {s.depth}' for s in stats]
    return out


def start_sinks(settings: Settings, service: KeyService, state: AppState) -> list[SinkDispatcher]:
    """Start the configured sinks for a server (none configured: nothing)."""
    sinks = build_sinks(settings)
    if not sinks:
        return []
    dispatcher = _dispatcher(settings, service, sinks)
    attach(dispatcher, service)
    state.metrics.extra.append(lambda: render_sink_metrics(dispatcher.stats()))
    return [dispatcher]


@contextmanager
def open_sinks(
    settings: Settings, service: KeyService, *, flush_seconds: float = 10.0
) -> Iterator[SinkDispatcher | None]:
    """The configured sinks attached to ``service`` for a command; queued events go out
    (for up to ``flush_seconds``) before it returns."""
    sinks = build_sinks(settings)
    if not sinks:
        yield None
        return
    dispatcher = _dispatcher(settings, service, sinks)
    dispatcher.flush_seconds = flush_seconds
    attach(dispatcher, service)
    try:
        yield dispatcher
    finally:
        service.observers.remove(dispatcher)
        dispatcher.stop()
