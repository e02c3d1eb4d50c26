"""Start and run the key service: what ``qrc serve`` does, step by step.

1. refuse unsafe configuration outside development (:meth:`Settings.check_production`);
2. open the key service (store migrated, root KEK opened);
3. power-on self-tests (a failing algorithm is disallowed for good in this process);
4. bootstrap admin token on a new data directory; a checkpoint of the audit chain;
5. the private CA and server certificates, ML-DSA and ECDSA (unless plain HTTP), and the
   thread that renews them and follows the stored TLS mode while serving;
6. the scheduler and checkpoint threads, first-start benchmarks, handshake telemetry;
7. serve until SIGTERM/SIGINT, then stop the jobs and close the store.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from qrc.api.app import create_app
from qrc.api.deps import AppState
from qrc.api.webapp import NOT_BUILT, WEB_DIST
from qrc.keys.factory import open_service
from qrc.keys.service import KeyService
from qrc.server.bootstrap import bootstrap_admin_token
from qrc.server.config import Settings
from qrc.server.jobs import Checkpointer, Scheduler, measure_benchmarks
from qrc.server.monitoring import Stoppable, start_monitoring
from qrc.server.mtls import attach_ca
from qrc.server.selftests import run_selftests
from qrc.server.telemetry import HandshakeTelemetry
from qrc.server.tlsmaint import start_listener_tls
from qrc.transit.server import serve

__all__ = ["ServeOptions", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """How to listen (from the command line)."""

    host: str = "127.0.0.1"
    port: int = 8443
    plain: bool = False
    tls_mode: str | None = None  # None: the stored policy's
    scheduler_interval: float = 60.0
    reuse_port: bool = False  # a worker of `qrc serve --workers N`: the port is shared


def run(settings: Settings, options: ServeOptions, say: Callable[[str], None]) -> None:
    """Start the service and serve until stopped (see the module docstring)."""
    settings.check_production()
    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    service = open_service(settings.service_config())
    try:
        follow_policy = options.tls_mode is None and settings.tls_mode is None
        tls_mode = (
            options.tls_mode or settings.tls_mode or str(service.current_policy()["tls_mode"])
        )
        state = AppState(service, settings.api_settings(tls_mode))
        failed = run_selftests(service.policy)
        state.ready_checks["selftests"] = "ok" if not failed else "failed: " + ", ".join(failed)
        token_path = bootstrap_admin_token(service, data_dir)
        service.audit.checkpoint(actor="serve")
        telemetry = HandshakeTelemetry(service, state.metrics, window=settings.tls_event_seconds)
        state.tls_counters = telemetry.counters
        serving = None
        if not options.plain:
            serving = start_listener_tls(
                settings, service, options.host, tls_mode, follow_policy, telemetry
            )
        tls = serving.files if serving is not None else None
        attach_ca(state, service, data_dir, mutual=serving is not None and serving.mutual)
        if serving is not None:  # a CA made while serving turns mutual TLS on (tlsmaint)
            serving.maintainer.on_mutual = functools.partial(
                attach_ca, state, service, data_dir, mutual=True
            )
        app = create_app(state)
        jobs = _start_jobs(settings, service, state, options.scheduler_interval)
        if settings.bench_on_start:
            threading.Thread(
                target=measure_benchmarks, args=(service,), daemon=True, name="qrc-bench"
            ).start()

        certificates = {
            "dual": "ECDSA and ML-DSA-65 certificates",
            "ml-dsa": "ML-DSA-65 certificate",
            "ecdsa": "ECDSA certificate",
        }[settings.tls_certificates]

        def ready(addresses: list[tuple[str, int]]) -> None:
            for bound_host, bound_port in addresses:
                scheme = "http" if options.plain else "https"
                detail = "" if options.plain else f" (TLS 1.3, {tls_mode}, {certificates})"
                say(f"qrc: serving on {scheme}://{bound_host}:{bound_port}/docs{detail}")
                say(f"qrc: dashboard at {scheme}://{bound_host}:{bound_port}/")
            if not (WEB_DIST / "index.html").is_file():
                say(f"qrc: {NOT_BUILT}")
            if tls is not None:
                say(f"qrc: clients trust {tls.ca}")
                if tls.ecdsa_ca is not None and settings.tls_certificates != "ml-dsa":
                    say(
                        f"qrc: browsers trust {tls.ecdsa_ca} once (docs/transport.md), e.g. "
                        f"certutil -A -d sql:$HOME/.pki/nssdb -t C,, -n qrc -i {tls.ecdsa_ca}"
                    )
            say(f"qrc: admin token in {token_path}")
            say(f"qrc: API docs at /docs; self-tests: {state.ready_checks['selftests']}")

        try:
            serve(
                app,
                options.host,
                options.port,
                listener=serving.listener if serving is not None else None,
                # The API answers over-limit bodies itself (a problem document); the transport
                # only stops the absurd ones.
                options=replace(
                    settings.server_options(4 * state.settings.max_body_bytes),
                    reuse_port=options.reuse_port,
                ),
                on_ready=ready,
            )
        finally:
            if serving is not None:
                serving.maintainer.stop()
            for job in reversed(jobs):
                job.stop()
    finally:
        service.db.dispose()


def _start_jobs(
    settings: Settings, service: KeyService, state: AppState, interval: float
) -> list[Stoppable]:
    """The monitoring parts, the scheduler and the checkpointer, started (stop in reverse:
    the event sinks stop last, so what the jobs record while stopping still leaves)."""
    monitoring = start_monitoring(settings, service, state)
    scheduler = Scheduler(service, interval)
    scheduler.start()
    checkpointer = Checkpointer(service, settings.checkpoint_seconds, settings.checkpoint_events)
    checkpointer.start()
    return [*monitoring, scheduler, checkpointer]
