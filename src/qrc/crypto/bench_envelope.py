"""Envelope overhead, as a ratio to the bare primitive call measured in the same run.

For each envelope mode, ``seal`` and ``open`` of a small message are timed against what a
caller would write without the envelope:

* HPKE: pyca's ``Suite.encrypt`` / ``Suite.decrypt`` on the same (pre-converted) pyca key,
  with the context as ``info``.
* KEM-DEM: ``encapsulate`` then AES-256-GCM keyed directly with the shared secret (and the
  reverse), no key derivation.
* SYMMETRIC: a random nonce and one AES-256-GCM call (``nonce || ciphertext``).

Envelope and bare batches alternate, and the ratio is median over median, so drift on a
busy machine affects both sides alike. The target is a ratio of at most 1.25 at 1 KiB.

:func:`size_ratios` measures the HPKE envelope against pyca's ``Suite.encrypt`` /
``Suite.decrypt`` at each of :data:`SIZES` (64 B to 16 MiB), with the per-size targets of
:data:`SIZE_TARGETS` (1.10 up to 64 KiB, 1.25 at 1 MiB; 16 MiB is reported, not targeted).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qrc.crypto import envelope
from qrc.crypto.base import KemPrivateKey
from qrc.crypto.errors import CryptoError
from qrc.crypto.registry import get_info
from qrc.crypto.schemes import get_kem

__all__ = ["SIZES", "SIZE_TARGETS", "TARGET_RATIO", "envelope_ratios", "size_ratios"]

TARGET_RATIO = 1.25
SIZES = (64, 1024, 64 << 10, 1 << 20, 16 << 20)
# size -> the ratio seal and open_sealed must stay under (sizes not listed: no target)
SIZE_TARGETS: dict[int, float] = {64: 1.10, 1024: 1.10, 64 << 10: 1.10, 1 << 20: 1.25}
_ZERO_NONCE = bytes(12)


def _per_op(operation: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        operation()
    return (time.perf_counter() - start) / number


def _ratio(
    wrapped: Callable[[], object],
    bare: Callable[[], object],
    budget: float,
    repeats: int,
    least: int = 10,
) -> float:
    # Size batches so that each side gets about budget / (2 * repeats) seconds.
    probe = max(_per_op(bare, 20 if least >= 10 else 2), 1e-9)
    number = max(least, int(budget / (2 * repeats) / probe))
    wrapped_times, bare_times = [], []
    for _ in range(repeats):
        bare_times.append(_per_op(bare, number))
        wrapped_times.append(_per_op(wrapped, number))
    return statistics.median(wrapped_times) / statistics.median(bare_times)


def _first_available(algorithms: tuple[str, ...]) -> KemPrivateKey:
    for algorithm in algorithms:
        try:
            return get_kem(algorithm).generate()
        except (CryptoError, ImportError):
            continue
    raise RuntimeError(f"none of {algorithms} is available")


def _pyca(key: Any) -> Any:
    # The pyca object the envelope hands to HPKE, converted once, outside the timing.
    convert = getattr(key, "to_hpke", None) or key.to_pyca
    return convert()


def _row(
    case: str, algorithm: str, operation: str, baseline: str, ratio: float
) -> dict[str, object]:
    return {
        "envelope": f"{case} {algorithm}",
        "case": case,
        "algorithm": algorithm,
        "operation": operation,
        "baseline": baseline,
        "ratio": round(ratio, 3),
        "target": TARGET_RATIO,
    }


def envelope_ratios(quick: bool = False, size: int = 1024) -> list[dict[str, object]]:
    """Envelope time / bare primitive time for seal and open in each mode.

    ``quick`` spends about 0.1 s per measurement instead of 1 s. Each row has ``envelope``
    (case and algorithm, for display), ``case`` (hpke, kem-dem, symmetric), ``algorithm``,
    ``operation`` (seal, open), ``baseline``, ``ratio`` and ``target``.
    """
    budget, repeats = (0.1, 11) if quick else (1.0, 31)
    plaintext = os.urandom(size)
    return [
        *_hpke_rows(plaintext, budget, repeats),
        *_kem_dem_rows(plaintext, budget, repeats),
        *_symmetric_rows(plaintext, budget, repeats),
    ]


def _hpke_rows(plaintext: bytes, budget: float, repeats: int) -> list[dict[str, object]]:
    # The hybrid default if its module is there, else ML-KEM-768.
    private = _first_available(("X25519MLKEM768", "ML-KEM-768"))
    public = private.public_key()
    algorithm = private.algorithm
    kem = envelope.HPKE_KEMS[get_info(algorithm).hpke_kem or ""]
    suite = hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    pyca_public, pyca_private = _pyca(public), _pyca(private)
    sealed = envelope.seal(public, plaintext)
    bare_sealed = suite.encrypt(plaintext, pyca_public, info=b"")
    return [
        _row("hpke", algorithm, "seal", "pyca hpke Suite.encrypt", _ratio(
            lambda: envelope.seal(public, plaintext),
            lambda: suite.encrypt(plaintext, pyca_public, info=b""),
            budget, repeats,
        )),
        _row("hpke", algorithm, "open", "pyca hpke Suite.decrypt", _ratio(
            lambda: envelope.open_sealed(private, sealed),
            lambda: suite.decrypt(bare_sealed, pyca_private, info=b""),
            budget, repeats,
        )),
    ]  # fmt: skip


def _kem_dem_rows(plaintext: bytes, budget: float, repeats: int) -> list[dict[str, object]]:
    # ML-KEM-512 forced through KEM-DEM if its backend is there, else ML-KEM-768.
    private = _first_available(("ML-KEM-512", "ML-KEM-768"))
    public = private.public_key()
    algorithm = private.algorithm
    mode = envelope.Mode.KEM_DEM
    sealed = envelope.seal(public, plaintext, mode=mode)

    def bare_seal() -> bytes:
        # The shared secret keys AES-GCM directly; it is used once, so a zero nonce is safe.
        ciphertext, shared = public.encapsulate()
        return ciphertext + AESGCM(shared).encrypt(_ZERO_NONCE, plaintext, None)

    bare_sealed = bare_seal()
    split = len(bare_sealed) - len(plaintext) - 16

    def bare_open() -> bytes:
        shared = private.decapsulate(bare_sealed[:split])
        return AESGCM(shared).decrypt(_ZERO_NONCE, bare_sealed[split:], None)

    return [
        _row("kem-dem", algorithm, "seal", "encapsulate + AES-256-GCM", _ratio(
            lambda: envelope.seal(public, plaintext, mode=mode), bare_seal, budget, repeats
        )),
        _row("kem-dem", algorithm, "open", "decapsulate + AES-256-GCM", _ratio(
            lambda: envelope.open_sealed(private, sealed), bare_open, budget, repeats
        )),
    ]  # fmt: skip


def _symmetric_rows(plaintext: bytes, budget: float, repeats: int) -> list[dict[str, object]]:
    key = os.urandom(32)
    sealed = envelope.seal_symmetric(key, plaintext)

    def bare_encrypt() -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, None)

    bare_sealed = bare_encrypt()
    return [
        _row("symmetric", "AES-256-GCM", "seal", "random nonce + AES-256-GCM", _ratio(
            lambda: envelope.seal_symmetric(key, plaintext), bare_encrypt, budget, repeats
        )),
        _row("symmetric", "AES-256-GCM", "open", "AES-256-GCM decrypt", _ratio(
            lambda: envelope.open_symmetric(key, sealed),
            lambda: AESGCM(key).decrypt(bare_sealed[:12], bare_sealed[12:], None),
            budget, repeats,
        )),
    ]  # fmt: skip


def size_ratios(
    quick: bool = False, sizes: tuple[int, ...] = SIZES, algorithm: str | None = None
) -> list[dict[str, object]]:
    """HPKE envelope time / pyca HPKE time for ``seal`` and ``open_sealed`` at each size.

    Both sides run on the same key (the envelope's own key object, pyca's converted once)
    with the same plaintext, alternating batches; the ratio is median over median. Each
    row has ``algorithm``, ``size``, ``operation`` (seal, open), ``ratio``, ``target``
    (None where :data:`SIZE_TARGETS` has none) and ``baseline``.
    """
    budget, repeats = (0.1, 7) if quick else (1.0, 21)
    if algorithm is None:
        private = _first_available(("X25519MLKEM768", "ML-KEM-768"))
    else:
        private = get_kem(algorithm).generate()
    public = private.public_key()
    header = envelope.parse_header(envelope.seal(public, b""))
    suite = hpke.Suite(
        envelope.HPKE_KEMS[get_info(private.algorithm).hpke_kem or ""],
        _PYCA_KDFS[header.kdf_id],
        _PYCA_AEADS[header.aead_id],
    )
    pyca_public, pyca_private = _pyca(public), _pyca(private)
    rows: list[dict[str, object]] = []
    for size in sizes:
        plaintext = os.urandom(size)
        sealed = envelope.seal(public, plaintext)
        bare_sealed = suite.encrypt(plaintext, pyca_public, info=b"")
        # Large sizes: fewer calls per batch (a 16 MiB call takes milliseconds).
        least = 10 if size <= 64 << 10 else 2

        def row(operation: str, baseline: str, ratio: float, size: int = size) -> dict[str, object]:
            return {
                "algorithm": private.algorithm,
                "size": size,
                "operation": operation,
                "baseline": baseline,
                "ratio": round(ratio, 3),
                "target": SIZE_TARGETS.get(size),
            }

        rows.append(row("seal", "pyca hpke Suite.encrypt", _ratio(
            partial(envelope.seal, public, plaintext),
            partial(suite.encrypt, plaintext, pyca_public, info=b""),
            budget, repeats, least,
        )))  # fmt: skip
        rows.append(row("open", "pyca hpke Suite.decrypt", _ratio(
            partial(envelope.open_sealed, private, sealed),
            partial(suite.decrypt, bare_sealed, pyca_private, info=b""),
            budget, repeats, least,
        )))  # fmt: skip
    return rows


_PYCA_KDFS = {
    0x0001: hpke.KDF.HKDF_SHA256,
    0x0002: hpke.KDF.HKDF_SHA384,
    0x0003: hpke.KDF.HKDF_SHA512,
    0x0010: hpke.KDF.SHAKE128,
    0x0011: hpke.KDF.SHAKE256,
}
_PYCA_AEADS = {
    0x0001: hpke.AEAD.AES_128_GCM,
    0x0002: hpke.AEAD.AES_256_GCM,
    0x0003: hpke.AEAD.CHACHA20_POLY1305,
}
