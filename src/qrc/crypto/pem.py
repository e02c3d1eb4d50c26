"""PEM (RFC 7468, strict) for key files: one block, known labels, no legacy headers."""

from __future__ import annotations

import base64
import binascii

from qrc.crypto.errors import KeyFormatError

__all__ = ["pem_decode", "pem_encode"]


def pem_encode(label: str, der: bytes) -> bytes:
    """``der`` as one PEM block labelled ``label`` (64-character lines)."""
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"".join(line + b"\n" for line in lines)
        + f"-----END {label}-----\n".encode()
    )


def pem_decode(data: bytes | str, labels: tuple[str, ...]) -> tuple[str, bytes]:
    """The label and DER of the one PEM block in ``data`` (RFC 7468, strict).

    Explanatory text before the block is ignored, as RFC 7468 asks; anything but
    whitespace after it is an error.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError("PEM data must be ASCII") from None
    else:
        text = data
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("-----BEGIN ")), None)
    if start is None:
        raise KeyFormatError("no PEM block found")
    begin = lines[start].rstrip()
    label = begin[len("-----BEGIN ") : -5] if begin.endswith("-----") else ""
    if label not in labels:
        expected = " or ".join(repr(name) for name in labels)
        raise KeyFormatError(f"unexpected PEM label {label[:40]!r}; expected {expected}")
    if len(lines) - start < 3 or lines[-1].rstrip() != f"-----END {label}-----":
        raise KeyFormatError("PEM block has no matching END line, or trailing data")
    body = "".join(line.strip() for line in lines[start + 1 : -1])
    if ":" in body:
        raise KeyFormatError("PEM headers (legacy Proc-Type encryption) are not supported")
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("PEM body is not valid base64") from None
    if not der:
        raise KeyFormatError("empty PEM block")
    return label, der
