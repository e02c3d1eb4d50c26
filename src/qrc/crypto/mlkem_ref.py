"""A compact pure-Python ML-KEM (FIPS 203), all three parameter sets.

Used where the C libraries fall short: pqcrypto cannot derive an ML-KEM key pair from the
standard 64-byte seed ``d || z``, so :func:`keygen` expands seeds to the FIPS 203 ``(ek,
dk)`` that pqcrypto's fast decapsulation then takes; and the Wycheproof encapsulation
vectors fix the randomness ``m``, which no library API accepts.

It follows the algorithms of FIPS 203 (section numbers in the comments) and runs the input
checks of section 7: the encapsulation-key modulus check, the decapsulation-key hash check
and the ciphertext length check. It is not constant-time: it expands keys the caller
already holds and runs tests; the service's decapsulations go to the C implementations.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from qrc.crypto.errors import DecryptionError, KeyFormatError

__all__ = [
    "PARAMS",
    "Params",
    "check_decapsulation_key",
    "check_encapsulation_key",
    "decapsulate",
    "encapsulate_derandomized_for_tests",
    "keygen",
]

N = 256
Q = 3329


@dataclass(frozen=True, slots=True)
class Params:
    """One ML-KEM parameter set (FIPS 203, table 2)."""

    name: str
    k: int
    eta1: int
    eta2: int
    du: int
    dv: int

    @property
    def ek_size(self) -> int:
        return 384 * self.k + 32

    @property
    def dk_size(self) -> int:
        return 768 * self.k + 96

    @property
    def ct_size(self) -> int:
        return 32 * (self.du * self.k + self.dv)


PARAMS: dict[str, Params] = {
    "ML-KEM-512": Params("ML-KEM-512", k=2, eta1=3, eta2=2, du=10, dv=4),
    "ML-KEM-768": Params("ML-KEM-768", k=3, eta1=2, eta2=2, du=10, dv=4),
    "ML-KEM-1024": Params("ML-KEM-1024", k=4, eta1=2, eta2=2, du=11, dv=5),
}

Poly = list[int]


def _bitrev7(i: int) -> int:
    return int(f"{i:07b}"[::-1], 2)


# zeta = 17 is a primitive 256th root of unity mod q (section 4.3).
_ZETAS = [pow(17, _bitrev7(i), Q) for i in range(128)]
_GAMMAS = [pow(17, 2 * _bitrev7(i) + 1, Q) for i in range(128)]
_N_INV = 3303  # 128^-1 mod q


# --- hash functions (section 4.1) ---


def _g(data: bytes) -> tuple[bytes, bytes]:
    digest = hashlib.sha3_512(data).digest()
    return digest[:32], digest[32:]


def _h(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def _j(data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(32)


def _prf(eta: int, seed: bytes, nonce: int) -> bytes:
    return hashlib.shake_256(seed + bytes([nonce])).digest(64 * eta)


# --- encoding and compression (section 4.2.1) ---


def _byte_encode(poly: Poly, d: int) -> bytes:
    value = 0
    for i, coefficient in enumerate(poly):
        value |= coefficient << (d * i)
    return value.to_bytes(32 * d, "little")


def _byte_decode(data: bytes, d: int) -> Poly:
    value = int.from_bytes(data, "little")
    mask = (1 << d) - 1
    poly = [(value >> (d * i)) & mask for i in range(N)]
    # Only d = 12 can exceed q; FIPS 203 reduces it (and the modulus check catches it).
    return [c % Q for c in poly] if d == 12 else poly


def _compress(poly: Poly, d: int) -> Poly:
    mask = (1 << d) - 1
    return [(((c << d) + Q // 2) // Q) & mask for c in poly]


def _decompress(poly: Poly, d: int) -> Poly:
    half = 1 << (d - 1)
    return [(c * Q + half) >> d for c in poly]


# --- sampling (section 4.2.2) ---


def _sample_ntt(seed: bytes) -> Poly:
    """Algorithm 7: rejection-sample a polynomial in the NTT domain from SHAKE128(seed)."""
    length = 168 * 5
    while True:
        stream = hashlib.shake_128(seed).digest(length)
        poly: Poly = []
        for pos in range(0, length - 2, 3):
            b0, b1, b2 = stream[pos], stream[pos + 1], stream[pos + 2]
            d1 = b0 | ((b1 & 0x0F) << 8)
            d2 = (b1 >> 4) | (b2 << 4)
            if d1 < Q:
                poly.append(d1)
            if d2 < Q and len(poly) < N:
                poly.append(d2)
            if len(poly) == N:
                return poly
        # hashlib's SHAKE cannot be squeezed further: ask for a longer prefix instead.
        length *= 2


def _sample_cbd(data: bytes, eta: int) -> Poly:
    """Algorithm 8: centred binomial distribution with parameter eta."""
    bits = int.from_bytes(data, "little")
    half = (1 << eta) - 1
    poly = []
    for i in range(N):
        chunk = bits >> (2 * eta * i)
        x = (chunk & half).bit_count()
        y = ((chunk >> eta) & half).bit_count()
        poly.append((x - y) % Q)
    return poly


# --- NTT arithmetic (section 4.3) ---


def _ntt(poly: Poly) -> Poly:
    f = list(poly)
    i = 1
    length = 128
    while length >= 2:
        for start in range(0, N, 2 * length):
            zeta = _ZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * f[j + length] % Q
                f[j + length] = (f[j] - t) % Q
                f[j] = (f[j] + t) % Q
        length //= 2
    return f


def _ntt_inv(poly: Poly) -> Poly:
    f = list(poly)
    i = 127
    length = 2
    while length <= 128:
        for start in range(0, N, 2 * length):
            zeta = _ZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = f[j]
                f[j] = (t + f[j + length]) % Q
                f[j + length] = zeta * (f[j + length] - t) % Q
        length *= 2
    return [c * _N_INV % Q for c in f]


def _multiply_ntts(f: Poly, g: Poly) -> Poly:
    """Algorithms 11 and 12: products of degree-one polynomials modulo X^2 - gamma."""
    h = [0] * N
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        h[2 * i] = (a0 * b0 + a1 * b1 * _GAMMAS[i]) % Q
        h[2 * i + 1] = (a0 * b1 + a1 * b0) % Q
    return h


def _add(f: Poly, g: Poly) -> Poly:
    return [(a + b) % Q for a, b in zip(f, g, strict=True)]


def _sub(f: Poly, g: Poly) -> Poly:
    return [(a - b) % Q for a, b in zip(f, g, strict=True)]


def _dot(fs: list[Poly], gs: list[Poly]) -> Poly:
    """Sum of products of two vectors of NTT-domain polynomials."""
    total = [0] * N
    for f, g in zip(fs, gs, strict=True):
        total = _add(total, _multiply_ntts(f, g))
    return total


def _matrix(rho: bytes, k: int) -> list[list[Poly]]:
    """A-hat, with A-hat[i][j] sampled from rho || j || i (algorithm 13, lines 3-7)."""
    return [[_sample_ntt(rho + bytes([j, i])) for j in range(k)] for i in range(k)]


# --- K-PKE (section 5) ---


def _pke_keygen(p: Params, d: bytes) -> tuple[bytes, bytes]:
    rho, sigma = _g(d + bytes([p.k]))
    a_hat = _matrix(rho, p.k)
    s = [_ntt(_sample_cbd(_prf(p.eta1, sigma, i), p.eta1)) for i in range(p.k)]
    e = [_ntt(_sample_cbd(_prf(p.eta1, sigma, p.k + i), p.eta1)) for i in range(p.k)]
    t = [_add(_dot(a_hat[i], s), e[i]) for i in range(p.k)]
    ek = b"".join(_byte_encode(poly, 12) for poly in t) + rho
    dk = b"".join(_byte_encode(poly, 12) for poly in s)
    return ek, dk


def _decode_vector(data: bytes, k: int, d: int) -> list[Poly]:
    size = 32 * d
    return [_byte_decode(data[i * size : (i + 1) * size], d) for i in range(k)]


def _pke_encrypt(p: Params, ek: bytes, m: bytes, r: bytes) -> bytes:
    t = _decode_vector(ek, p.k, 12)
    a_hat = _matrix(ek[384 * p.k :], p.k)
    y = [_ntt(_sample_cbd(_prf(p.eta1, r, i), p.eta1)) for i in range(p.k)]
    e1 = [_sample_cbd(_prf(p.eta2, r, p.k + i), p.eta2) for i in range(p.k)]
    e2 = _sample_cbd(_prf(p.eta2, r, 2 * p.k), p.eta2)
    # u = NTT^-1(A-hat^T o y-hat) + e1: column i of A-hat against y-hat.
    u = [_add(_ntt_inv(_dot([a_hat[j][i] for j in range(p.k)], y)), e1[i]) for i in range(p.k)]
    mu = _decompress(_byte_decode(m, 1), 1)
    v = _add(_add(_ntt_inv(_dot(t, y)), e2), mu)
    c1 = b"".join(_byte_encode(_compress(poly, p.du), p.du) for poly in u)
    return c1 + _byte_encode(_compress(v, p.dv), p.dv)


def _pke_decrypt(p: Params, dk: bytes, c: bytes) -> bytes:
    split = 32 * p.du * p.k
    u = [_decompress(poly, p.du) for poly in _decode_vector(c[:split], p.k, p.du)]
    v = _decompress(_byte_decode(c[split:], p.dv), p.dv)
    s = _decode_vector(dk, p.k, 12)
    w = _sub(v, _ntt_inv(_dot(s, [_ntt(poly) for poly in u])))
    return _byte_encode(_compress(w, 1), 1)


# --- ML-KEM (sections 6 and 7) ---


def check_encapsulation_key(p: Params, ek: bytes) -> None:
    """Section 7.2: length check and modulus check; raise ``KeyFormatError`` on failure."""
    if len(ek) != p.ek_size:
        raise KeyFormatError(f"{p.name} encapsulation key must be {p.ek_size} bytes")
    body = ek[: 384 * p.k]
    if b"".join(_byte_encode(poly, 12) for poly in _decode_vector(body, p.k, 12)) != body:
        raise KeyFormatError(f"{p.name} encapsulation key fails the modulus check")


def check_decapsulation_key(p: Params, dk: bytes) -> None:
    """Section 7.3: length check and hash check; raise ``KeyFormatError`` on failure."""
    if len(dk) != p.dk_size:
        raise KeyFormatError(f"{p.name} decapsulation key must be {p.dk_size} bytes")
    ek = dk[384 * p.k : 768 * p.k + 32]
    if _h(ek) != dk[768 * p.k + 32 : 768 * p.k + 64]:
        raise KeyFormatError(f"{p.name} decapsulation key fails the hash check")


def keygen(p: Params, seed: bytes) -> tuple[bytes, bytes]:
    """Algorithm 16 from the 64-byte seed ``d || z``: return ``(ek, dk)``."""
    if len(seed) != 64:
        raise KeyFormatError(f"{p.name} seed must be 64 bytes")
    d, z = seed[:32], seed[32:]
    ek, dk_pke = _pke_keygen(p, d)
    return ek, dk_pke + ek + _h(ek) + z


def encapsulate_derandomized_for_tests(p: Params, ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    """Algorithm 17 with the caller's randomness ``m``: return ``(ciphertext, key)``.

    Fixed randomness is for known-answer tests only; nothing in the public API calls this.
    """
    check_encapsulation_key(p, ek)
    if len(m) != 32:
        raise ValueError("m must be 32 bytes")
    key, r = _g(m + _h(ek))
    return _pke_encrypt(p, ek, m, r), key


def decapsulate(p: Params, dk: bytes, c: bytes) -> bytes:
    """Algorithm 18, with implicit rejection, after the section 7.3 input checks.

    Raises:
        KeyFormatError: ``dk`` fails the length or hash check.
        DecryptionError: ``c`` has the wrong length.
    """
    check_decapsulation_key(p, dk)
    if len(c) != p.ct_size:
        raise DecryptionError
    k = p.k
    dk_pke, ek = dk[: 384 * k], dk[384 * k : 768 * k + 32]
    h, z = dk[768 * k + 32 : 768 * k + 64], dk[768 * k + 64 :]
    m = _pke_decrypt(p, dk_pke, c)
    key, r = _g(m + h)
    rejected = _j(z + c)
    return key if hmac.compare_digest(_pke_encrypt(p, ek, m, r), c) else rejected
