"""``qrc serve``: the key service over PQ TLS (or plain HTTP on loopback behind a terminator).

On a new data directory it initialises everything the embedded default needs: the SQLite
store, the local sealed root KEK, a private ML-DSA-65 CA and server certificate
(``DIR/tls/ca.pem`` is what clients trust), and a bootstrap admin token in
``DIR/admin.token`` (mode 0600). Then it runs the power-on self-tests, starts the scheduler
(due rotations and destructions, audit checkpoints) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from qrc.keys.clients import ClientStore
    from qrc.keys.service import KeyService

__all__ = ["serve"]

logger = logging.getLogger("qrc.serve")


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _selftests() -> str:
    """Known-answer tests of every algorithm; a failing one is disallowed in this process."""
    from qrc.crypto.registry import Status, all_algorithms, set_status  # noqa: PLC0415
    from qrc.crypto.selftest import known_answer_test  # noqa: PLC0415

    failed = []
    for info in all_algorithms():
        try:
            known_answer_test(info.id)
        except Exception as exc:
            failed.append(info.id)
            set_status(info.id, Status.DISALLOWED)
            logger.error("self-test of %s failed (%s): it will not be served", info.id, exc)
    return "ok" if not failed else "failed: " + ", ".join(failed)


def _bootstrap_token(clients: ClientStore, data_dir: Path) -> Path:
    from qrc.keys.clients import Role  # noqa: PLC0415

    path = data_dir / "admin.token"
    if not path.exists() and not any(
        c.role is Role.ADMIN for c, revoked in clients.list() if revoked is None
    ):
        _, token = clients.create(name="bootstrap-admin", role="admin")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
    return path


def _scheduler(service: KeyService, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            ran = service.run_due(actor="scheduler")
            if any(ran.values()):
                logger.info("scheduler: %s", ran)
            service.audit_checkpoint(actor="scheduler")
        except Exception:
            logger.exception("scheduler pass failed; retrying next interval")


def _benchmarks(service: KeyService) -> None:
    """Measure the quick set once, so /algorithms/status has numbers (first start only)."""
    from qrc.crypto.benchmark import QUICK_SET, bench_algorithm  # noqa: PLC0415
    from qrc.keys.db import utcnow  # noqa: PLC0415
    from qrc.keys.models import Policy  # noqa: PLC0415

    with service.db.session() as session:
        if session.get(Policy, "benchmarks") is not None:
            return
    results = {}
    for algorithm in QUICK_SET:
        try:
            result = bench_algorithm(algorithm, budget=0.05)
        except Exception as exc:  # a benchmark is best effort
            logger.warning("benchmark of %s failed: %s", algorithm, exc)
            continue
        results[algorithm] = {
            "ops_per_second": {k: round(v, 1) for k, v in result.ops.items()},
            "measured_at": utcnow().isoformat(),
        }
    with service.db.session() as session:
        if session.get(Policy, "benchmarks") is None:
            session.add(Policy(name="benchmarks", value=results, updated_by="serve"))


class _HandshakeEvents:
    """Turns classical or refused TLS handshakes into security events, off the reactor.

    The transport calls the hooks on its event-loop thread, which must not wait on the
    database; events go through a queue to a writer thread (at most one per kind a minute).
    """

    def __init__(self, service: KeyService, metrics: Any) -> None:
        self.service, self.metrics = service, metrics
        self.queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.last: dict[str, float] = {}
        threading.Thread(target=self._write, daemon=True, name="qrc-tls-events").start()

    def handshake(self, group: str, cipher: str) -> None:
        from qrc.transit.tls import is_pq_group  # noqa: PLC0415

        self.metrics.handshake(group)
        if not is_pq_group(group):
            self.queue.put(("classical_tls_handshake", group))

    def failure(self, alert: str) -> None:
        self.metrics.handshake(f"failed:{alert}")
        self.queue.put(("tls_handshake_refused", alert))

    def _write(self) -> None:
        from qrc.keys.events import EventType, Severity, record_event  # noqa: PLC0415

        while True:
            kind, what = self.queue.get()
            now = time.monotonic()
            if now - self.last.get(kind, -1e9) < 60:
                continue
            self.last[kind] = now
            event = (
                EventType.CLASSICAL_TLS_HANDSHAKE
                if kind == "classical_tls_handshake"
                else EventType.TLS_HANDSHAKE_REFUSED
            )
            try:
                with self.service.db.session() as session:
                    record_event(
                        session, event, Severity.MEDIUM, "tls", details={"detail": what[:100]}
                    )
                    self.service.audit.append(
                        session,
                        event_type=f"tls.{kind}",
                        actor="tls",
                        result="failure",
                        details={"detail": what[:100]},
                    )
            except Exception:
                logger.exception("could not record a TLS security event")


def serve(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", envvar="QRC_DATA_DIR", help="Data directory.")
    ] = Path(".qrc"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8443,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain HTTP on loopback, for a TLS terminator.")
    ] = False,
    tls_mode: Annotated[
        str | None,
        typer.Option(help="pq-only or hybrid-preferred (default: the stored policy, pq-only)."),
    ] = None,
    scheduler_interval: Annotated[
        float, typer.Option(help="Seconds between scheduler passes.")
    ] = 60.0,
) -> None:
    """Run the key service (HTTPS with X25519MLKEM768 and an ML-DSA certificate by default)."""
    # The service's dependencies load here, not when any `qrc` command starts.
    from qrc.api.app import create_app  # noqa: PLC0415
    from qrc.api.deps import AppState, Settings  # noqa: PLC0415
    from qrc.keys.clients import ClientStore  # noqa: PLC0415
    from qrc.keys.factory import open_service  # noqa: PLC0415
    from qrc.keys.policy import current_policy  # noqa: PLC0415
    from qrc.transit.ca import default_server_names, ensure_server_tls  # noqa: PLC0415
    from qrc.transit.server import ServerOptions  # noqa: PLC0415
    from qrc.transit.server import serve as serve_asgi  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if tls_mode not in (None, "pq-only", "hybrid-preferred"):
        raise typer.BadParameter("--tls-mode must be pq-only or hybrid-preferred")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    service = open_service(data_dir)
    if tls_mode is None:  # POST /protocols/update stores it; it applies at the next start
        with service.db.session() as session:
            tls_mode = str(current_policy(session)["tls_mode"])
    clients = ClientStore(service.db)
    state = AppState(
        service,
        clients,
        Settings(
            max_body_bytes=int(os.environ.get("QRC_MAX_BODY_BYTES") or 1 << 20),
            rate_limit_per_second=float(os.environ.get("QRC_RATE_LIMIT") or 500),
            rate_limit_burst=float(os.environ.get("QRC_RATE_BURST") or 1000),
            tls_mode=tls_mode,
        ),
    )
    state.ready_checks["selftests"] = _selftests()
    token_path = _bootstrap_token(clients, data_dir)
    service.audit_checkpoint(actor="serve")
    ca_passphrase = os.environ.get("QRC_CA_PASSPHRASE")
    tls = (
        None
        if plain
        else ensure_server_tls(
            data_dir,
            default_server_names(host),
            ca_passphrase=ca_passphrase.encode() if ca_passphrase else None,
        )
    )
    app = create_app(state)
    stop = threading.Event()
    threading.Thread(
        target=_scheduler,
        args=(service, scheduler_interval, stop),
        daemon=True,
        name="qrc-scheduler",
    ).start()
    if os.environ.get("QRC_BENCH_ON_START", "1") != "0":
        threading.Thread(target=_benchmarks, args=(service,), daemon=True, name="qrc-bench").start()

    handshakes = _HandshakeEvents(service, state.metrics)

    def ready(addresses: list[tuple[str, int]]) -> None:
        for bound_host, bound_port in addresses:
            scheme = "http" if plain else "https"
            _say(
                f"qrc: serving on {scheme}://{bound_host}:{bound_port}"
                f"{' (TLS 1.3, X25519MLKEM768, ML-DSA-65 certificate)' if not plain else ''}"
            )
        if tls is not None:
            _say(f"qrc: clients trust {tls.ca}")
        _say(f"qrc: admin token in {token_path}")
        _say(f"qrc: API docs at /docs; self-tests: {state.ready_checks['selftests']}")

    try:
        serve_asgi(
            app,
            host,
            port,
            tls,
            mode=tls_mode,  # type: ignore[arg-type]
            on_handshake=handshakes.handshake,
            on_handshake_failure=handshakes.failure,
            # The API answers over-limit bodies itself (a problem document); the transport only
            # stops the absurd ones.
            options=ServerOptions(max_body_bytes=4 * state.settings.max_body_bytes),
            on_ready=ready,
        )
    finally:
        stop.set()
        service.db.dispose()
