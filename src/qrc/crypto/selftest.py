"""Power-on self-tests: a known-answer test per algorithm, pairwise checks per key.

A known-answer test (KAT) fixes the inputs and compares the outputs with answers recorded
when the implementation was validated against the third-party vectors:

* seed-based keys (ML-KEM, ML-DSA, X-Wing, the hybrids, composites, classical): the
  public key derived from a fixed private key; the shared secret of a fixed ciphertext
  (for ML-KEM a ciphertext that takes the implicit-rejection path, which is deterministic);
  a recorded signature that must verify; AEAD encryption of a fixed message;
* HQC, Classic McEliece and SLH-DSA, whose library cannot derive keys from a seed: answers
  stored by ``scripts/make_kat.py`` and checked by the pqcrypto back end.

:func:`generate_private_key` is the one way the rest of ``qrc`` makes keys: it runs the
pairwise-consistency test (encapsulate-decapsulate, sign-verify) on every new key before
returning it, as FIPS 140-3 modules do.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from qrc.crypto.base import KEM, KemPrivateKey, SignatureScheme, SigningKey
from qrc.crypto.errors import (
    InvalidSignature,
    KeyFormatError,
    SelfTestFailure,
    UnsupportedAlgorithm,
)
from qrc.crypto.registry import AlgorithmInfo, Kind, all_algorithms, get_info
from qrc.crypto.schemes import get_aead, get_kem, get_scheme, get_signature

__all__ = [
    "SelfTestResult",
    "generate_private_key",
    "known_answer_test",
    "pairwise_check",
    "run_selftests",
]

_KAT_MESSAGE = b"qrc known-answer test"
_KAT_CONTEXT = b"qrc-kat"


@dataclass(frozen=True)
class SelfTestResult:
    """The outcome of one algorithm's self-test."""

    algorithm: str
    ok: bool
    detail: str
    seconds: float


def _fixed_bytes(label: str, length: int) -> bytes:
    """Deterministic test input: SHAKE-256 of a label (no secret, no randomness)."""
    return hashlib.shake_256(f"qrc-kat/{label}".encode()).digest(length)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@cache
def _core_answers() -> dict[str, dict[str, str]]:
    text = resources.files("qrc.crypto").joinpath("data/kat_core.json").read_text("utf-8")
    answers: dict[str, dict[str, str]] = json.loads(text)
    return answers


def _fixed_private_key(scheme: KEM | SignatureScheme, recorded: str | None = None) -> Any:
    """A private key loaded from fixed bytes.

    Raw seeds and scalars are drawn from :func:`_fixed_bytes` (re-drawn in the rare case a
    scalar is out of range). Encodings that are structured rather than random (composites
    holding a DER ``ECPrivateKey``) were recorded in the answers as ``sk`` instead.
    """
    if recorded is not None:
        return scheme.load_private(bytes.fromhex(recorded))
    size = scheme.info.private_key_size
    for attempt in range(16):
        try:
            return scheme.load_private(_fixed_bytes(f"{scheme.algorithm}/sk/{attempt}", size))
        except KeyFormatError:
            continue
    raise SelfTestFailure(f"{scheme.algorithm}: no fixed private key loads")


def _fixed_ciphertext(kem: KEM) -> bytes:
    """A ciphertext that decapsulates deterministically under the fixed key.

    It comes from the recorded answers (made by :func:`record_core_answer` with a real
    encapsulation), so the test covers the accepting path of decapsulation.
    """
    return bytes.fromhex(_core_answers()[kem.algorithm]["ct"])


def core_answer(algorithm: str) -> dict[str, str]:
    """Compute the answers recorded for a seed-based algorithm (used by scripts/make_kat.py)."""
    info = get_info(algorithm)
    if info.kind is Kind.AEAD:
        aead = get_aead(algorithm)
        key, nonce = _fixed_bytes(f"{algorithm}/key", 32), _fixed_bytes(f"{algorithm}/n", 12)
        return {"ct": aead.encrypt(key, nonce, _KAT_MESSAGE, _KAT_CONTEXT).hex()}
    if info.kind is Kind.KEM:
        kem = get_kem(algorithm)
        private: KemPrivateKey = _fixed_private_key(kem)
        ct, ss = private.public_key().encapsulate()
        return {
            "pk": _digest(private.public_key().public_bytes()),
            "ct": ct.hex(),
            "ss": _digest(ss),
        }
    scheme = get_signature(algorithm)
    answer: dict[str, str] = {}
    try:
        signer: SigningKey = _fixed_private_key(scheme)
    except SelfTestFailure:
        signer = scheme.generate()
        answer["sk"] = signer.private_bytes().hex()
    context = _KAT_CONTEXT if scheme.supports_context else b""
    signature = signer.sign(_KAT_MESSAGE, context)
    answer |= {"pk": _digest(signer.public_key().public_bytes()), "sig": signature.hex()}
    return answer


def _check(condition: bool, algorithm: str, what: str) -> None:
    if not condition:
        raise SelfTestFailure(f"{algorithm}: known-answer test failed ({what})")


def _core_kat(info: AlgorithmInfo) -> None:
    answers = _core_answers().get(info.id)
    if answers is None:
        raise SelfTestFailure(f"{info.id}: no recorded known answer")
    if info.kind is Kind.AEAD:
        aead = get_aead(info.id)
        key, nonce = _fixed_bytes(f"{info.id}/key", 32), _fixed_bytes(f"{info.id}/n", 12)
        ct = aead.encrypt(key, nonce, _KAT_MESSAGE, _KAT_CONTEXT)
        _check(ct.hex() == answers["ct"], info.id, "encrypt")
        _check(aead.decrypt(key, nonce, ct, _KAT_CONTEXT) == _KAT_MESSAGE, info.id, "decrypt")
        return
    if info.kind is Kind.KEM:
        kem = get_kem(info.id)
        private: KemPrivateKey = _fixed_private_key(kem)
        _check(_digest(private.public_key().public_bytes()) == answers["pk"], info.id, "keygen")
        ss = private.decapsulate(_fixed_ciphertext(kem))
        _check(_digest(ss) == answers["ss"], info.id, "decapsulate")
        return
    scheme = get_signature(info.id)
    signer: SigningKey = _fixed_private_key(scheme, answers.get("sk"))
    public = signer.public_key()
    _check(_digest(public.public_bytes()) == answers["pk"], info.id, "keygen")
    context = _KAT_CONTEXT if scheme.supports_context else b""
    try:
        public.verify(bytes.fromhex(answers["sig"]), _KAT_MESSAGE, context)
    except InvalidSignature:
        raise SelfTestFailure(f"{info.id}: known-answer test failed (verify)") from None
    _check(
        not public.is_valid(bytes.fromhex(answers["sig"]), _KAT_MESSAGE + b"!", context),
        info.id,
        "verify rejects",
    )


def known_answer_test(algorithm: str) -> None:
    """Run the KAT for one algorithm; raise :class:`SelfTestFailure` if it fails."""
    info = get_info(algorithm)
    if info.provider == "pqcrypto":
        from qrc.crypto.backends import pqcrypto  # noqa: PLC0415 - load the C module on demand

        pqcrypto.known_answer_test(info.id)
        return
    _core_kat(info)


def pairwise_check(key: KemPrivateKey | SigningKey) -> None:
    """Pairwise-consistency test of a key pair (FIPS 140-3 IG 10.3.A)."""
    if isinstance(key, KemPrivateKey):
        ct, ss = key.public_key().encapsulate()
        if key.decapsulate(ct) != ss:
            raise SelfTestFailure(f"{key.algorithm}: pairwise consistency test failed")
        return
    context = b"qrc-pct" if get_signature(key.algorithm).supports_context else b""
    try:
        key.public_key().verify(
            key.sign(b"qrc pairwise consistency test", context),
            b"qrc pairwise consistency test",
            context,
        )
    except InvalidSignature:
        raise SelfTestFailure(f"{key.algorithm}: pairwise consistency test failed") from None


def generate_private_key(algorithm: str) -> KemPrivateKey | SigningKey:
    """Generate a key pair for a KEM or signature algorithm and check it pairwise."""
    info = get_info(algorithm)
    if info.kind is Kind.AEAD:
        raise UnsupportedAlgorithm(f"{info.id} is symmetric: use AEAD.generate_key()")
    scheme = get_scheme(info.id)
    if not isinstance(scheme, KEM | SignatureScheme):
        raise UnsupportedAlgorithm(f"{info.id} has no key pairs")
    key = scheme.generate()
    pairwise_check(key)
    return key


def run_selftests(algorithms: list[str] | None = None) -> list[SelfTestResult]:
    """Run the KAT and a pairwise test for each algorithm (default: all registered)."""
    ids = algorithms or [info.id for info in all_algorithms()]
    results = []
    for algorithm in ids:
        start = time.perf_counter()
        try:
            known_answer_test(algorithm)
            if get_info(algorithm).kind is not Kind.AEAD:
                generate_private_key(algorithm)
            ok, detail = True, "ok"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results.append(SelfTestResult(algorithm, ok, detail, time.perf_counter() - start))
    return results
