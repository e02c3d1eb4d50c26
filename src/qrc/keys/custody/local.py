"""``local`` custody: the root KEK sealed under a passphrase (Argon2id + AES-256-GCM).

The KEK is 32 random bytes, written once to ``DIR/kek.sealed`` (``docs/formats.md``, "Sealed
KEK file v1") encrypted under a key Argon2id derives from the operator's passphrase. Opened,
it lives in process memory (Python cannot wipe it: ``docs/security-model.md``) and wraps with
AES-256-GCM in process.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import struct
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NoReturn

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qrc.keys.custody.base import (
    Custody,
    CustodyError,
    CustodyHealth,
    HealthState,
    UnwrapError,
)
from qrc.keys.custody.wrapped import aesgcm_unwrap, aesgcm_wrap, validate_kek_id

__all__ = [
    "DEFAULT_ARGON2",
    "KEK_FILE",
    "PASSPHRASE_ENV",
    "PASSPHRASE_FILE",
    "Argon2Params",
    "LocalCustody",
    "SealedFileError",
    "SealedFileExists",
    "WrongPassphrase",
]

logger = logging.getLogger(__name__)

KEK_FILE = "kek.sealed"
PASSPHRASE_FILE = "master.key"  # noqa: S105  # nosec B105
PASSPHRASE_ENV = "QRC_MASTER_PASSPHRASE"  # noqa: S105  # nosec B105

SEALED_MAGIC = b"QRCK"
SEALED_VERSION = 0x01
_KEK_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_SALT_SIZE = 16
_MIN_SALT, _MAX_SALT = 16, 64
_PARAMS = struct.Struct(">III")
# magic, version, len8(kek_id) ≤ 255, params, len8(salt) ≤ 64, nonce, sealed KEK.
_MAX_FILE = 4 + 1 + 1 + 255 + _PARAMS.size + 1 + _MAX_SALT + _NONCE_SIZE + _KEK_SIZE + _TAG_SIZE
# Bounds on what a file may ask of us: a crafted file must not make opening take hours or
# terabytes before the passphrase is even checked. The lower bounds are Argon2's own
# minimums (RFC 9106 §3.1), which the tests use for speed.
_MAX_TIME, _MAX_MEMORY_KIB, _MAX_LANES = 64, 4 * 1024 * 1024, 64


class SealedFileError(CustodyError):
    """The sealed KEK file is missing, exists already, or is not a Sealed KEK file v1."""


class SealedFileExists(SealedFileError):
    """``create`` refused to overwrite an existing sealed KEK file."""


class WrongPassphrase(CustodyError):
    """The passphrase does not open the sealed KEK file (or the file was modified)."""


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters (RFC 9106); ``memory_cost`` is in KiB."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024
    parallelism: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.parallelism <= _MAX_LANES:
            raise ValueError("argon2 parallelism must be 1..64")
        if not 1 <= self.time_cost <= _MAX_TIME:
            raise ValueError("argon2 time_cost must be 1..64")
        if not 8 * self.parallelism <= self.memory_cost <= _MAX_MEMORY_KIB:
            raise ValueError("argon2 memory_cost must be 8*parallelism KiB .. 4 GiB")


DEFAULT_ARGON2 = Argon2Params()


def _encode_passphrase(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        # NFC so that the same passphrase typed through different input methods matches.
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not isinstance(passphrase, bytes):
        raise TypeError("passphrase must be str or bytes")
    if not passphrase:
        raise CustodyError("the master passphrase must not be empty")
    return passphrase


def _derive(passphrase: bytes, salt: bytes, params: Argon2Params) -> AESGCM:
    key = hash_secret_raw(
        secret=passphrase,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )
    return AESGCM(key)


def _seal(kek: bytes, kek_id: str, passphrase: bytes, params: Argon2Params) -> bytes:
    raw_id = validate_kek_id(kek_id)
    salt = os.urandom(_SALT_SIZE)
    header = (
        SEALED_MAGIC
        + bytes([SEALED_VERSION, len(raw_id)])
        + raw_id
        + _PARAMS.pack(params.time_cost, params.memory_cost, params.parallelism)
        + bytes([len(salt)])
        + salt
    )
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + _derive(passphrase, salt, params).encrypt(nonce, kek, header)


@dataclass(frozen=True)
class _SealedFile:
    kek_id: str
    params: Argon2Params
    salt: bytes
    header: bytes
    nonce: bytes
    sealed: bytes


def _parse_sealed(data: bytes) -> _SealedFile:
    """Strict parse; raises ValueError on anything but a well-formed v1 file."""
    if len(data) > _MAX_FILE or len(data) < 6:
        raise ValueError("size")
    if data[:4] != SEALED_MAGIC or data[4] != SEALED_VERSION:
        raise ValueError("magic or version")
    id_len = data[5]
    pos = 6
    if id_len == 0 or len(data) < pos + id_len + _PARAMS.size + 1:
        raise ValueError("kek id")
    raw_id = data[pos : pos + id_len]
    validate_kek_id(raw_id.decode("ascii"))
    pos += id_len
    params = Argon2Params(*_PARAMS.unpack_from(data, pos))
    pos += _PARAMS.size
    salt_len = data[pos]
    pos += 1
    if not _MIN_SALT <= salt_len <= _MAX_SALT:
        raise ValueError("salt")
    header_end = pos + salt_len
    if len(data) != header_end + _NONCE_SIZE + _KEK_SIZE + _TAG_SIZE:
        raise ValueError("length")
    return _SealedFile(
        kek_id=raw_id.decode("ascii"),
        params=params,
        salt=data[pos:header_end],
        header=data[:header_end],
        nonce=data[header_end : header_end + _NONCE_SIZE],
        sealed=data[header_end + _NONCE_SIZE :],
    )


def _read_small(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise SealedFileError(f"{what} not found at {path}") from None
    except OSError as exc:
        raise SealedFileError(f"cannot read {what} at {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "%s %s is accessible to group/others (mode %o); use 0600",
            what,
            path,
            stat.S_IMODE(mode),
        )
    if len(data) > limit:
        raise SealedFileError(f"{what} at {path} is too large to be one")
    return data


def _write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600.

    A new file is linked into place (never overwriting: the link fails if the name exists,
    without a check-then-write race); ``replace=True`` renames over the old file.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise SealedFileExists(f"{path} exists already; refusing to overwrite") from None
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _unseal(path: Path, passphrase: str | bytes) -> tuple[bytes, _SealedFile]:
    secret = _encode_passphrase(passphrase)
    data = _read_small(path, _MAX_FILE, "sealed KEK file")
    try:
        parsed = _parse_sealed(data)
    except (ValueError, UnicodeDecodeError, struct.error):
        raise SealedFileError(f"{path} is not a valid sealed KEK file (v1)") from None
    try:
        kek = _derive(secret, parsed.salt, parsed.params).decrypt(
            parsed.nonce, parsed.sealed, parsed.header
        )
    except InvalidTag:
        raise WrongPassphrase(
            f"the passphrase does not open {path} (wrong passphrase, or the file was modified)"
        ) from None
    return kek, parsed


class LocalCustody(Custody):
    """The root KEK unsealed into process memory; wraps with AES-256-GCM in process."""

    kind: ClassVar[str] = "local"
    __slots__ = ("_aead", "_closed", "_development_passphrase", "_kek_id", "_path")

    def __init__(
        self,
        kek: bytes,
        kek_id: str,
        *,
        path: Path | None = None,
        development_passphrase: bool = False,
    ) -> None:
        """Use :meth:`create`, :meth:`open` or :meth:`for_data_dir` instead."""
        if len(kek) != _KEK_SIZE:
            raise ValueError("the KEK must be 32 bytes")
        validate_kek_id(kek_id)
        self._aead = AESGCM(kek)
        self._kek_id = kek_id
        self._path = path
        self._development_passphrase = development_passphrase
        self._closed = False

    # -- construction -----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        *,
        params: Argon2Params = DEFAULT_ARGON2,
    ) -> LocalCustody:
        """Generate a new KEK, seal it to ``path`` (mode 0600) and return it opened.

        Raises:
            SealedFileExists: ``path`` exists (a KEK is never overwritten).
        """
        target = Path(path)
        secret = _encode_passphrase(passphrase)
        if target.exists():
            raise SealedFileExists(f"{target} exists already; refusing to overwrite")
        kek = os.urandom(_KEK_SIZE)
        kek_id = "local-" + secrets.token_hex(8)
        _write_private(target, _seal(kek, kek_id, secret, params), replace=False)
        logger.info("created root KEK %s sealed at %s", kek_id, target)
        return cls(kek, kek_id, path=target)

    @classmethod
    def open(cls, path: str | os.PathLike[str], passphrase: str | bytes) -> LocalCustody:
        """Unseal the KEK at ``path``.

        Raises:
            SealedFileError: missing or malformed file.
            WrongPassphrase: the passphrase does not open it.
        """
        target = Path(path)
        kek, parsed = _unseal(target, passphrase)
        return cls(kek, parsed.kek_id, path=target)

    @classmethod
    def for_data_dir(
        cls,
        data_dir: str | os.PathLike[str],
        passphrase: str | None,
        *,
        params: Argon2Params = DEFAULT_ARGON2,
    ) -> LocalCustody:
        """Open (or create on first start) ``DATA_DIR/kek.sealed``.

        ``passphrase`` is the configured one (``QRC_MASTER_PASSPHRASE``). Without it, a random
        passphrase is generated once into ``DATA_DIR/master.key`` (mode 0600) and a warning
        is logged: that file next to the sealed KEK makes the seal worthless, so it is for
        development only. :attr:`development_passphrase` tells which case applies.
        """
        directory = Path(data_dir)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        kek_path = directory / KEK_FILE
        pass_path = directory / PASSPHRASE_FILE
        development = False
        if passphrase is not None:
            if not passphrase:
                raise CustodyError(f"{PASSPHRASE_ENV} is set but empty")
        elif pass_path.exists():
            development = True
            passphrase = _read_small(pass_path, 4096, "passphrase file").decode("utf-8").strip()
        elif kek_path.exists():
            raise CustodyError(
                f"{kek_path} exists but {PASSPHRASE_ENV} is not set and there is no "
                f"{pass_path}; set {PASSPHRASE_ENV} to the passphrase it was sealed with"
            )
        else:
            development = True
            passphrase = secrets.token_urlsafe(32)
            _write_private(pass_path, (passphrase + "\n").encode("ascii"), replace=False)
        if development:
            logger.warning(
                "DEVELOPMENT ONLY: %s is not set, so the root KEK is sealed under the "
                "generated passphrase in %s. Anyone who can read that file can unwrap every "
                "key. Set %s (and delete the file) in production.",
                PASSPHRASE_ENV,
                pass_path,
                PASSPHRASE_ENV,
            )
        if kek_path.exists():
            custody = cls.open(kek_path, passphrase)
        else:
            custody = cls.create(kek_path, passphrase, params=params)
        custody._development_passphrase = development
        return custody

    @staticmethod
    def change_passphrase(
        path: str | os.PathLike[str],
        old: str | bytes,
        new: str | bytes,
        *,
        params: Argon2Params = DEFAULT_ARGON2,
    ) -> None:
        """Reseal the same KEK (same ID) under a new passphrase, atomically.

        Raises:
            WrongPassphrase: ``old`` does not open the file.
        """
        target = Path(path)
        kek, parsed = _unseal(target, old)
        data = _seal(kek, parsed.kek_id, _encode_passphrase(new), params)
        _write_private(target, data, replace=True)
        logger.info("resealed root KEK %s at %s under a new passphrase", parsed.kek_id, target)

    # -- Custody ----------------------------------------------------------------------

    @property
    def kek_id(self) -> str:
        return self._kek_id

    @property
    def development_passphrase(self) -> bool:
        """True when the passphrase came from the generated development file."""
        return self._development_passphrase

    def _aesgcm(self) -> AESGCM:
        if self._closed:
            raise CustodyError("this custody is closed")
        return self._aead

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        return aesgcm_wrap(self._aesgcm(), self._kek_id, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return aesgcm_unwrap(self._aesgcm(), self._kek_id, blob, aad)

    def health(self) -> CustodyHealth:
        start = time.monotonic()
        try:
            probe = os.urandom(32)
            ok = self.unwrap(self.wrap(probe, b"qrc health"), b"qrc health") == probe
        except (CustodyError, UnwrapError) as exc:
            return CustodyHealth(HealthState.OFFLINE, self.kind, self._kek_id, str(exc))
        if not ok:
            return CustodyHealth(HealthState.OFFLINE, self.kind, self._kek_id, "round trip failed")
        detail = f"round trip in {(time.monotonic() - start) * 1000:.1f} ms"
        if self._development_passphrase:
            detail += "; WARNING: development passphrase file in use"
        return CustodyHealth(HealthState.ONLINE, self.kind, self._kek_id, detail)

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"<LocalCustody kek_id={self._kek_id}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a custody holding a KEK cannot be pickled")
