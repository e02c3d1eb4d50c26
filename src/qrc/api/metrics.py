"""Prometheus metrics in the text exposition format (no client library needed).

Requests and latencies by route and status, crypto operations by algorithm, security events
by type, errors by problem type, and TLS handshakes by negotiated group (fed by the
transport's hook). :class:`Metrics` is an observer of the key service
(:mod:`qrc.keys.observers`): the service reports operations and security events to it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

from qrc.keys.cache import CacheStats
from qrc.keys.observers import KeyUse, SecurityNotice

__all__ = ["Metrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), "").replace(chr(34), "")}"' for k, v in labels.items()
    )
    return "{" + inner + "}"


class Metrics:
    """Counters and one latency histogram, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_buckets: dict[tuple[str, float], int] = defaultdict(int)
        self.crypto_ops: dict[tuple[str, str], int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.handshakes: dict[str, int] = defaultdict(int)
        self.security_events: dict[str, int] = defaultdict(int)
        # The key service's caches, read at each scrape.
        self.caches: Callable[[], list[CacheStats]] | None = None
        # More exposition lines from parts that live elsewhere (event sinks...), per scrape.
        self.extra: list[Callable[[], list[str]]] = []

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished request."""
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            self.latency_count[route] += 1
            self.latency_sum[route] += seconds
            for bound in _BUCKETS:
                if seconds <= bound:
                    self.latency_buckets[(route, bound)] += 1

    def crypto_operation(self, operation: str, algorithm: str) -> None:
        """One cryptographic operation on a managed key."""
        with self._lock:
            self.crypto_ops[(operation, algorithm)] += 1

    def key_used(self, use: KeyUse) -> None:
        """Observer: count each successful use of a managed key."""
        if use.result == "success" and use.algorithm is not None:
            self.crypto_operation(use.operation, use.algorithm)

    def security_event(self, notice: SecurityNotice) -> None:
        """Observer: count security events by type."""
        with self._lock:
            self.security_events[notice.event_type] += 1

    def error(self, problem_type: str) -> None:
        """One error answer."""
        with self._lock:
            self.errors[problem_type] += 1

    def handshake(self, group: str) -> None:
        """One completed TLS handshake and the key-exchange group it negotiated."""
        with self._lock:
            self.handshakes[group or "unknown"] += 1

    def _render_caches(self) -> list[str]:
        stats = self.caches() if self.caches is not None else []
        out: list[str] = []
        for metric, kind, what in (
            ("size", "gauge", "Entries held"),
            ("max_size", "gauge", "Most entries held"),
            ("hits", "counter", "Lookups answered"),
            ("misses", "counter", "Lookups not answered"),
            ("evictions", "counter", "Entries dropped for room"),
        ):
            name = f"qrc_cache_{metric}" + ("_total" if kind == "counter" else "")
            out += [f"# HELP {name} {what}, per cache.", f"# TYPE {name} {kind}"]
            out += [f"{name}{_labels(cache=s.name)} {getattr(s, metric)}" for s in stats]
        return out

    def render(self) -> str:
        """The exposition text."""
        out: list[str] = []
        with self._lock:
            out += [
                "# HELP qrc_http_requests_total HTTP requests.",
                "# TYPE qrc_http_requests_total counter",
            ]
            for (method, route, status), n in sorted(self.requests.items()):
                labels = _labels(method=method, route=route, status=status)
                out.append(f"qrc_http_requests_total{labels} {n}")
            out += [
                "# HELP qrc_http_request_seconds Request latency.",
                "# TYPE qrc_http_request_seconds histogram",
            ]
            for route in sorted(self.latency_count):
                for bound in _BUCKETS:
                    n = self.latency_buckets.get((route, bound), 0)
                    out.append(
                        f"qrc_http_request_seconds_bucket{_labels(route=route, le=str(bound))} {n}"
                    )
                count = self.latency_count[route]
                out.append(
                    f"qrc_http_request_seconds_bucket{_labels(route=route, le='+Inf')} {count}"
                )
                total = self.latency_sum[route]
                out.append(f"qrc_http_request_seconds_sum{_labels(route=route)} {total:.6f}")
                out.append(f"qrc_http_request_seconds_count{_labels(route=route)} {count}")
            out += [
                "# HELP qrc_crypto_operations_total Cryptographic operations on managed keys.",
                "# TYPE qrc_crypto_operations_total counter",
            ]
            for (operation, algorithm), n in sorted(self.crypto_ops.items()):
                labels = _labels(operation=operation, algorithm=algorithm)
                out.append(f"qrc_crypto_operations_total{labels} {n}")
            out += [
                "# HELP qrc_errors_total Error answers by problem type.",
                "# TYPE qrc_errors_total counter",
            ]
            for problem, n in sorted(self.errors.items()):
                out.append(f"qrc_errors_total{_labels(type=problem)} {n}")
            out += [
                "# HELP qrc_tls_handshakes_total TLS handshakes by negotiated group.",
                "# TYPE qrc_tls_handshakes_total counter",
            ]
            for group, n in sorted(self.handshakes.items()):
                out.append(f"qrc_tls_handshakes_total{_labels(group=group)} {n}")
            out += [
                "# HELP qrc_security_events_total Security events recorded by this process.",
                "# TYPE qrc_security_events_total counter",
            ]
            for event_type, n in sorted(self.security_events.items()):
                out.append(f"qrc_security_events_total{_labels(type=event_type)} {n}")
        out += self._render_caches()
        for part in list(self.extra):
            out += part()
        return "\n".join(out) + "\n"
