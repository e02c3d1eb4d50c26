"""What a handshake costs on the service's listener, by what changes one at a time.

Full TLS 1.3 handshakes in memory (:func:`qrc.transit.bench.handshake_in_memory`), on a
:class:`~qrc.transit.listener.ListenerTLS`-built context as ``qrc serve`` uses it (both
certificates, server preference), the client verifying the chain and host name. Pairs that
differ in one thing, measured in alternating rounds of one run, medians compared:

- key exchange ``X25519MLKEM768`` vs ``X25519``, with the ECDSA certificate, then with ML-DSA;
- certificate ML-DSA-65 vs ECDSA P-256, over ``X25519MLKEM768``;
- mutual TLS (an ML-DSA-65 client certificate from :class:`~qrc.transit.authority.PrivateCA`)
  vs server-only, over ``X25519MLKEM768`` with the ML-DSA certificate.

Each pair is measured twice from the same handshakes: the whole handshake (client and server
in this one process) and the server's handshake calls alone, which is what a listener pays
when its clients are other machines. The ratios are what to read; absolute rates depend on
the machine.

:func:`key_exchange_cost` times what the hybrid adds to the server, with the primitives in
the same rounds: the ML-KEM-768 half of ``X25519MLKEM768`` is, on the server, decoding the
client's 1184-byte encapsulation key (which expands its matrix) and encapsulating; the
X25519 half is what a classical handshake does too. With the server's classical handshake
time ``t``, the server-side ratio cannot exceed ``t / (t + ML-KEM)``: a profile of the server
(perf, one process per side) finds no other difference than that, the larger ClientHello
costing no extra round of ``do_handshake`` (two calls either way, no HelloRetryRequest, no
share made for a group not chosen).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from OpenSSL import SSL

from qrc.crypto.base import SigningKey
from qrc.crypto.schemes import get_signature
from qrc.transit import tls
from qrc.transit.authority import FAMILIES, PrivateCA
from qrc.transit.bench import handshake_in_memory, handshake_rates
from qrc.transit.listener import listener_context
from qrc.transit.pki import ensure_listener_tls

__all__ = ["Comparison", "KeyExchangeCost", "key_exchange_cost", "listener_benchmark"]

_HOST = "localhost"
_ML_DSA_ONLY = b"mldsa65:mldsa87:mldsa44"
_ECDSA_ONLY = b"ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384"


@dataclass(frozen=True)
class Comparison:
    """Handshakes per second of ``subject`` against ``baseline`` (same run)."""

    name: str
    subject: str
    subject_rate: float
    baseline: str
    baseline_rate: float

    @property
    def ratio(self) -> float:
        return self.subject_rate / self.baseline_rate


class _MemoryKeys:
    """CA keys held in memory (a benchmark has no key service)."""

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}

    def signing_key(self, name: str, algorithm: str, purpose: str) -> SigningKey:
        if name not in self._keys:
            self._keys[name] = get_signature(algorithm).generate()
        return self._keys[name]


def _client(
    ca: Path, groups: str, sigalgs: bytes, cert: tuple[Path, Path] | None = None
) -> SSL.Context:
    ctx = tls.client_context(ca, groups=(groups,))
    if Binding.lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs) != 1:
        raise RuntimeError("OpenSSL refused the signature algorithms")
    if cert is not None:
        ctx.use_certificate_chain_file(str(cert[0]))
        ctx.use_privatekey_file(str(cert[1]))
    return ctx


def _check(server: SSL.Context, client: SSL.Context, group: str, certificate: str) -> None:
    conn = tls.client_connection(client, None, _HOST)
    handshake_in_memory(conn, SSL.Connection(server, None))
    got = (tls.negotiated_group(conn), tls.peer_certificate_algorithm(conn))
    if got != (group, certificate):
        raise RuntimeError(f"expected {group} with {certificate}, got {got}")


@dataclass(frozen=True)
class KeyExchangeCost:
    """What ``X25519MLKEM768`` adds to the server's handshake over ``X25519`` (ECDSA
    certificate), against the primitives, in microseconds (medians of alternating rounds)."""

    server_classical: float
    """The server's handshake calls, ``X25519``."""
    server_hybrid: float
    """The server's handshake calls, ``X25519MLKEM768``."""
    ml_kem_768: float
    """Decode a 1184-byte encapsulation key and encapsulate: the server's ML-KEM work."""
    x25519: float
    """X25519 key generation and exchange: the server's work in either group."""

    @property
    def extra(self) -> float:
        return self.server_hybrid - self.server_classical

    @property
    def ceiling(self) -> float:
        """The best server-side rate ratio the primitives allow: classical / (classical +
        ML-KEM)."""
        return self.server_classical / (self.server_classical + self.ml_kem_768)


def _per_call_us(operation: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        operation()
    return (time.perf_counter() - start) / calls * 1e6


def key_exchange_cost(*, rounds: int = 7, handshakes: int = 200) -> KeyExchangeCost:
    """The server side of the ECDSA key-exchange pair, with the primitives timed in the
    same rounds (cryptography's, on the same OpenSSL)."""
    encapsulation_key = mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()
    peer = x25519.X25519PrivateKey.generate().public_key()

    def encapsulate() -> object:
        return mlkem.MLKEM768PublicKey.from_public_bytes(encapsulation_key).encapsulate()

    def exchange() -> object:
        return x25519.X25519PrivateKey.generate().exchange(peer)

    with tempfile.TemporaryDirectory(prefix="qrc-bench-listener-") as tmp:
        files = ensure_listener_tls(tmp, [_HOST])
        server = listener_context(files, mode="hybrid-preferred")
        hybrid = _client(files.ca, "X25519MLKEM768", _ECDSA_ONLY)
        classical = _client(files.ca, "X25519", _ECDSA_ONLY)
        _check(server, hybrid, "X25519MLKEM768", "ECDSA-secp256r1")
        _check(server, classical, "X25519", "ECDSA-secp256r1")
        samples: list[tuple[float, float, float, float]] = []
        for _ in range(rounds):
            samples.append(
                (
                    1e6 / handshake_rates(server, classical, handshakes)[1],
                    1e6 / handshake_rates(server, hybrid, handshakes)[1],
                    _per_call_us(encapsulate, handshakes),
                    _per_call_us(exchange, handshakes),
                )
            )
    return KeyExchangeCost(*(statistics.median(s[i] for s in samples) for i in range(4)))


def listener_benchmark(*, rounds: int = 5, handshakes: int = 100) -> list[Comparison]:
    """The four comparisons of the module docstring."""
    with tempfile.TemporaryDirectory(prefix="qrc-bench-listener-") as tmp:
        files = ensure_listener_tls(tmp, [_HOST])
        ca = PrivateCA(Path(tmp) / "ca", _MemoryKeys())
        ca.init()
        chain, key, _record = ca.issue("bench-client", family="ml-dsa")
        (Path(tmp) / "client.pem").write_bytes(chain)
        (Path(tmp) / "client.key").write_bytes(key)
        client_cert = (Path(tmp) / "client.pem", Path(tmp) / "client.key")
        server = listener_context(files, mode="hybrid-preferred")
        mutual_server = listener_context(
            files,
            mode="hybrid-preferred",
            client_ca=ca.trust_file,
            client_crls=[ca.crl_file(f) for f in FAMILIES],
        )
        pq, classical = "X25519MLKEM768", "X25519"
        ecdsa, ml_dsa = "ECDSA-secp256r1", "ML-DSA-65"
        pq_ecdsa = _client(files.ca, pq, _ECDSA_ONLY)
        pq_mldsa = _client(files.ca, pq, _ML_DSA_ONLY)
        _check(server, pq_ecdsa, pq, ecdsa)
        _check(server, pq_mldsa, pq, ml_dsa)
        classical_ecdsa = _client(files.ca, classical, _ECDSA_ONLY)
        classical_mldsa = _client(files.ca, classical, _ML_DSA_ONLY)
        _check(server, classical_ecdsa, classical, ecdsa)
        mutual = _client(files.ca, pq, _ML_DSA_ONLY, client_cert)
        _check(mutual_server, mutual, pq, ml_dsa)
        pairs = [
            ("key exchange, ECDSA certificate",
             (pq, server, pq_ecdsa), (classical, server, classical_ecdsa)),
            ("key exchange, ML-DSA-65 certificate",
             (pq, server, pq_mldsa), (classical, server, classical_mldsa)),
            ("certificate, X25519MLKEM768", (ml_dsa, server, pq_mldsa), (ecdsa, server, pq_ecdsa)),
            ("mutual TLS, ML-DSA-65 both ways",
             ("mutual", mutual_server, mutual), ("server-only", server, pq_mldsa)),
        ]  # fmt: skip
        results = []
        for name, (subject, s1, c1), (baseline, s2, c2) in pairs:
            subject_rates: list[tuple[float, float]] = []
            baseline_rates: list[tuple[float, float]] = []
            for _ in range(rounds):
                subject_rates.append(handshake_rates(s1, c1, handshakes))
                baseline_rates.append(handshake_rates(s2, c2, handshakes))
            for side, label in ((0, ""), (1, " (server side)")):
                results.append(
                    Comparison(
                        name + label,
                        subject,
                        statistics.median(r[side] for r in subject_rates),
                        baseline,
                        statistics.median(r[side] for r in baseline_rates),
                    )
                )
        return results


def main() -> None:  # pragma: no cover - a command-line report
    results = listener_benchmark()
    for c in results:
        print(
            f"{c.name:50} {c.subject:15} {c.subject_rate:8.0f}/s  {c.baseline:15} "
            f"{c.baseline_rate:8.0f}/s  ratio {c.ratio:.2f}"
        )
    cost = key_exchange_cost()
    print(
        f"server side, ECDSA certificate: X25519 {cost.server_classical:.0f} us, X25519MLKEM768 "
        f"{cost.server_hybrid:.0f} us (+{cost.extra:.0f}); ML-KEM-768 decode + encapsulate "
        f"{cost.ml_kem_768:.0f} us, X25519 keygen + exchange {cost.x25519:.0f} us: best ratio "
        f"the primitives allow {cost.ceiling:.2f}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
