"""GF(2^8) without secret-indexed tables: the arithmetic agrees with a plain reference."""

from __future__ import annotations

import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto import gf256, shamir
from qrc.crypto.gf256 import (
    gf_inverse,
    gf_multiply,
    horner,
    lagrange_basis,
    linear_combination,
    scale,
)


def _reference_multiply(a: int, b: int) -> int:
    """Schoolbook carry-less product reduced by x^8 + x^4 + x^3 + x + 1."""
    product = 0
    for bit in range(8):
        if (b >> bit) & 1:
            product ^= a << bit
    for bit in range(14, 7, -1):
        if (product >> bit) & 1:
            product ^= 0x11B << (bit - 8)
    return product


def test_multiply_matches_the_reference_for_every_pair() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_multiply(a, b) == _reference_multiply(a, b)


def test_inverse_of_every_nonzero_element() -> None:
    assert gf_inverse(0x53) == 0xCA  # FIPS 197 section 4.2 example
    for a in range(1, 256):
        assert gf_multiply(a, gf_inverse(a)) == 1
    with pytest.raises(ZeroDivisionError):
        gf_inverse(0)
    with pytest.raises(ValueError):
        gf_multiply(256, 1)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=64), c=st.integers(0, 255))
def test_scale_is_bytewise_multiplication(data: bytes, c: int) -> None:
    assert scale(data, c) == bytes(_reference_multiply(c, b) for b in data)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.integers(1, 5).flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(0, 255), min_size=k, max_size=k),
            st.integers(0, 40).flatmap(
                lambda n: st.lists(st.binary(min_size=n, max_size=n), min_size=k, max_size=k)
            ),
        )
    ),
    x=st.integers(0, 255),
)
def test_linear_combination_and_horner(rows: tuple[list[int], list[bytes]], x: int) -> None:
    coefficients, vectors = rows
    expected = bytearray(len(vectors[0]))
    for c, vector in zip(coefficients, vectors, strict=True):
        for i, b in enumerate(vector):
            expected[i] ^= _reference_multiply(c, b)
    assert linear_combination(coefficients, vectors) == bytes(expected)
    # Horner at x: c0 + c1 x + ... byte-wise
    evaluated = bytearray(len(vectors[0]))
    power = 1
    for vector in vectors:
        for i, b in enumerate(vector):
            evaluated[i] ^= _reference_multiply(power, b)
        power = _reference_multiply(power, x)
    assert horner(vectors, x) == bytes(evaluated)


def test_lagrange_basis_interpolates() -> None:
    xs = [1, 2, 7]
    polynomial = [b"\x11", b"\x22", b"\x33"]
    ys = [horner(polynomial, x) for x in xs]
    assert linear_combination(lagrange_basis(xs, 0), ys) == b"\x11"
    assert linear_combination(lagrange_basis(xs, 9), ys) == horner(polynomial, 9)


@pytest.mark.parametrize("module", [gf256, shamir])
def test_no_lookup_table_in_the_secret_path(module: types.ModuleType) -> None:
    """No module-level log/exp/multiplication table that a secret byte could index."""
    for name, value in vars(module).items():
        if isinstance(value, bytes | bytearray | list | tuple | dict) and not name.startswith("__"):
            assert len(value) < 64, f"{module.__name__}.{name} looks like a lookup table"
