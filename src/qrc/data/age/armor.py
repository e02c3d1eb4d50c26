"""ASCII armor: strict PEM (RFC 7468 §3, Figure 3) with the label ``AGE ENCRYPTED FILE``.

Written as age writes it: 64-column lines of padded base64, LF line ends. Read strictly,
as ``c2sp.org/age`` asks, so that armored files are not malleable: whitespace is allowed
only before the first line and after the last, line ends may be LF or CRLF, every line but
the last is exactly 64 columns, the last is non-empty, base64 is canonical with its
padding, and nothing follows the end line but whitespace. Both directions stream.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import BinaryIO

from qrc.data.age.errors import ArmorFailure

__all__ = ["BEGIN", "END", "ArmorReader", "ArmorWriter"]

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
_COLUMNS = 64
_BYTES_PER_LINE = 48
_WHITESPACE = b" \t\r\n"


class ArmorWriter(io.RawIOBase):
    """Armors what is written onto ``dst``; ``close()`` writes the end line, not closing ``dst``."""

    def __init__(self, dst: BinaryIO) -> None:
        super().__init__()
        self._dst = dst
        self._pending = bytearray()
        dst.write(BEGIN + b"\n")

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._pending += data
        whole = len(self._pending) - len(self._pending) % _BYTES_PER_LINE
        if whole:
            self._emit(self._pending[:whole])
            del self._pending[:whole]
        return len(memoryview(data).cast("B"))

    def _emit(self, data: bytes | bytearray) -> None:
        text = base64.b64encode(data)
        self._dst.write(
            b"".join(text[i : i + _COLUMNS] + b"\n" for i in range(0, len(text), _COLUMNS))
        )

    def close(self) -> None:
        if not self.closed:
            try:
                if self._pending:
                    self._emit(self._pending)
                self._dst.write(END + b"\n")
            finally:
                super().close()


class ArmorReader(io.RawIOBase):
    """Decodes armor from ``src`` line by line.

    Raises:
        ArmorFailure: from any read, for the first deviation from the strict encoding.
    """

    def __init__(self, src: BinaryIO) -> None:
        super().__init__()
        self._src = src
        self._pending = b""
        self._finished = False
        line = self._skip_leading_whitespace()
        if self._strip_eol(line) != BEGIN:
            raise ArmorFailure

    def readable(self) -> bool:
        return True

    def _skip_leading_whitespace(self) -> bytes:
        while True:
            line = self._src.readline(_COLUMNS + 3)
            if not line:
                raise ArmorFailure
            if line.strip(_WHITESPACE):
                return line

    def _strip_eol(self, line: bytes, *, allow_none: bool = False) -> bytes:
        if line.endswith(b"\r\n"):
            return line[:-2]
        if line.endswith(b"\n"):
            return line[:-1]
        if allow_none:
            return line
        raise ArmorFailure

    def _next_line(self) -> bytes:
        line = self._src.readline(_COLUMNS + 3)
        if not line:
            raise ArmorFailure  # no end line
        return self._strip_eol(line, allow_none=line.rstrip(b"\r\n") == END)

    def _decode_line(self) -> bytes:
        text = self._next_line()
        if text == END:
            self._finish()
            return b""
        if not text or len(text) > _COLUMNS:
            raise ArmorFailure
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ArmorFailure from None
        if base64.b64encode(data) != text:
            raise ArmorFailure  # not canonical
        if len(text) < _COLUMNS or text.endswith(b"="):
            # A short or padded line is the last: the end line must follow.
            if self._next_line() != END:
                raise ArmorFailure
            self._finish()
        return data

    def _finish(self) -> None:
        self._finished = True
        while chunk := self._src.read(1 << 16):
            if chunk.strip(_WHITESPACE):
                raise ArmorFailure  # only whitespace may follow the end line

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        while not self._pending:
            if self._finished:
                return 0
            self._pending = self._decode_line()
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
