"""Wrapping private key material under the root KEK, bound to key ID, version and algorithm.

The associated data (``docs/formats.md``, "Wrapped key v1") is::

    "qrc-key-v1" || u8 len || key_id || u32 version || u8 len || algorithm

so a wrapped blob copied to another key, version or algorithm does not unwrap. A
:class:`Keyring` holds the current custody and any older ones still needed to unwrap
(during a KEK rotation), chosen by the KEK ID each blob names.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from qrc.keys.custody.base import Custody, CustodyUnavailable
from qrc.keys.custody.wrapped import parse_blob

__all__ = ["Keyring", "key_aad"]


def key_aad(key_id: str, version: int, algorithm: str) -> bytes:
    """The associated data that binds a wrapped private key to its place."""
    kid, alg = key_id.encode("ascii"), algorithm.encode("ascii")
    return (
        b"qrc-key-v1"
        + bytes([len(kid)])
        + kid
        + struct.pack(">I", version)
        + bytes([len(alg)])
        + alg
    )


class Keyring:
    """The custody that wraps new material, plus older ones that can still unwrap."""

    def __init__(
        self,
        current: Custody,
        older: Iterable[Custody] = (),
        *,
        loader: Callable[[str], Custody | None] | None = None,
    ) -> None:
        self.current = current
        self._by_id = {c.kek_id: c for c in (*older, current)}
        self._loader = loader

    def get(self, kek_id: str) -> Custody | None:
        """The custody of ``kek_id``: one already open, else what the loader can open."""
        custody = self._by_id.get(kek_id)
        if custody is None and self._loader is not None:
            custody = self._loader(kek_id)
            if custody is not None:
                self._by_id[kek_id] = custody
        return custody

    @property
    def kek_ids(self) -> list[str]:
        """The KEKs open in this process."""
        return list(self._by_id)

    def add(self, custody: Custody) -> None:
        """Make another KEK available for unwrapping."""
        self._by_id[custody.kek_id] = custody

    def set_current(self, custody: Custody) -> None:
        """Wrap new material under ``custody`` from now on (keeps the old for unwrapping)."""
        self.add(custody)
        self.current = custody

    def wrap(self, key_id: str, version: int, algorithm: str, material: bytes) -> tuple[bytes, str]:
        """Wrap ``material``; returns the blob and the KEK ID that wrapped it."""
        blob = self.current.wrap(material, key_aad(key_id, version, algorithm))
        return blob, self.current.kek_id

    def unwrap(self, key_id: str, version: int, algorithm: str, blob: bytes) -> bytes:
        """Unwrap with whichever known KEK made ``blob``.

        Raises:
            CustodyUnavailable: the KEK the blob names is not known to this process.
            UnwrapError: the blob does not unwrap for this key, version and algorithm.
        """
        kek_id = parse_blob(blob).kek_id
        custody = self.get(kek_id)
        if custody is None:
            raise CustodyUnavailable(
                f"key material is wrapped under KEK {kek_id}, which this process does not "
                "hold; finish or resume the KEK rotation (qrc admin rotate-kek)"
            )
        return custody.unwrap(blob, key_aad(key_id, version, algorithm))

    def close(self) -> None:
        """Close every custody."""
        for custody in self._by_id.values():
            custody.close()
