"""The parameter advisor: which algorithm and parameter set, for this purpose, and why.

Rule-based and transparent: every algorithm of the registry is either rejected by a named
rule or ranked by a fixed order of preferences, and the answer says which rule decided. The
inputs are the purpose, how long the data (or signature) must stay secure, and optional
budgets for latency and size; the numbers are the registry's sizes, NIST categories and
statuses, and the benchmarks measured on this machine (``service.benchmarks()``, or
:func:`measure` here and now).

Rules, in order:

1. the algorithm does the job (a KEM for key exchange and encryption, a signature scheme for
   signing);
2. it is quantum-safe: classical algorithms fall to Shor's algorithm;
3. policy allows new keys under it (not deprecated or disallowed);
4. its NIST category is high enough for the lifetime: category 3 from 10 years, category 5
   from 20 years (CNSA 2.0's choice), category 1 below: a margin against cryptanalysis
   that grows with the time an attacker has;
5. it fits the size budgets and, where measured, the latency budget.

Among the rest, preferred in this order: a final standard over an experimental one; given a
latency budget, one measured to meet it over one not measured; the family the purpose
favours (hybrid for key exchange and encryption while ML-KEM is young; ML-DSA for
signatures; hash-based SLH-DSA for long-lived signatures, whose security rests on hash
functions alone); the lowest category that meets the rule; fewer bytes; less latency.
"""

from __future__ import annotations

import enum
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from qrc.crypto.registry import AlgorithmInfo, Family, Kind, Status, all_algorithms, get_info

__all__ = ["Advice", "Candidate", "Purpose", "advise", "measure", "min_category"]


class Purpose(enum.StrEnum):
    """What the algorithm will do."""

    KEY_EXCHANGE = "key-exchange"
    ENCRYPTION = "encryption"
    DATA_AT_REST = "data-at-rest"
    SIGNATURE = "signature"
    LONG_LIVED_SIGNATURE = "long-lived-signature"


_KIND = {Purpose.SIGNATURE: Kind.SIGNATURE, Purpose.LONG_LIVED_SIGNATURE: Kind.SIGNATURE}
_FAMILIES: Final = {
    Purpose.KEY_EXCHANGE: (Family.HYBRID, Family.LATTICE, Family.CODE),
    Purpose.ENCRYPTION: (Family.HYBRID, Family.LATTICE, Family.CODE),
    Purpose.DATA_AT_REST: (Family.HYBRID, Family.LATTICE, Family.CODE),
    Purpose.SIGNATURE: (Family.LATTICE, Family.HYBRID, Family.HASH),
    Purpose.LONG_LIVED_SIGNATURE: (Family.HASH, Family.HYBRID, Family.LATTICE),
}
_WHY_FAMILY: Final = {
    Purpose.KEY_EXCHANGE: "hybrid first: X25519 + ML-KEM stays secure if either holds, and is "
    "what TLS clients offer (X25519MLKEM768)",
    Purpose.ENCRYPTION: "hybrid first: secure if either the classical or the ML-KEM half holds",
    Purpose.DATA_AT_REST: "hybrid first: stored data outlives today's confidence in any one "
    "assumption",
    Purpose.SIGNATURE: "ML-DSA first: small and fast signatures (FIPS 204)",
    Purpose.LONG_LIVED_SIGNATURE: "hash-based first: SLH-DSA rests on hash functions alone, the "
    "most conservative assumption for signatures that must hold for decades",
}
# (operations whose times add up to the latency the budget is about, what it is called)
_LATENCY: Final = {
    Purpose.KEY_EXCHANGE: (("keygen", "encapsulate", "decapsulate"), "per handshake"),
    Purpose.ENCRYPTION: (("decapsulate",), "per decryption"),
    Purpose.DATA_AT_REST: (("decapsulate",), "per object read"),
    Purpose.SIGNATURE: (("sign",), "per signature"),
    Purpose.LONG_LIVED_SIGNATURE: (("verify",), "per verification"),
}
_UNFIT = (Status.DEPRECATED, Status.DISALLOWED)


def min_category(lifetime_years: float) -> int:
    """The lowest NIST category rule 4 accepts for ``lifetime_years``."""
    if lifetime_years >= 20:
        return 5
    if lifetime_years >= 10:
        return 3
    return 1


@dataclass
class Candidate:
    """One algorithm as the advisor judged it."""

    algorithm: str
    family: str
    nist_level: int | None
    status: str
    public_key_bytes: int
    output_bytes: int  # what one use costs on the wire or in storage
    latency_ms: float | None
    why: list[str] = field(default_factory=list)
    rejected: bool = False

    def as_dict(self) -> dict[str, Any]:
        latency = None if self.latency_ms is None else round(self.latency_ms, 4)
        return {
            "algorithm": self.algorithm,
            "family": self.family,
            "nist_level": self.nist_level,
            "status": self.status,
            "public_key_bytes": self.public_key_bytes,
            "output_bytes": self.output_bytes,
            "latency_ms": latency,
            "why": self.why,
        }


@dataclass
class Advice:
    """The recommendation, the runners-up, and every rejection with its rule."""

    purpose: Purpose
    lifetime_years: float
    min_category: int
    max_latency_ms: float | None
    max_bytes: int | None
    max_public_key_bytes: int | None
    recommended: Candidate | None
    alternatives: list[Candidate]
    rejected: list[Candidate]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose.value,
            "lifetime_years": self.lifetime_years,
            "min_category": self.min_category,
            "budgets": {
                "max_latency_ms": self.max_latency_ms,
                "max_bytes": self.max_bytes,
                "max_public_key_bytes": self.max_public_key_bytes,
            },
            "recommended": self.recommended.as_dict() if self.recommended else None,
            "alternatives": [c.as_dict() for c in self.alternatives],
            "rejected": [c.as_dict() for c in self.rejected],
            "notes": self.notes,
        }


def _latency(
    benchmarks: Mapping[str, Any], algorithm: str, operations: Iterable[str]
) -> float | None:
    entry = benchmarks.get(algorithm)
    rates = entry.get("ops_per_second") if isinstance(entry, Mapping) else None
    if not isinstance(rates, Mapping):
        return None
    total = 0.0
    for operation in operations:
        rate = rates.get(operation)
        if not isinstance(rate, int | float) or rate <= 0:
            return None
        total += 1000.0 / float(rate)
    return total


def _output_bytes(info: AlgorithmInfo, purpose: Purpose) -> int:
    if info.kind is Kind.SIGNATURE:
        return info.signature_size
    if purpose is Purpose.KEY_EXCHANGE:  # both shares cross the wire in every handshake
        return info.public_key_size + info.ciphertext_size
    return info.ciphertext_size


def _judge(
    info: AlgorithmInfo,
    purpose: Purpose,
    lifetime: float,
    budgets: tuple[float | None, int | None, int | None],
    benchmarks: Mapping[str, Any],
    status: Status,
) -> Candidate:
    max_latency, max_bytes, max_pk = budgets
    operations, per = _LATENCY[purpose]
    candidate = Candidate(
        info.id,
        info.family.value,
        info.nist_level,
        status.value,
        info.public_key_size,
        _output_bytes(info, purpose),
        _latency(benchmarks, info.id, operations),
    )
    why, need = candidate.why, min_category(lifetime)
    if not info.quantum_safe:
        why.append("classical: Shor's algorithm breaks it once a CRQC exists")
    if status in _UNFIT:
        why.append(f"{status.value} by policy: no new keys under it")
    if info.quantum_safe and (info.nist_level or 0) < need:
        why.append(
            f"NIST category {info.nist_level} is below the {need} that "
            f"{lifetime:g} years of protection call for"
        )
    size = "signature" if info.kind is Kind.SIGNATURE else "ciphertext"
    if purpose is Purpose.KEY_EXCHANGE:
        size = "public key + ciphertext"
    if max_bytes is not None and candidate.output_bytes > max_bytes:
        why.append(f"{size} of {candidate.output_bytes} bytes is over the {max_bytes}-byte budget")
    if max_pk is not None and info.public_key_size > max_pk:
        why.append(f"public key of {info.public_key_size} bytes is over the {max_pk}-byte budget")
    latency = candidate.latency_ms
    if max_latency is not None and latency is not None and latency > max_latency:
        why.append(f"{latency:.3f} ms {per} measured, over the {max_latency:g} ms budget")
    candidate.rejected = bool(why)
    if candidate.rejected:
        return candidate
    why.append(f"NIST category {info.nist_level} (at least {need} for {lifetime:g} years)")
    why.append(f"{size}: {candidate.output_bytes} bytes; public key {info.public_key_size} bytes")
    if latency is not None:
        why.append(f"{latency:.3f} ms {per} (measured here)")
    else:
        why.append(f"latency {per} not measured here (run `qrc bench`)")
    if status is Status.EXPERIMENTAL:
        why.append("experimental: not yet a final standard")
    return candidate


def _rank(
    candidate: Candidate, purpose: Purpose, timed: bool
) -> tuple[int, int, int, int, int, float]:
    families = [f.value for f in _FAMILIES[purpose]]
    family = families.index(candidate.family) if candidate.family in families else len(families)
    return (
        candidate.status == Status.EXPERIMENTAL.value,
        # With a latency budget, a candidate known to meet it beats one nobody measured.
        timed and candidate.latency_ms is None,
        family,
        candidate.nist_level or 0,
        candidate.output_bytes,
        candidate.latency_ms or 0.0,
    )


_RANK_WORDS: Final = (
    "experimental, where a final standard fits",
    "latency not measured, so the budget is not known to be met",
    "a family this purpose prefers less",
    "a higher category than needed (larger and slower)",
    "more bytes",
    "slower",
)


def _why_not_first(candidate: Candidate, best: Candidate, purpose: Purpose, timed: bool) -> str:
    mine, theirs = _rank(candidate, purpose, timed), _rank(best, purpose, timed)
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if a != b:
            return f"ranked below {best.algorithm}: {_RANK_WORDS[index]}"
    return f"ranked below {best.algorithm}: equal on every rule (registry order)"


def advise(
    purpose: Purpose | str,
    lifetime_years: float,
    *,
    max_latency_ms: float | None = None,
    max_bytes: int | None = None,
    max_public_key_bytes: int | None = None,
    benchmarks: Mapping[str, Any] | None = None,
    status_of: Callable[[str], Status] | None = None,
    alternatives: int = 3,
) -> Advice:
    """Recommend an algorithm for ``purpose`` (see the module's rules).

    ``benchmarks`` has the shape of ``service.benchmarks()``; ``status_of`` gives the policy's
    status of an algorithm (default: the registry's).

    Raises:
        ValueError: an unknown purpose, or a negative lifetime or budget.
    """
    try:
        purpose = Purpose(purpose)
    except ValueError:
        choices = ", ".join(p.value for p in Purpose)
        raise ValueError(f"unknown purpose {purpose!r}; choose one of {choices}") from None
    for name, value in (
        ("lifetime", lifetime_years),
        ("max latency", max_latency_ms),
        ("max bytes", max_bytes),
        ("max public key bytes", max_public_key_bytes),
    ):
        if value is not None and not 0 <= value < 1e12:
            raise ValueError(f"{name} must be a non-negative number, not {value}")
    kind = _KIND.get(purpose, Kind.KEM)
    benchmarks = benchmarks or {}
    budgets = (max_latency_ms, max_bytes, max_public_key_bytes)
    accepted: list[Candidate] = []
    rejected: list[Candidate] = []
    for info in all_algorithms(kind):
        status = status_of(info.id) if status_of is not None else info.status
        judged = _judge(info, purpose, lifetime_years, budgets, benchmarks, status)
        (rejected if judged.rejected else accepted).append(judged)
    timed = max_latency_ms is not None
    accepted.sort(key=lambda c: _rank(c, purpose, timed))
    best = accepted[0] if accepted else None
    if best is not None:
        best.why.insert(0, _WHY_FAMILY[purpose])
        for other in accepted[1:]:
            other.why.insert(0, _why_not_first(other, best, purpose, timed))
    notes = _notes(purpose, best, bool(rejected) and best is None)
    return Advice(
        purpose,
        lifetime_years,
        min_category(lifetime_years),
        max_latency_ms,
        max_bytes,
        max_public_key_bytes,
        best,
        accepted[1 : 1 + alternatives],
        rejected,
        notes,
    )


def _notes(purpose: Purpose, best: Candidate | None, none_fit: bool) -> list[str]:
    notes = []
    if none_fit:
        notes.append(
            "nothing fits every budget: relax the byte or latency budget, or shorten "
            "the lifetime if the data allows it"
        )
    if purpose in (Purpose.ENCRYPTION, Purpose.DATA_AT_REST):
        notes.append(
            "the data itself is sealed with AES-256-GCM under a fresh data key; the "
            "KEM recommended here protects that key"
        )
    if purpose is Purpose.LONG_LIVED_SIGNATURE:
        notes.append(
            "stateful hash-based signatures (LMS/XMSS, SP 800-208) suit firmware too "
            "but are not in this registry yet"
        )
    if best is not None and best.family == Family.CODE.value:
        notes.append(
            "code-based KEMs have large public keys: fine for long-lived recipients, "
            "costly for ephemeral key exchange"
        )
    return notes


def _rate(operation: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        operation()
        times.append(max(time.perf_counter() - start, 1e-9))
    return 1.0 / statistics.median(times)


def _measure_one(scheme: object, wanted: Iterable[str] | None, repeats: int) -> dict[str, float]:
    from qrc.crypto.base import KEM, SignatureScheme  # noqa: PLC0415

    ops: dict[str, Callable[[], object]] = {}
    if isinstance(scheme, KEM):
        private = scheme.generate()
        public = private.public_key()
        ciphertext, _ = public.encapsulate()
        ops = {
            "keygen": scheme.generate,
            "encapsulate": public.encapsulate,
            "decapsulate": lambda: private.decapsulate(ciphertext),
        }
    elif isinstance(scheme, SignatureScheme):
        signer = scheme.generate()
        message = b"\x5a" * 1024
        signature = signer.sign(message)
        verifier = signer.public_key()
        ops = {
            "keygen": scheme.generate,
            "sign": lambda: signer.sign(message),
            "verify": lambda: verifier.verify(signature, message),
        }
    names = set(ops) if wanted is None else set(wanted) & set(ops)
    return {name: _rate(ops[name], repeats) for name in sorted(names)}


def measure(
    algorithms: Iterable[str], *, purpose: Purpose | str | None = None, repeats: int = 3
) -> dict[str, Any]:
    """Time each algorithm's operations now (median of ``repeats``), in the shape of
    ``service.benchmarks()``: all of them, or only those ``purpose``'s latency is made of.
    What cannot be measured here is left out."""
    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.crypto.schemes import get_scheme  # noqa: PLC0415

    wanted = None if purpose is None else _LATENCY[Purpose(purpose)][0]
    kind = None if purpose is None else _KIND.get(Purpose(purpose), Kind.KEM)
    out: dict[str, Any] = {}
    for algorithm in algorithms:
        try:
            if kind is not None and get_info(algorithm).kind is not kind:
                continue  # not a candidate for this purpose
            ops = _measure_one(get_scheme(algorithm), wanted, repeats)
        except (CryptoError, ImportError):
            continue
        if ops:
            out[algorithm] = {"ops_per_second": ops}
    return out
