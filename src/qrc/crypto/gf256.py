"""GF(2^8) arithmetic for secret sharing, without secret-indexed tables or secret branches.

The field is AES's: GF(2)[x] / (x^8 + x^4 + x^3 + x + 1). Shamir sharing multiplies secret
bytes (the secret, the random coefficients, the shares) by public field elements (share
indices and Lagrange coefficients, which follow from the public indices). A log/exp or
multiplication table indexed by a secret byte leaks that byte through the cache, so this
module does not use one:

* a byte string is handled as one integer, all its bytes at once (SIMD within a register):
  multiplying every byte by ``x`` ("xtime") is two shifts, two masks and XORs, whatever the
  bytes are;
* multiplying by a public element ``c`` adds up ``x^j * v`` for the bits ``j`` of ``c``:
  the loop branches on the public ``c`` only;
* :func:`gf_multiply` of two single elements runs a fixed eight-round shift-and-add with
  masks instead of branches, so either operand may be secret.

What Python cannot promise: CPython integers are variable-length objects and the
interpreter gives no constant-time guarantee for any operation. These routines remove the
data-dependent memory accesses and branches that are the practical timing channels; they
do not make the interpreter constant-time (see ``docs/security-model.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "gf_inverse",
    "gf_multiply",
    "horner",
    "lagrange_basis",
    "linear_combination",
    "scale",
]

_REDUCTION = 0x1B  # x^8 = x^4 + x^3 + x + 1


def gf_multiply(a: int, b: int) -> int:
    """The product of two elements of GF(2^8), in eight fixed rounds (no table, no branch)."""
    if not (0 <= a <= 0xFF and 0 <= b <= 0xFF):
        raise ValueError("GF(2^8) elements are 0..255")
    product = 0
    for _ in range(8):
        product ^= a & -(b & 1)  # -(bit) is 0 or all ones: add a when the bit is set
        a = ((a << 1) & 0xFF) ^ (_REDUCTION & -(a >> 7))
        b >>= 1
    return product


def gf_inverse(a: int) -> int:
    """The multiplicative inverse of a non-zero element: ``a^254`` by a fixed chain."""
    if not 1 <= a <= 0xFF:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    # 254 = 0b11111110: a^254 = a^2 * a^4 * ... * a^128, the same steps for every a.
    square = gf_multiply(a, a)
    result = square
    for _ in range(6):
        square = gf_multiply(square, square)
        result = gf_multiply(result, square)
    return result


def _masks(size: int) -> tuple[int, int]:
    """``0x0101..01`` and ``0xFEFE..FE`` over ``size`` bytes."""
    ones = int.from_bytes(b"\x01" * size, "little")
    return ones, ones * 0xFE


def _xtime(value: int, ones: int, high: int) -> int:
    """Every byte of ``value`` multiplied by ``x``: shift, and fold the carried-out bit 7."""
    carry = (value >> 7) & ones  # 1 in each byte whose top bit was set
    # carry * 0x1B without a multiplication: 0x1B = 1 + 2 + 8 + 16, no byte overflows.
    return ((value << 1) & high) ^ carry ^ (carry << 1) ^ (carry << 3) ^ (carry << 4)


def _scale_int(value: int, c: int, ones: int, high: int) -> int:
    result = 0
    for bit in range(8):
        if (c >> bit) & 1:  # c is public: branching on it reveals nothing secret
            result ^= value
        value = _xtime(value, ones, high)
    return result


def scale(data: bytes, c: int) -> bytes:
    """Every byte of ``data`` multiplied by the *public* element ``c``."""
    if not 0 <= c <= 0xFF:
        raise ValueError("GF(2^8) elements are 0..255")
    ones, high = _masks(len(data))
    value = int.from_bytes(data, "little")
    return _scale_int(value, c, ones, high).to_bytes(len(data), "little")


def linear_combination(coefficients: Sequence[int], vectors: Sequence[bytes]) -> bytes:
    """``sum c_i * v_i`` byte-wise, for public ``c_i`` and equal-length (secret) ``v_i``."""
    if len(coefficients) != len(vectors) or not vectors:
        raise ValueError("one coefficient per vector, at least one vector")
    size = len(vectors[0])
    if any(len(v) != size for v in vectors):
        raise ValueError("vectors of one combination have one length")
    ones, high = _masks(size)
    total = 0
    for c, vector in zip(coefficients, vectors, strict=True):
        total ^= _scale_int(int.from_bytes(vector, "little"), c, ones, high)
    return total.to_bytes(size, "little")


def horner(coefficients: Sequence[bytes], x: int) -> bytes:
    """``c0 + c1 x + ... + c_m x^m`` byte-wise at the *public* point ``x``."""
    size = len(coefficients[0])
    ones, high = _masks(size)
    acc = int.from_bytes(coefficients[-1], "little")
    for c in reversed(coefficients[:-1]):
        acc = _scale_int(acc, x, ones, high) ^ int.from_bytes(c, "little")
    return acc.to_bytes(size, "little")


def lagrange_basis(xs: Sequence[int], at: int) -> list[int]:
    """The Lagrange basis at ``at`` for distinct non-zero *public* points ``xs``."""
    basis = []
    for i, xi in enumerate(xs):
        num = den = 1
        for j, xj in enumerate(xs):
            if j != i:
                num = gf_multiply(num, at ^ xj)  # subtraction is XOR
                den = gf_multiply(den, xi ^ xj)
        basis.append(gf_multiply(num, gf_inverse(den)))
    return basis
