"""Tests of ``qrc.crypto.shamir``: GF(2^8), split/combine, share format, armor, sealing."""

from __future__ import annotations

import dataclasses
import pickle
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrc.crypto import get_kem, shamir
from qrc.crypto.base import KemPrivateKey
from qrc.crypto.shamir import (
    InvalidShare,
    NotEnoughShares,
    Share,
    ShareError,
    ShareMismatch,
    combine,
    gf_inverse,
    gf_multiply,
    open_sealed_share,
    seal_share,
    split,
)

_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --------------------------------------------------------------------------- GF(2^8)
def _slow_multiply(a: int, b: int) -> int:
    """Carry-less multiplication reduced by x^8 + x^4 + x^3 + x + 1, bit by bit."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return product


@pytest.mark.parametrize(
    ("a", "b", "product"),
    [
        # FIPS 197, section 4.2 (and 4.2.1, xtime).
        (0x57, 0x83, 0xC1),
        (0x57, 0x13, 0xFE),
        (0x57, 0x02, 0xAE),
        (0x57, 0x04, 0x47),
        (0x57, 0x08, 0x8E),
        (0x57, 0x10, 0x07),
        # FIPS 197, section 4.4 / 5.1.1: {53}^-1 = {CA}.
        (0x53, 0xCA, 0x01),
        (0x00, 0xFF, 0x00),
        (0x01, 0xAB, 0xAB),
    ],
)
def test_known_products(a: int, b: int, product: int) -> None:
    assert gf_multiply(a, b) == product
    assert gf_multiply(b, a) == product


def test_multiplication_table_matches_bitwise_multiplication() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_multiply(a, b) == _slow_multiply(a, b)


def test_inverses_of_all_nonzero_elements() -> None:
    assert gf_inverse(0x53) == 0xCA
    inverses = set()
    for a in range(1, 256):
        inverse = gf_inverse(a)
        assert gf_multiply(a, inverse) == 1
        inverses.add(inverse)
    assert inverses == set(range(1, 256))
    with pytest.raises(ZeroDivisionError):
        gf_inverse(0)


# --------------------------------------------------------------------------- split / combine
@_FAST
@given(secret=st.binary(max_size=64), data=st.data())
def test_any_k_shares_rebuild_the_secret(secret: bytes, data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 10), label="n")
    k = data.draw(st.integers(2, n), label="k")
    shares = split(secret, k, n)
    size = data.draw(st.integers(k, n), label="subset size")
    subset = data.draw(st.permutations(shares), label="order")[:size]
    assert combine(subset) == secret


@pytest.mark.parametrize("size", [0, 1, 32, 64, shamir.MAX_SECRET_SIZE])
def test_round_trip_sizes(size: int) -> None:
    secret = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    shares = split(secret, 3, 5)
    assert [s.x for s in shares] == [1, 2, 3, 4, 5]
    assert all(s.secret_size == size for s in shares)
    assert combine(shares[2:]) == secret
    assert combine([shares[4], shares[0], shares[2]]) == secret


def test_extreme_parameters() -> None:
    secret = b"\x42" * 32
    shares = split(secret, 2, 255)
    assert combine([shares[0], shares[254]]) == secret
    shares = split(secret, 255, 255)
    assert combine(shares) == secret
    with pytest.raises(NotEnoughShares):
        combine(shares[:254])


def test_each_split_is_fresh() -> None:
    secret = bytes(32)
    a, b = split(secret, 2, 3), split(secret, 2, 3)
    assert len({s.set_id for s in a}) == 1
    assert a[0].set_id != b[0].set_id
    assert a[0].y != b[0].y
    # The commitment covers a random mask, so it differs even for the same secret.
    assert a[0].commitment != b[0].commitment
    # A share is not the secret in disguise.
    assert all(secret not in s.y for s in a)


@pytest.mark.parametrize(
    ("k", "n", "size"),
    [(1, 3, 1), (0, 3, 1), (4, 3, 1), (2, 256, 1), (2, 3, shamir.MAX_SECRET_SIZE + 1)],
)
def test_split_rejects_bad_parameters(k: int, n: int, size: int) -> None:
    with pytest.raises(ValueError):
        split(bytes(size), k, n)


@pytest.mark.parametrize("k", [2, 3])
def test_fewer_than_k_shares_leave_every_secret_byte_possible(k: int) -> None:
    """For k - 1 shares, each candidate first byte has exactly one consistent polynomial."""
    shares = split(b"\x9c", k, 4)[: k - 1]
    points = [(s.x, s.y[0]) for s in shares]
    for candidate in range(256):
        consistent = 0
        if k == 2:
            (x1, y1) = points[0]
            for a1 in range(256):
                consistent += candidate ^ gf_multiply(a1, x1) == y1
        else:
            (x1, y1), (x2, y2) = points
            for a1 in range(256):
                # Solve the first point for a2, then count the polynomials through the second.
                rest = y1 ^ candidate ^ gf_multiply(a1, x1)
                a2 = gf_multiply(rest, gf_inverse(gf_multiply(x1, x1)))
                value = candidate ^ gf_multiply(a1, x2) ^ gf_multiply(a2, gf_multiply(x2, x2))
                consistent += value == y2
        assert consistent == 1, candidate


def test_not_enough_shares_says_how_many_more() -> None:
    shares = split(b"secret", 4, 6)
    with pytest.raises(NotEnoughShares, match="bring 2 more shares") as info:
        combine(shares[:2])
    assert (info.value.have, info.value.need) == (2, 4)
    # Duplicates do not count twice.
    with pytest.raises(NotEnoughShares, match=r"bring 1 more share$"):
        combine([shares[0], shares[1], shares[2], shares[0], shares[1]])
    with pytest.raises(NotEnoughShares):
        combine([])


def test_exact_duplicates_are_ignored() -> None:
    shares = split(b"secret", 2, 3)
    again = Share.from_bytes(shares[0].to_bytes())
    assert combine([shares[0], again, shares[1]]) == b"secret"


def test_two_different_shares_with_one_index_are_rejected() -> None:
    shares = split(b"secret", 2, 3)
    forged = dataclasses.replace(shares[1], x=1)
    with pytest.raises(InvalidShare, match="index 1") as info:
        combine([shares[0], forged, shares[2]])
    assert info.value.wrong_indices == (1,)


def test_shares_of_different_sets_are_not_mixed() -> None:
    a, b = split(b"secret", 2, 3), split(b"secret", 2, 3)
    with pytest.raises(ShareMismatch, match="different backups"):
        combine([a[0], b[1]])


@pytest.mark.parametrize(
    "change", [{"k": 3}, {"n": 4}, {"y": bytes(18)}, {"commitment": bytes(32)}]
)
def test_inconsistent_parameters_are_a_mismatch(change: dict[str, object]) -> None:
    shares = split(b"s", 2, 3)
    altered = dataclasses.replace(shares[1], **change)  # type: ignore[arg-type]
    with pytest.raises(ShareMismatch):
        combine([shares[0], altered, shares[2]])


def test_every_bit_flip_in_a_binary_share_is_caught_by_the_checksum() -> None:
    encoded = split(b"k" * 32, 3, 5)[2].to_bytes()
    assert Share.from_bytes(encoded).to_bytes() == encoded
    for bit in range(len(encoded) * 8):
        with pytest.raises(InvalidShare):
            Share.from_bytes(_flip(encoded, bit))


@pytest.mark.parametrize("data", [b"", b"QRCH", b"QRCX" + bytes(200)])
def test_malformed_binary_shares(data: bytes) -> None:
    with pytest.raises(InvalidShare):
        Share.from_bytes(data)


def test_truncated_or_extended_binary_share() -> None:
    encoded = split(b"k" * 32, 3, 5)[0].to_bytes()
    for bad in (encoded[:-1], encoded + b"\x00", encoded[:40]):
        with pytest.raises(InvalidShare):
            Share.from_bytes(bad)


@_FAST
@given(data=st.data())
def test_altered_share_is_caught_by_the_commitment(data: st.DataObject) -> None:
    """Bypassing the checksum (a deliberate change), the commitment still rejects a share."""
    shares = split(b"backup key", 3, 5)
    target = data.draw(st.integers(0, 4), label="share")
    bit = data.draw(st.integers(0, len(shares[0].y) * 8 - 1), label="bit")
    altered = list(shares)
    altered[target] = dataclasses.replace(shares[target], y=_flip(shares[target].y, bit))
    x = target + 1
    # Exactly k shares: the error cannot say which one is wrong.
    subset = [altered[target], *[s for s in altered if s.x != x][:2]]
    with pytest.raises(InvalidShare, match="wrong or altered") as info:
        combine(subset)
    assert info.value.wrong_indices == ()
    # More than k: the wrong share is named.
    with pytest.raises(InvalidShare, match=f"share {x} of set") as info:
        combine(altered)
    assert info.value.wrong_indices == (x,)
    assert combine([s for s in altered if s.x != x]) == b"backup key"


def test_share_fields_are_validated() -> None:
    share = split(b"s", 2, 3)[0]
    for change in ({"x": 0}, {"x": 4}, {"k": 1}, {"set_id": b"short"}, {"y": b""}):
        with pytest.raises(InvalidShare):
            dataclasses.replace(share, **change)


def test_share_does_not_leak_in_repr_and_refuses_pickling() -> None:
    share = split(b"top secret", 2, 3)[0]
    assert share.y.hex() not in repr(share)
    assert repr(share) == f"<Share 1/3 k=2 set={share.set_id.hex()}>"
    assert share.label == f"share 1 of 3 (any 2) of set {share.set_id.hex()}"
    with pytest.raises(TypeError):
        pickle.dumps(share)


def test_errors_share_a_base_class() -> None:
    for error in (NotEnoughShares, ShareMismatch, InvalidShare):
        assert issubclass(error, ShareError)
        assert issubclass(error, ValueError)


# --------------------------------------------------------------------------- text armor
def test_text_armor_round_trip_and_visible_fields() -> None:
    share = split(b"k" * 32, 3, 5)[3]
    text = share.to_text()
    prefix = f"qrc-share-v1:{share.set_id.hex()}:4/5:k=3:"
    assert text.startswith(prefix)
    body = text[len(prefix) :]
    assert set(body) <= set(string.ascii_uppercase + "234567-")
    assert Share.from_text(text) == share
    # As re-typed from paper: lower case, wrapped lines, surrounding blanks.
    retyped = "  " + text[:50] + "\n" + text[50:120].lower() + "\r\n\t" + text[120:] + "\n"
    assert Share.from_text(retyped) == share
    # The group separators are optional.
    assert Share.from_text(prefix + body.replace("-", "")) == share


def test_every_single_character_typo_in_the_body_is_rejected() -> None:
    share = split(b"k" * 32, 3, 5)[0]
    text = share.to_text()
    start = text.rindex(":") + 1
    for i in range(start, len(text)):
        if text[i] == "-":
            continue
        replacement = "A" if text[i] != "A" else "B"
        with pytest.raises(InvalidShare):
            Share.from_text(text[:i] + replacement + text[i + 1 :])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("qrc-share-v1", "qrc-share-v2"),
        lambda t: t[:-1],  # a character left out
        lambda t: t + "A",  # a character too many
        lambda t: t[:-3] + "0" + t[-2:],  # not base32
        lambda t: t[:-3] + "8" + t[-2:],
        lambda t: t.replace(":2/5:", ":3/5:"),  # visible index disagrees
        lambda t: t.replace(":k=3:", ":k=2:"),
        lambda t: t.replace(t.split(":")[1], "0" * 32),  # visible set ID disagrees
        lambda t: t.rsplit(":", 1)[1],  # the body alone
        lambda t: "x" * 5000,
    ],
)
def test_malformed_text_is_rejected(mangle: object) -> None:
    text = split(b"k" * 32, 3, 5)[1].to_text()
    with pytest.raises(InvalidShare):
        Share.from_text(mangle(text))  # type: ignore[operator]


def test_text_armor_of_the_largest_share() -> None:
    share = split(bytes(shamir.MAX_SECRET_SIZE), 2, 255)[254]
    assert Share.from_text(share.to_text()) == share


# --------------------------------------------------------------------------- sealing
@pytest.fixture(scope="module")
def custodians() -> list[KemPrivateKey]:
    kem = get_kem("X25519MLKEM768")
    return [kem.generate() for _ in range(3)]


def test_sealed_shares_round_trip(custodians: list[KemPrivateKey]) -> None:
    shares = split(b"b" * 32, 2, 3)
    sealed = [seal_share(s, c.public_key()) for s, c in zip(shares, custodians, strict=True)]
    for blob, share in zip(sealed, shares, strict=True):
        assert blob.startswith(b"QRCC\x01" + share.set_id + bytes([2, 3, share.x]))
        assert share.y not in blob
    opened = [open_sealed_share(b, c) for b, c in zip(sealed, custodians, strict=True)]
    assert opened == shares
    assert combine(opened[1:]) == b"b" * 32


def test_sealed_share_needs_the_right_custodian(custodians: list[KemPrivateKey]) -> None:
    blob = seal_share(split(b"b" * 32, 2, 3)[0], custodians[0].public_key())
    with pytest.raises(InvalidShare, match="does not open"):
        open_sealed_share(blob, custodians[1])


def test_relabelled_sealed_share_does_not_open(custodians: list[KemPrivateKey]) -> None:
    """A sealed share relabelled as another index, set or threshold is refused."""
    shares = split(b"b" * 32, 2, 3)
    key = custodians[0]
    blob = seal_share(shares[1], key.public_key())
    as_index_3 = blob[:23] + b"\x03" + blob[24:]
    other_set = blob[:5] + bytes(16) + blob[21:]
    as_3_of_3 = blob[:21] + b"\x03" + blob[22:]
    for bad in (as_index_3, other_set, as_3_of_3):
        with pytest.raises(InvalidShare):
            open_sealed_share(bad, key)
    # Swapping the envelopes of two sealed shares under their labels fails too.
    other = seal_share(shares[2], key.public_key())
    with pytest.raises(InvalidShare):
        open_sealed_share(blob[:24] + other[24:], key)


def test_tampered_or_malformed_sealed_share(custodians: list[KemPrivateKey]) -> None:
    key = custodians[0]
    blob = seal_share(split(b"b" * 32, 2, 3)[0], key.public_key())
    for bit in (0, 8 * 4, 8 * 30, 8 * 200, len(blob) * 8 - 1):
        with pytest.raises(InvalidShare):
            open_sealed_share(_flip(blob, bit), key)
    for bad in (b"", blob[:24], b"QRCC\x02" + blob[5:], blob[:-1], blob + b"\x00"):
        with pytest.raises(InvalidShare):
            open_sealed_share(bad, key)
