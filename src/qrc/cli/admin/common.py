"""What every ``qrc admin`` command shares: options, output, errors, opening the key service."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from qrc.cli.io import fail, passphrase_from

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = [
    "DEFAULT_DIR",
    "DataDirOpt",
    "JsonOpt",
    "PassOpt",
    "current_actor",
    "err",
    "first_line",
    "handled",
    "jsonable",
    "kek_hint",
    "key_service",
    "out",
    "parse_time",
    "print_json",
    "show_time",
    "write_new",
]

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

DataDirOpt = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="QRC_DATA_DIR",
        help="Data directory (SQLite store, sealed KEK files).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
PassOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the key files' passphrase."),
]
DEFAULT_DIR = Path(".qrc")


def current_actor() -> str:
    """``admin:<os user>``: who did it, as the audit chain records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still says who
        user = f"uid{os.getuid()}"
    return f"admin:{user}"


def jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=jsonable) + "\n")
    sys.stdout.flush()


def show_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option}: {text!r} is not an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@contextmanager
def handled() -> Iterator[None]:
    """Turn the key service's errors into one line and exit status 2."""
    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.keys.audit.log import AuditError  # noqa: PLC0415
    from qrc.keys.custody.base import CustodyError  # noqa: PLC0415
    from qrc.keys.errors import KeyServiceError  # noqa: PLC0415
    from qrc.keys.store.db import STORE_ERRORS  # noqa: PLC0415
    from qrc.server.config import ConfigurationError  # noqa: PLC0415

    try:
        yield
    except (KeyServiceError, CustodyError, AuditError, CryptoError, ConfigurationError) as exc:
        fail(str(exc) or type(exc).__name__)
    except STORE_ERRORS as exc:
        # Only the driver's first line: the full text may quote statement parameters.
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
        fail(f"the database failed ({first}); check QRC_DATABASE_URL and that the server is up")
    except OSError as exc:
        if exc.filename:
            fail(f"{exc.filename}: {exc.strerror or exc}")
        fail(str(exc) or type(exc).__name__)
    except ValueError as exc:  # share errors, bad audit queries
        fail(str(exc) or type(exc).__name__)


def kek_hint(kek_id: str) -> str:
    """What to set so that KEK ``kek_id`` can be opened."""
    from qrc.keys.custody.factory import kek_hint as hint  # noqa: PLC0415

    return hint(kek_id)


@contextmanager
def key_service(data_dir: Path) -> Iterator[KeyService]:
    """The key service of ``data_dir``, closed afterwards; errors become one line."""
    from qrc.keys.factory import open_service  # noqa: PLC0415
    from qrc.server.config import load_settings  # noqa: PLC0415

    with handled():
        service = open_service(load_settings(data_dir=data_dir).service_config())
        try:
            yield service
        finally:
            service.close()


def write_new(path: Path, data: bytes) -> None:
    """Write a new file, mode 0600; never replaces one (O_EXCL: not even a racing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def first_line(path: Path) -> bytes:
    """The passphrase on the first line of ``path`` (a clear error when it is empty)."""
    return passphrase_from(path) or b""
