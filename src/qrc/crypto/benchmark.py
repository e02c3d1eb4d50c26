"""Measured speed and sizes of every algorithm, as ``qrc bench`` prints them.

Each operation runs in batches; the reported rate is the median batch, so a noisy,
shared machine shows up as spread rather than as a wrong number. Envelope overhead is
reported as a ratio to the raw primitive measured in the same run
(:mod:`qrc.crypto.bench_envelope`), never as an absolute time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from qrc.crypto.base import KEM, SignatureScheme
from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import AlgorithmInfo, Kind, all_algorithms, get_info
from qrc.crypto.schemes import get_aead, get_scheme

__all__ = [
    "QUICK_SET",
    "AlgorithmBenchmark",
    "bench_algorithm",
    "bench_algorithms",
    "compare_providers",
    "ops_per_second",
]


@dataclass
class AlgorithmBenchmark:
    """Operations per second (median of batches) and sizes in bytes for one algorithm."""

    algorithm: str
    kind: str
    provider: str
    ops: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready mapping."""
        return asdict(self)


def ops_per_second(operation: Callable[[], object], budget: float, batches: int = 5) -> float:
    """Median rate of ``operation`` over ``batches`` batches sharing ``budget`` seconds."""
    start = time.perf_counter()
    operation()  # warm caches and lazy imports; also sizes the batch
    single = max(time.perf_counter() - start, 1e-7)
    per_batch = max(1, int(budget / batches / single))
    rates = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(per_batch):
            operation()
        rates.append(per_batch / max(time.perf_counter() - start, 1e-9))
    return statistics.median(rates)


def _sizes(info: AlgorithmInfo) -> dict[str, int]:
    if info.kind is Kind.KEM:
        return {
            "public_key": info.public_key_size,
            "private_key": info.private_key_size,
            "ciphertext": info.ciphertext_size,
        }
    if info.kind is Kind.SIGNATURE:
        return {
            "public_key": info.public_key_size,
            "private_key": info.private_key_size,
            "signature": info.signature_size,
        }
    return {"key": info.private_key_size}


def bench_algorithm(
    algorithm: str, budget: float = 0.5, provider: str | None = None
) -> AlgorithmBenchmark:
    """Benchmark one algorithm; ``budget`` is roughly the seconds spent per operation."""
    info = get_info(algorithm)
    scheme = get_scheme(info.id, provider=provider)
    result = AlgorithmBenchmark(
        info.id, info.kind.value, provider or info.provider, sizes=_sizes(info)
    )
    # Slow key generation (Classic McEliece) gets fewer batches rather than a huge budget.
    batches = 3 if info.public_key_size > 100_000 else 5
    if isinstance(scheme, KEM):
        private = scheme.generate()
        public = private.public_key()
        ct, _ = public.encapsulate()
        result.ops["keygen"] = ops_per_second(scheme.generate, budget, batches)
        result.ops["encapsulate"] = ops_per_second(public.encapsulate, budget)
        result.ops["decapsulate"] = ops_per_second(lambda: private.decapsulate(ct), budget)
    elif isinstance(scheme, SignatureScheme):
        signer = scheme.generate()
        verifier = signer.public_key()
        message = b"\x5a" * 1024
        signature = signer.sign(message)
        result.ops["keygen"] = ops_per_second(scheme.generate, budget, batches)
        result.ops["sign"] = ops_per_second(lambda: signer.sign(message), budget, batches)
        result.ops["verify"] = ops_per_second(lambda: verifier.verify(signature, message), budget)
    else:
        aead = get_aead(info.id)
        key, nonce, data = aead.generate_key(), b"\0" * 12, b"\x5a" * 1024
        sealed = aead.encrypt(key, nonce, data, b"")
        result.ops["encrypt_1KiB"] = ops_per_second(
            lambda: aead.encrypt(key, nonce, data, b""), budget
        )
        result.ops["decrypt_1KiB"] = ops_per_second(
            lambda: aead.decrypt(key, nonce, sealed, b""), budget
        )
    return result


QUICK_SET = (
    "ML-KEM-512",
    "ML-KEM-768",
    "ML-KEM-1024",
    "X25519MLKEM768",
    "P384MLKEM1024",
    "HQC-128",
    "Classic-McEliece-348864",
    "X25519",
    "ML-DSA-44",
    "ML-DSA-65",
    "ML-DSA-87",
    "SLH-DSA-SHA2-128f",
    "SLH-DSA-SHAKE-128f",
    "MLDSA65-Ed25519-SHA512",
    "Ed25519",
    "ECDSA-P256",
    "AES-256-GCM",
)


def bench_algorithms(
    algorithms: Iterable[str] | None = None,
    *,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[AlgorithmBenchmark]:
    """Benchmark the given algorithms (default: all, or :data:`QUICK_SET` when quick)."""
    if algorithms is None:
        algorithms = QUICK_SET if quick else [info.id for info in all_algorithms()]
    budget = 0.1 if quick else 0.6
    results = []
    for algorithm in algorithms:
        if progress is not None:
            progress(algorithm)
        results.append(bench_algorithm(algorithm, budget))
    return results


def compare_providers(quick: bool = False) -> list[dict[str, object]]:
    """For each algorithm more than one provider implements: each one's rates, side by side.

    This is the measurement behind the registry's ``provider`` choice (the faster one).
    """
    from qrc.crypto.schemes import providers_of  # noqa: PLC0415 - imports every back end

    budget = 0.1 if quick else 0.5
    rows: list[dict[str, object]] = []
    for info in all_algorithms():
        if info.kind is Kind.AEAD:
            continue
        try:
            providers = providers_of(info.id)
        except (ImportError, UnsupportedAlgorithm):
            continue
        if len(providers) < 2:
            continue
        for provider in providers:
            result = bench_algorithm(info.id, budget, provider=provider)
            rows.append(
                {
                    "algorithm": info.id,
                    "provider": provider,
                    "chosen": provider == info.provider,
                    "ops": result.ops,
                }
            )
    return rows
