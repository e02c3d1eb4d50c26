"""How much a post-quantum TLS handshake costs against a classical one.

Full TLS 1.3 handshakes (no resumption), client and server in one thread over memory BIOs,
so that the network and the scheduler stay out of the number: the same ML-DSA-65 server
certificate and server context, the client verifying the chain and host name as
:class:`~qrc.transit.client.PQClient` does, and only the key-exchange group changing
between ``X25519MLKEM768`` and ``X25519``. Rounds of the two alternate, and the medians
are compared; the ratio (PQ rate / classical rate) is what to read, not the absolute rates.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL

from qrc.transit import tls
from qrc.transit.ca import ensure_server_tls

__all__ = [
    "TARGET_RATIO",
    "HandshakeBenchmark",
    "handshake_benchmark",
    "handshake_in_memory",
    "handshake_rate",
    "handshake_rates",
]

TARGET_RATIO = 0.80
"""Hybrid handshakes per second should reach at least this share of classical ones."""
_HOST = "localhost"
_MAX_FLIGHTS = 16


def _move(source: SSL.Connection, target: SSL.Connection) -> None:
    while True:
        try:
            data = source.bio_read(65536)
        except SSL.WantReadError:
            return
        target.bio_write(data)


def handshake_in_memory(
    client: SSL.Connection, server: SSL.Connection, server_time: list[float] | None = None
) -> None:
    """Run a TLS handshake between two memory-BIO connections (``Connection(ctx, None)``).

    ``server_time``: the seconds spent in the server's handshake calls are appended to it
    (what the listener pays, without the client's work).

    Raises ``OpenSSL.SSL.Error`` from the side that fails; a server-side failure is
    raised only after its alert has reached the client, so both sides have seen it.
    """
    server.set_accept_state()
    client_done = server_done = False
    for _ in range(_MAX_FLIGHTS):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except SSL.WantReadError:
                pass
        _move(client, server)
        if not server_done:
            start = time.perf_counter()
            try:
                server.do_handshake()
                server_done = True
            except SSL.WantReadError:
                pass
            except SSL.Error:
                _move(server, client)
                raise
            finally:
                if server_time is not None:
                    server_time.append(time.perf_counter() - start)
        _move(server, client)
        if client_done and server_done:
            return
    raise RuntimeError("handshake did not finish")


def handshake_rate(
    server_ctx: SSL.Context, client_ctx: SSL.Context, handshakes: int, *, hostname: str = _HOST
) -> float:
    """New full handshakes per second for this pair of contexts."""
    start = time.perf_counter()
    for _ in range(handshakes):
        client = tls.client_connection(client_ctx, None, hostname)
        handshake_in_memory(client, SSL.Connection(server_ctx, None))
    return handshakes / (time.perf_counter() - start)


def handshake_rates(
    server_ctx: SSL.Context, client_ctx: SSL.Context, handshakes: int, *, hostname: str = _HOST
) -> tuple[float, float]:
    """New full handshakes per second for this pair of contexts: client and server work
    together, and the server's alone (the capacity of a listener whose clients are
    elsewhere)."""
    server_time: list[float] = []
    start = time.perf_counter()
    for _ in range(handshakes):
        client = tls.client_connection(client_ctx, None, hostname)
        handshake_in_memory(client, SSL.Connection(server_ctx, None), server_time)
    return handshakes / (time.perf_counter() - start), handshakes / sum(server_time)


@dataclass(frozen=True)
class HandshakeBenchmark:
    pq_group: str
    pq_rate: float
    classical_group: str
    classical_rate: float
    rounds: int
    handshakes: int

    @property
    def ratio(self) -> float:
        """PQ handshakes per second over classical ones (the target is at least 0.80)."""
        return self.pq_rate / self.classical_rate


def handshake_benchmark(
    *,
    rounds: int = 5,
    handshakes: int = 100,
    pq_group: str = "X25519MLKEM768",
    classical_group: str = "X25519",
    tls_dir: str | Path | None = None,
) -> HandshakeBenchmark:
    """Median new-handshake rates of ``pq_group`` and ``classical_group`` in one run.

    ``tls_dir``: a data directory for the CA and server certificate (a temporary one if
    None).
    """
    with tempfile.TemporaryDirectory(prefix="qrc-bench-tls-") as tmp:
        files = ensure_server_tls(tls_dir if tls_dir is not None else tmp, [_HOST])
        server_ctx = tls.server_context(files.cert, files.key, mode="hybrid-preferred")
        pq_ctx = tls.client_context(files.ca, groups=(pq_group,))
        classical_ctx = tls.client_context(files.ca, groups=(classical_group,))
        # Check the groups really are the ones measured, then warm up.
        for ctx, group in ((pq_ctx, pq_group), (classical_ctx, classical_group)):
            client = tls.client_connection(ctx, None, _HOST)
            handshake_in_memory(client, SSL.Connection(server_ctx, None))
            if (tls.negotiated_group(client) or "").lower() != group.lower():
                raise RuntimeError(f"expected {group}, negotiated {tls.negotiated_group(client)}")
        pq_rates, classical_rates = [], []
        for _ in range(rounds):
            pq_rates.append(handshake_rate(server_ctx, pq_ctx, handshakes))
            classical_rates.append(handshake_rate(server_ctx, classical_ctx, handshakes))
    return HandshakeBenchmark(
        pq_group=pq_group,
        pq_rate=statistics.median(pq_rates),
        classical_group=classical_group,
        classical_rate=statistics.median(classical_rates),
        rounds=rounds,
        handshakes=handshakes,
    )
