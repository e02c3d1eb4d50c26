"""Shamir secret sharing over GF(2^8) for backup keys: split, combine, armor, seal.

A secret (a backup key) is split into ``n`` shares so that any ``k`` of them rebuild it and
``k - 1`` of them reveal nothing about it. The byte formats are specified in
``docs/formats.md`` ("Backup share v1", "Sealed share v1")::

    share   = "QRCH" | 0x01 | set_id(16) | k | n | x | u16 L | commitment(32) | y(L+16)
              | checksum(8)
    sealed  = "QRCC" | 0x01 | set_id(16) | k | n | x | Envelope v1 (to the custodian's key)

Each byte of ``secret || r`` (``r``: 16 random bytes) is the constant term of its own random
polynomial of degree ``k - 1`` over GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1); share
``x`` holds the polynomials' values at ``x``. Every share carries
``commitment = SHA-256("QRCH-v1 commitment" || set_id || k || n || u16 L || secret || r)``,
so :func:`combine` knows whether what it rebuilt is the secret that was split; ``r`` keeps
the commitment from being a brute-force oracle for a short secret (``r`` is shared too, so
fewer than ``k`` shares do not know it). The ``checksum`` (truncated SHA-256 of the share's
other bytes) catches a typo before combining; it is unkeyed and is no defence against a
deliberate change, which the commitment catches.

The field arithmetic is :mod:`qrc.crypto.gf256`: secret bytes are only ever multiplied by
public elements (indices, Lagrange coefficients), with shifts, masks and XORs over the whole
byte string, never through a table indexed by a secret byte. Python gives no constant-time
guarantee beyond that, and secrets held in ``bytes`` cannot be wiped (see
``docs/security-model.md``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from qrc.crypto.base import KemPrivateKey, KemPublicKey
from qrc.crypto.envelope import open_sealed, seal
from qrc.crypto.errors import DecryptionError
from qrc.crypto.gf256 import gf_inverse, gf_multiply, horner, lagrange_basis, linear_combination

__all__ = [
    "MAGIC",
    "MAX_SECRET_SIZE",
    "SEALED_MAGIC",
    "SET_ID_SIZE",
    "TEXT_PREFIX",
    "VERSION",
    "InvalidShare",
    "NotEnoughShares",
    "Share",
    "ShareError",
    "ShareMismatch",
    "combine",
    "gf_inverse",
    "gf_multiply",
    "open_sealed_share",
    "seal_share",
    "split",
]

MAGIC = b"QRCH"
SEALED_MAGIC = b"QRCC"
VERSION = 1
TEXT_PREFIX = "qrc-share-v1"
SET_ID_SIZE = 16
MAX_SECRET_SIZE = 1024
_MAX_SHARES = 255
_MASK_SIZE = 16  # r: random bytes shared with the secret so that the commitment hides it
_COMMITMENT_SIZE = 32
_CHECKSUM_SIZE = 8
_HEADER_SIZE = 4 + 1 + SET_ID_SIZE + 1 + 1 + 1 + 2 + _COMMITMENT_SIZE  # 58
_SEALED_HEADER_SIZE = 4 + 1 + SET_ID_SIZE + 1 + 1 + 1  # 24
# The largest share's armor is about 2,300 characters; bound the input before any regex.
_MAX_TEXT_SIZE = 4096
_COMMITMENT_LABEL = b"QRCH-v1 commitment"
# When a combination does not match the commitment, combine() tries other k-subsets to name
# the wrong shares; this bounds the search (C(10, 5) = 252 fits).
_MAX_SUBSETS = 256


# --------------------------------------------------------------------------- errors
class ShareError(ValueError):
    """Base class of the errors of secret sharing."""


class NotEnoughShares(ShareError):
    """Fewer distinct shares than the threshold ``k`` were given."""

    def __init__(self, have: int, need: int) -> None:
        self.have = have
        self.need = need
        more = need - have
        super().__init__(
            f"{need} distinct shares are needed and {have} were given: "
            f"bring {more} more share{'s' if more != 1 else ''}"
        )


class ShareMismatch(ShareError):
    """The shares do not belong together (different sets, or inconsistent parameters)."""


class InvalidShare(ShareError):
    """A share is corrupted, wrong or altered.

    ``wrong_indices`` names the bad shares when they could be identified (more than ``k``
    shares were given and some ``k`` of them match the commitment), else is empty.
    """

    def __init__(self, message: str, wrong_indices: Sequence[int] = ()) -> None:
        self.wrong_indices = tuple(wrong_indices)
        super().__init__(message)


# --------------------------------------------------------------------------- GF(2^8)
def _interpolate(points: Sequence[tuple[int, bytes]], at: int) -> bytes:
    """Evaluate, byte-wise, the polynomials through ``points`` at ``at`` (public x's)."""
    basis = lagrange_basis([x for x, _ in points], at)
    return linear_combination(basis, [y for _, y in points])


# --------------------------------------------------------------------------- shares
def _commitment(set_id: bytes, k: int, n: int, padded: bytes) -> bytes:
    size = len(padded) - _MASK_SIZE
    return hashlib.sha256(
        b"".join((_COMMITMENT_LABEL, set_id, bytes([k, n]), size.to_bytes(2, "big"), padded))
    ).digest()


@dataclass(frozen=True, slots=True, repr=False)
class Share:
    """One share of a split secret (Backup share v1).

    ``set_id`` names the split; ``x`` (1..n) is the share's index; ``y`` is the share
    proper (secret material: never logged, not shown by ``repr``).
    """

    set_id: bytes
    k: int
    n: int
    x: int
    commitment: bytes
    y: bytes

    def __post_init__(self) -> None:
        if len(self.set_id) != SET_ID_SIZE or len(self.commitment) != _COMMITMENT_SIZE:
            raise InvalidShare("a share has a 16-byte set ID and a 32-byte commitment")
        if not 2 <= self.k <= self.n <= _MAX_SHARES or not 1 <= self.x <= self.n:
            raise InvalidShare("a share needs 2 <= k <= n <= 255 and 1 <= x <= n")
        if not _MASK_SIZE <= len(self.y) <= _MASK_SIZE + MAX_SECRET_SIZE:
            raise InvalidShare(f"a share's y is 16 to {_MASK_SIZE + MAX_SECRET_SIZE} bytes")

    @property
    def secret_size(self) -> int:
        """Length in bytes of the secret this share is part of."""
        return len(self.y) - _MASK_SIZE

    @property
    def label(self) -> str:
        """Safe to show: ``"share 3 of 5 (any 3) of set 0123..."``."""
        return f"share {self.x} of {self.n} (any {self.k}) of set {self.set_id.hex()}"

    def __repr__(self) -> str:
        return f"<Share {self.x}/{self.n} k={self.k} set={self.set_id.hex()}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Share objects cannot be pickled (secret material)")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self.__reduce__()

    # ----------------------------------------------------------------- binary
    def to_bytes(self) -> bytes:
        """The binary encoding (Backup share v1)."""
        body = b"".join((
            MAGIC, bytes([VERSION]), self.set_id, bytes([self.k, self.n, self.x]),
            self.secret_size.to_bytes(2, "big"), self.commitment, self.y,
        ))  # fmt: skip
        return body + hashlib.sha256(body).digest()[:_CHECKSUM_SIZE]

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse a binary share, checking its layout and checksum.

        Raises:
            InvalidShare: malformed, truncated, extended, or the checksum does not match.
        """
        data = bytes(data)
        if len(data) < _HEADER_SIZE + _MASK_SIZE + _CHECKSUM_SIZE or data[:4] != MAGIC:
            raise InvalidShare("not a backup share (v1)")
        if data[4] != VERSION:
            raise InvalidShare(f"unsupported backup share version {data[4]}")
        size = int.from_bytes(data[24:26], "big")
        if size > MAX_SECRET_SIZE or len(data) != _HEADER_SIZE + size + _MASK_SIZE + _CHECKSUM_SIZE:
            raise InvalidShare("a backup share's length does not match its secret length")
        body, checksum = data[:-_CHECKSUM_SIZE], data[-_CHECKSUM_SIZE:]
        if not hmac.compare_digest(hashlib.sha256(body).digest()[:_CHECKSUM_SIZE], checksum):
            raise InvalidShare("the share's checksum does not match: it is corrupted or mistyped")
        return cls(
            set_id=data[5:21], k=data[21], n=data[22], x=data[23],
            commitment=data[26:_HEADER_SIZE], y=body[_HEADER_SIZE:],
        )  # fmt: skip

    # ----------------------------------------------------------------- text armor
    def to_text(self) -> str:
        """Text armor for paper or a password manager.

        ``qrc-share-v1:<set_id hex>:<x>/<n>:k=<k>:<base32 of to_bytes(), groups of 4>``.
        """
        b32 = base64.b32encode(self.to_bytes()).decode("ascii").rstrip("=")
        groups = "-".join(b32[i : i + 4] for i in range(0, len(b32), 4))
        return f"{TEXT_PREFIX}:{self.set_id.hex()}:{self.x}/{self.n}:k={self.k}:{groups}"

    @classmethod
    def from_text(cls, text: str) -> Share:
        """Parse text armor. Whitespace (line breaks) and the ``-`` between groups are ignored,
        and the body is read case-insensitively.

        Raises:
            InvalidShare: not a share, a typo (bad base32 or checksum), or the visible
                set ID / index / threshold disagree with the encoded share.
        """
        if len(text) > _MAX_TEXT_SIZE:
            raise InvalidShare("not a share: too long")
        compact = re.sub(r"\s+", "", text)
        parts = compact.split(":")
        if len(parts) != 5 or parts[0].lower() != TEXT_PREFIX:
            raise InvalidShare(f"not a share: expected '{TEXT_PREFIX}:<set>:<x>/<n>:k=<k>:...'")
        set_hex, position, threshold, body = parts[1].lower(), parts[2], parts[3].lower(), parts[4]
        b32 = body.replace("-", "").upper()
        if not re.fullmatch(r"[A-Z2-7]+", b32):
            raise InvalidShare("the share's body is not base32 (letters A-Z and digits 2-7)")
        try:
            data = base64.b32decode(b32 + "=" * (-len(b32) % 8))
        except (binascii.Error, ValueError):
            raise InvalidShare("the share's body is not valid base32: check for a typo") from None
        # base32's last character may carry unused bits; a typo there would decode to the
        # same bytes, so only the canonical spelling is accepted.
        if base64.b32encode(data).decode("ascii").rstrip("=") != b32:
            raise InvalidShare("the share's body is not valid base32: check for a typo")
        share = cls.from_bytes(data)
        if (
            set_hex != share.set_id.hex()
            or position != f"{share.x}/{share.n}"
            or threshold != f"k={share.k}"
        ):
            raise InvalidShare(
                "the share's visible set ID, index or threshold disagree with its body: "
                "check for a typo"
            )
        return share


# --------------------------------------------------------------------------- split/combine
def split(secret: bytes, k: int, n: int) -> list[Share]:
    """Split ``secret`` into ``n`` shares, any ``k`` of which rebuild it.

    Raises:
        ValueError: unless ``2 <= k <= n <= 255`` and ``len(secret) <= MAX_SECRET_SIZE``.
    """
    if not isinstance(k, int) or not isinstance(n, int) or not 2 <= k <= n <= _MAX_SHARES:
        raise ValueError("secret sharing needs 2 <= k <= n <= 255")
    secret = bytes(secret)
    if len(secret) > MAX_SECRET_SIZE:
        raise ValueError(f"a shared secret is at most {MAX_SECRET_SIZE} bytes")
    set_id = os.urandom(SET_ID_SIZE)
    padded = secret + os.urandom(_MASK_SIZE)
    commitment = _commitment(set_id, k, n, padded)
    # Coefficients are uniform over all of GF(2^8), zero included: forcing a non-zero
    # leading coefficient would bias the shares.
    coefficients = [padded] + [os.urandom(len(padded)) for _ in range(k - 1)]
    return [Share(set_id, k, n, x, commitment, horner(coefficients, x)) for x in range(1, n + 1)]


def _distinct(shares: Sequence[Share]) -> tuple[Share, list[Share]]:
    """Check that the shares belong together; drop exact duplicates."""
    if not shares:
        raise NotEnoughShares(0, 2)
    first = shares[0]
    by_x: dict[int, Share] = {}
    for share in shares:
        if not isinstance(share, Share):
            raise TypeError("combine takes Share objects (see Share.from_bytes / from_text)")
        if share.set_id != first.set_id:
            raise ShareMismatch(
                f"shares from different backups cannot be combined: set {first.set_id.hex()} "
                f"and set {share.set_id.hex()}"
            )
        if (share.k, share.n, len(share.y)) != (first.k, first.n, len(first.y)):
            raise ShareMismatch(
                f"shares of set {first.set_id.hex()} disagree on k, n or the secret length "
                f"({first.k}/{first.n} vs {share.k}/{share.n}): a share is altered"
            )
        if not hmac.compare_digest(share.commitment, first.commitment):
            raise ShareMismatch(
                f"shares of set {first.set_id.hex()} disagree on the commitment: a share is altered"
            )
        seen = by_x.setdefault(share.x, share)
        if seen is not share and not hmac.compare_digest(seen.y, share.y):
            raise InvalidShare(
                f"two different shares claim index {share.x}: at least one is wrong",
                (share.x,),
            )
    return first, [by_x[x] for x in sorted(by_x)]


def combine(shares: Sequence[Share]) -> bytes:
    """Rebuild the secret from ``k`` or more shares of one split; return it.

    Every share given must agree with the rebuilt secret: extra shares are checked, not
    ignored. Exact duplicates are ignored.

    Raises:
        NotEnoughShares: fewer than ``k`` distinct shares (says how many more are needed).
        ShareMismatch: shares of different splits, or with inconsistent ``k`` / ``n``.
        InvalidShare: a share is wrong or altered (the rebuilt secret does not match the
            commitment, or an extra share disagrees); ``wrong_indices`` names the bad
            shares when more than ``k`` were given and they could be told apart.
    """
    first, distinct = _distinct(shares)
    k = first.k
    if len(distinct) < k:
        raise NotEnoughShares(len(distinct), k)
    points = [(s.x, s.y) for s in distinct]
    for attempt, subset in enumerate(itertools.combinations(points, k)):
        if attempt >= _MAX_SUBSETS:
            break
        padded = bytes(_interpolate(subset, 0))
        expected = _commitment(first.set_id, k, first.n, padded)
        if not hmac.compare_digest(expected, first.commitment):
            if len(points) == k:
                break  # the only subset: nothing else to try
            continue
        chosen = {x for x, _ in subset}
        wrong = [
            x
            for x, y in points
            if x not in chosen and not hmac.compare_digest(bytes(_interpolate(subset, x)), y)
        ]
        if wrong:
            raise InvalidShare(
                f"share{'s' if len(wrong) > 1 else ''} {', '.join(map(str, wrong))} of set "
                f"{first.set_id.hex()} {'are' if len(wrong) > 1 else 'is'} wrong or altered; "
                "combine again without them",
                wrong,
            )
        return padded[: first.secret_size]
    hint = " (with exactly k shares the wrong one cannot be named: add another share)"
    raise InvalidShare(
        "a share is wrong or altered: the rebuilt secret does not match the backup's commitment"
        + (hint if len(points) == k else "")
    )


# --------------------------------------------------------------------------- sealing
def _sealed_context(set_id: bytes, k: int, n: int, x: int) -> bytes:
    return f"qrc-backup-share/{set_id.hex()}/{x}/{k}-of-{n}".encode("ascii")


def seal_share(share: Share, custodian_public_key: KemPublicKey) -> bytes:
    """Encrypt ``share`` to a custodian's KEM public key (``X25519MLKEM768`` recommended).

    The result (Sealed share v1) shows the set ID, k, n and index in clear and binds them
    as the envelope's context, so a sealed share relabelled as another index or set does
    not open. The envelope's key ID is the custodian key's fingerprint.
    """
    header = b"".join(
        (SEALED_MAGIC, bytes([VERSION]), share.set_id, bytes([share.k, share.n, share.x]))
    )
    context = _sealed_context(share.set_id, share.k, share.n, share.x)
    return header + seal(custodian_public_key, share.to_bytes(), context=context)


def open_sealed_share(blob: bytes, custodian_private_key: KemPrivateKey) -> Share:
    """Decrypt a sealed share with the custodian's private key.

    Raises:
        InvalidShare: not a sealed share, the wrong key, or the sealed share (its label
            included) was altered: these cannot be told apart, by design.
    """
    data = bytes(blob)
    if len(data) <= _SEALED_HEADER_SIZE or data[:4] != SEALED_MAGIC:
        raise InvalidShare("not a sealed backup share (v1)")
    if data[4] != VERSION:
        raise InvalidShare(f"unsupported sealed share version {data[4]}")
    set_id, (k, n, x) = data[5:21], data[21:24]
    if not 2 <= k <= n or not 1 <= x <= n:
        raise InvalidShare("a sealed share's label is malformed")
    try:
        plain = open_sealed(
            custodian_private_key,
            data[_SEALED_HEADER_SIZE:],
            context=_sealed_context(set_id, k, n, x),
        )
    except DecryptionError:
        raise InvalidShare(
            "the sealed share does not open: wrong custodian key, or the sealed share or its "
            "label (set ID, index) was altered"
        ) from None
    share = Share.from_bytes(plain)
    # The context already binds the label; this re-check keeps the two from ever diverging.
    if (share.set_id, share.k, share.n, share.x) != (set_id, k, n, x):
        raise InvalidShare("the sealed share's label disagrees with the share inside")
    return share
