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
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL

from qrc.crypto.base import SigningKey
from qrc.crypto.schemes import get_signature
from qrc.transit import tls
from qrc.transit.authority import FAMILIES, PrivateCA
from qrc.transit.bench import handshake_in_memory, handshake_rates
from qrc.transit.listener import listener_context
from qrc.transit.pki import ensure_listener_tls

__all__ = ["Comparison", "listener_benchmark"]

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
    for c in listener_benchmark():
        print(
            f"{c.name:50} {c.subject:15} {c.subject_rate:8.0f}/s  {c.baseline:15} "
            f"{c.baseline_rate:8.0f}/s  ratio {c.ratio:.2f}"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
