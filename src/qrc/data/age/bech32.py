"""Bech32 (BIP 173) without its 90-character limit, as age encodes keys.

age's recipients and identities are Bech32 strings whose data part is far longer than
BIP 173 allows (an ``age1pq1`` recipient is about 1,960 characters); the checksum is the
same. A string is all lowercase or all uppercase; the checksum covers the lowercase form.
"""

from __future__ import annotations

__all__ = ["Bech32Error", "decode", "encode"]

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(ValueError):
    """The string is not valid Bech32."""


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_GENERATOR):
            if (top >> i) & 1:
                check ^= generator
    return check


def _expand_hrp(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: bytes | list[int], source: int, target: int, pad: bool) -> list[int]:
    accumulator, bits, out = 0, 0, []
    mask = (1 << target) - 1
    for value in data:
        accumulator = (accumulator << source) | value
        bits += source
        while bits >= target:
            bits -= target
            out.append((accumulator >> bits) & mask)
    if pad:
        if bits:
            out.append((accumulator << (target - bits)) & mask)
    elif bits >= source or (accumulator << (target - bits)) & mask:
        raise Bech32Error("non-zero padding in Bech32 data")
    return out


def encode(hrp: str, data: bytes) -> str:
    """The lowercase Bech32 string of ``data`` (uppercase it for age identities)."""
    hrp = hrp.lower()
    values = _convert(data, 8, 5, pad=True)
    check = _polymod([*_expand_hrp(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """``(hrp, data)`` of a Bech32 string; the HRP comes back lowercase.

    Raises:
        Bech32Error: mixed case, bad characters or a wrong checksum.
    """
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed-case Bech32 string")
    lower = text.lower()
    split = lower.rfind("1")
    if split < 1 or len(lower) - split < 7:
        raise Bech32Error("malformed Bech32 string")
    hrp, rest = lower[:split], lower[split + 1 :]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid Bech32 prefix")
    try:
        values = [_VALUES[c] for c in rest]
    except KeyError:
        raise Bech32Error("invalid Bech32 character") from None
    if _polymod([*_expand_hrp(hrp), *values]) != 1:
        raise Bech32Error("wrong Bech32 checksum")
    return hrp, bytes(_convert(values[:-6], 5, 8, pad=False))
