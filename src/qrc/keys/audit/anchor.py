"""The trust anchor of audit verification: the audit signing keys, pinned outside the store.

A verifier that took the checkpoint signers' public keys from the database it checks would
accept a rewritten history signed with any key the attacker put there. So the public keys
that may sign checkpoints are pinned outside the database, and only they are trusted:

- :class:`FileAnchor` — ``DATA_DIR/audit-keys.jsonl``, one JSON line per key version
  (``docs/formats.md``, "Audit anchor"), appended when the service creates or rotates its
  audit key, never rewritten. Several nodes share it (a shared path), as they share the KEK.
- :class:`TokenAnchor` — with PKCS#11 custody, unmodifiable data objects in the HSM (the file
  above mirrors them for offline verifiers);
- :class:`MemoryAnchor` — the same in memory, for a service without a data directory
  (the library used alone, tests).
- :class:`MacKeyFile` — ``DATA_DIR/audit-mac.key``, the key of the MAC every event carries
  from the file's creation on, so that an event appended by anyone but the service is found.

The first audit key is pinned on first use (trust on first use); after that, a store whose
audit key is not pinned is refused, not re-pinned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from qrc.crypto.base import VerifyingKey
from qrc.crypto.errors import CryptoError, UnsupportedAlgorithm
from qrc.crypto.registry import Kind, get_info
from qrc.crypto.schemes import get_signature
from qrc.keys.audit.format import AuditError

__all__ = [
    "ANCHOR_FILE",
    "MAC_KEY_FILE",
    "AuditAnchor",
    "AuditMacKey",
    "DataObjects",
    "FileAnchor",
    "MacKeyFile",
    "MemoryAnchor",
    "PinnedKey",
    "TokenAnchor",
    "anchor_fingerprint",
    "parse_pinned",
    "pinned_line",
]

ANCHOR_FILE = "audit-keys.jsonl"
_MAX_FILE = 1 << 20  # about 150 pinned keys of the largest kind; far more than a store needs
_FORMAT = "qrc-audit-anchor-v1"

PinnedKey = tuple[str, int]  # (key ID, version)


class AuditAnchor(Protocol):
    """Where the trusted audit public keys are kept."""

    def keys(self) -> Mapping[PinnedKey, VerifyingKey]:
        """Every pinned key, by (key ID, version)."""

    def pin(self, key_id: str, version: int, public: VerifyingKey) -> None:
        """Trust ``public`` as version ``version`` of audit key ``key_id`` from now on."""


class MemoryAnchor:
    """Pinned keys held in memory (lost with the process)."""

    def __init__(self) -> None:
        self._keys: dict[PinnedKey, VerifyingKey] = {}

    def keys(self) -> Mapping[PinnedKey, VerifyingKey]:
        """Every pinned key."""
        return dict(self._keys)

    def pin(self, key_id: str, version: int, public: VerifyingKey) -> None:
        """Pin ``public``; pinning another key under a pinned (ID, version) is refused."""
        _check_repin(self._keys, key_id, version, public)
        self._keys[(key_id, version)] = public


class FileAnchor:
    """Pinned keys in an append-only file of JSON lines (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def keys(self) -> Mapping[PinnedKey, VerifyingKey]:
        """Every pinned key in the file.

        Raises:
            AuditError: the file is unreadable or malformed (verification must not go on
                without its anchor).
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return {}
        if size > _MAX_FILE:
            raise AuditError(f"{self.path} is larger than an audit anchor can be")
        lines = self.path.read_bytes().splitlines()
        return _collect(
            (line, f"{self.path}:{n}") for n, line in enumerate(lines, 1) if line.strip()
        )

    def pin(self, key_id: str, version: int, public: VerifyingKey) -> None:
        """Append ``public`` (no-op if that exact key is pinned already)."""
        with self._lock:
            current = self.keys()
            if current.get((key_id, version)) is not None:
                _check_repin(current, key_id, version, public)
                return
            line = _line(key_id, version, public) + b"\n"
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            fd = os.open(self.path, flags, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


@runtime_checkable
class DataObjects(Protocol):
    """Public data objects of a token (:class:`~qrc.keys.custody.pkcs11.Pkcs11Custody`)."""

    def read_data(self, label: str) -> list[bytes]:
        """The values of the objects labelled ``label``."""

    def add_data(self, label: str, value: bytes) -> None:
        """Store a new, unmodifiable object labelled ``label``."""


class TokenAnchor:
    """Pinned keys held by the HSM (PKCS#11 custody): unmodifiable token data objects.

    Whoever controls the database and the data directory still cannot change what the
    token holds. Each pin is also appended to ``mirror`` (the data directory's file), which
    is what offline verifiers are handed; the token is what this service trusts.
    """

    LABEL = "qrc-audit-anchor"

    def __init__(self, token: DataObjects, mirror: AuditAnchor | None = None) -> None:
        self.token = token
        self.mirror = mirror
        self._lock = threading.Lock()

    def keys(self) -> Mapping[PinnedKey, VerifyingKey]:
        """Every key the token holds pinned."""
        values = self.token.read_data(self.LABEL)
        return _collect((v, f"token object {self.LABEL} #{n}") for n, v in enumerate(values, 1))

    def pin(self, key_id: str, version: int, public: VerifyingKey) -> None:
        """Store ``public`` in the token (and the mirror), unless that exact key is there."""
        with self._lock:
            current = self.keys()
            if current.get((key_id, version)) is None:
                self.token.add_data(self.LABEL, _line(key_id, version, public))
            else:
                _check_repin(current, key_id, version, public)
            if self.mirror is not None:
                self.mirror.pin(key_id, version, public)


def anchor_fingerprint(keys: Mapping[PinnedKey, VerifyingKey]) -> str:
    """SHA-256 (hex) of a set of pinned keys, independent of order: what an auditor is told
    out of band to trust the keys an export carries."""
    lines = sorted(_line(key_id, version, public) for (key_id, version), public in keys.items())
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


def parse_pinned(line: bytes, where: str) -> tuple[str, int, VerifyingKey]:
    """One pinned key from its line (as the anchor file and exports write it)."""
    return _parse(line, where)


def pinned_line(key_id: str, version: int, public: VerifyingKey) -> bytes:
    """The line of one pinned key (no newline)."""
    return _line(key_id, version, public)


def _line(key_id: str, version: int, public: VerifyingKey) -> bytes:
    record = {
        "format": _FORMAT,
        "key_id": key_id,
        "version": version,
        "algorithm": public.algorithm,
        "public_key": base64.b64encode(public.public_bytes()).decode("ascii"),
    }
    return json.dumps(record, sort_keys=True).encode("ascii")


def _collect(entries: Iterable[tuple[bytes, str]]) -> dict[PinnedKey, VerifyingKey]:
    """Pinned keys from ``(line, where)`` pairs; two keys for one (ID, version) are refused."""
    found: dict[PinnedKey, VerifyingKey] = {}
    for line, where in entries:
        key_id, version, public = _parse(line, where)
        _check_repin(found, key_id, version, public)
        found[(key_id, version)] = public
    return found


def _check_repin(
    keys: Mapping[PinnedKey, VerifyingKey], key_id: str, version: int, public: VerifyingKey
) -> None:
    pinned = keys.get((key_id, version))
    if pinned is not None and (
        pinned.algorithm != public.algorithm or pinned.public_bytes() != public.public_bytes()
    ):
        raise AuditError(
            f"audit key {key_id} v{version} is pinned with another public key: the store's key "
            "was replaced (investigate: this is what a forged history looks like)"
        )


def _parse(line: bytes, where: str) -> tuple[str, int, VerifyingKey]:
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            raise ValueError("not an audit anchor line")
        key_id, version = record["key_id"], record["version"]
        algorithm, encoded = record["algorithm"], record["public_key"]
        if not isinstance(key_id, str) or not isinstance(algorithm, str):
            raise ValueError("key_id and algorithm are strings")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("version is a positive integer")
        if get_info(algorithm).kind is not Kind.SIGNATURE:
            raise ValueError(f"{algorithm} is not a signature algorithm")
        public = get_signature(algorithm).load_public(base64.b64decode(encoded, validate=True))
    except (
        ValueError,
        KeyError,
        TypeError,
        binascii.Error,
        UnsupportedAlgorithm,
        CryptoError,
    ) as exc:
        raise AuditError(f"{where}: malformed audit anchor line ({exc})") from None
    return key_id, version, public


MAC_KEY_FILE = "audit-mac.key"
_MAC_FORMAT = "qrc-audit-mac-v1"
_MAC_KEY_SIZE = 32


@dataclass(frozen=True)
class AuditMacKey:
    """The key that proves the service wrote an event, and the first event it covers.

    Kept outside the database (like the pinned keys): an attacker who can write the database
    can append a well-linked event, but cannot give it the MAC the verifier asks of every
    event from ``from_seq`` on.
    """

    key: bytes = field(repr=False)
    from_seq: int


class MacKeyFile:
    """``DATA_DIR/audit-mac.key``: the audit MAC key, made once (mode 0600), never rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load_or_create(self, next_seq: int) -> AuditMacKey:
        """The key in the file; made now (covering events from ``next_seq``) if absent.

        Raises:
            AuditError: the file is malformed.
        """
        try:
            return self._load()
        except FileNotFoundError:
            pass
        record = {
            "format": _MAC_FORMAT,
            "key": base64.b64encode(secrets.token_bytes(_MAC_KEY_SIZE)).decode("ascii"),
            "from_seq": next_seq,
        }
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another node made it first: theirs it is
            return self._load()
        try:
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return self._load()

    def _load(self) -> AuditMacKey:
        data = self.path.read_bytes()
        try:
            record = json.loads(data[:4096])
            key = base64.b64decode(record["key"], validate=True)
            from_seq = record["from_seq"]
            if (
                record.get("format") != _MAC_FORMAT
                or len(key) != _MAC_KEY_SIZE
                or isinstance(from_seq, bool)
                or not isinstance(from_seq, int)
                or from_seq < 1
            ):
                raise ValueError("not an audit MAC key file")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise AuditError(f"{self.path}: malformed audit MAC key file ({exc})") from None
        return AuditMacKey(key, from_seq)
