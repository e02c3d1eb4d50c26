"""``qrc data``: data at rest under service keys: encrypt a column, rewrap, the index, shred
reports.

The key service is the one of the data directory (``--data-dir``, ``QRC_DATA_DIR``; library
mode, as ``qrc admin``), or the remote one at ``--service-url`` (``QRC_URL``) over PQ TLS with
``QRC_TOKEN`` and ``QRC_CA_FILE``, as ``qrc keys``. ``--url`` of ``encrypt-column`` and
``--sql-url`` of ``rewrap`` are the application's database, which the SQL work in
:mod:`qrc.data` reaches; nothing here touches a database itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrc.cli.io import fail

if TYPE_CHECKING:
    from qrc.data.index import IndexClient
    from qrc.data.sdk import DataEncryptor

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Data at rest: encrypt columns, rewrap after rotation, the index, shredding.",
    no_args_is_help=True,
)
index_app = typer.Typer(help="The encrypted-data index.", no_args_is_help=True)
data_app.add_typer(index_app, name="index")

ServiceUrl = Annotated[
    str | None,
    typer.Option("--service-url", envvar="QRC_URL", help="Remote key service (default: local)."),
]
Token = Annotated[str | None, typer.Option("--token", envvar="QRC_TOKEN", help="Bearer token.")]
Ca = Annotated[
    Path | None, typer.Option("--ca", envvar="QRC_CA_FILE", help="CA certificate to trust.")
]
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="QRC_DATA_DIR", help="Data directory.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Key = Annotated[str, typer.Option("--key", "-k", help="Key ID or name.")]


@dataclass(frozen=True)
class _Where:
    url: str | None
    token: str | None
    ca: Path | None
    data_dir: Path


@data_app.callback()
def _options(
    ctx: typer.Context,
    service_url: ServiceUrl = None,
    token: Token = None,
    ca: Ca = None,
    data_dir: DataDir = Path(".qrc"),
) -> None:
    """Where the key service is (usually set by QRC_DATA_DIR, or QRC_URL and QRC_TOKEN)."""
    ctx.obj = _Where(service_url, token, ca, data_dir)


def _where(ctx: typer.Context) -> _Where:
    found = ctx.find_object(_Where)  # set by the group's callback, however deep it sits
    return found if found is not None else _Where(None, None, None, Path(".qrc"))


@contextmanager
def _errors() -> Iterator[None]:
    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.data.encrypt_column import ColumnError  # noqa: PLC0415
    from qrc.keys.errors import KeyServiceError  # noqa: PLC0415

    try:
        yield
    except (ColumnError, KeyServiceError, CryptoError, LookupError, ValueError) as exc:
        fail(str(exc) or type(exc).__name__)
    except Exception as exc:  # the database or Redis: one line, never its parameters
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
        fail(f"{type(orig).__name__}: {first}")


@contextmanager
def _encryptor(ctx: typer.Context) -> Iterator[DataEncryptor]:
    """The SDK over the local key service of the data directory, or the remote one."""
    from qrc.data.sdk import DataEncryptor  # noqa: PLC0415

    where = _where(ctx)
    if where.url:
        token = where.token
        if token is None:
            token_file = where.data_dir / "admin.token"
            if not token_file.exists():
                fail(f"no token: set QRC_TOKEN or --token (or run where {token_file} exists)")
            token = token_file.read_text("utf-8").strip()
        ca = where.ca or where.data_dir / "tls" / "ca.pem"
        if where.url.startswith("https://") and not ca.exists():
            fail(f"no CA certificate at {ca}: set QRC_CA_FILE or --ca")
        with _errors():
            sdk = DataEncryptor.remote(where.url, token=token, ca_file=str(ca))
        try:
            with _errors():
                yield sdk
        finally:
            sdk.close()
        return
    from qrc.cli.admin.common import key_service  # noqa: PLC0415

    with key_service(where.data_dir) as service:
        sdk = DataEncryptor.local(service, actor="cli:data")
        try:
            with _errors():
                yield sdk
        finally:
            sdk.close()


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr (when it is a terminal and the output is not JSON)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import Progress  # noqa: PLC0415

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done) or None)

        yield update


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print("\n".join(lines))


# --------------------------------------------------------------------------- columns
@data_app.command("encrypt-column")
def encrypt_column(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="The application's database URL.")],
    table: Annotated[str, typer.Option("--table", help="Table (schema.table allowed).")],
    column: Annotated[str, typer.Option("--column", help="Text column to encrypt in place.")],
    key: Key,
    bind_primary_key: Annotated[
        bool, typer.Option("--bind-primary-key", help="Bind each row's primary key (as the model).")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10000)] = 500,
    register: Annotated[
        bool, typer.Option("--index", help="Register each value in the encrypted-data index.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, write nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Encrypt an existing plaintext column in batches; run it again after an interruption."""
    from qrc.data.encrypt_column import encrypt_column as run  # noqa: PLC0415

    if dry_run:
        with _errors():
            report = run(url, table, column, key, None, dry_run=True)
    else:
        with _encryptor(ctx) as sdk, _progress(f"{table}.{column}", not as_json) as progress:
            report = run(
                url,
                table,
                column,
                key,
                sdk,
                bind_primary_key=bind_primary_key,
                batch_size=batch_size,
                register=register,
                progress=progress,
            )
    verb = "would encrypt" if report.dry_run else "encrypted"
    count = report.to_encrypt if report.dry_run else report.encrypted
    _emit(
        report.as_dict(),
        as_json,
        [
            f"{table}.{column}: {verb} {count} values "
            f"({report.already_encrypted} already encrypted, {report.batches} batches)"
        ],
    )


# --------------------------------------------------------------------------- rewrap
@data_app.command("rewrap")
def rewrap(
    ctx: typer.Context,
    key: Key,
    sql_url: Annotated[
        str | None, typer.Option("--sql-url", help="Database of sql: locations.")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis of redis: locations.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1000)] = 100,
    as_json: Json = False,
) -> None:
    """Rewrap every indexed object's DEK under the key's primary version (bulk untouched)."""
    from qrc.data.rewrap import open_targets, rewrap_key  # noqa: PLC0415

    with _errors():
        targets, close = open_targets(sql_url=sql_url, redis_url=redis_url)
    try:
        with _encryptor(ctx) as sdk, _progress(f"rewrap {key}", not as_json) as progress:
            report = rewrap_key(sdk, key, targets, batch_size=batch_size, progress=progress)
    finally:
        close()
    _emit(
        report.as_dict(),
        as_json,
        [
            f"key {report.key}: {report.rewrapped} rewrapped to version {report.primary_version}, "
            f"{report.already_current} already current, {report.missing} missing, "
            f"{report.changed_meanwhile} changed meanwhile, {report.unreadable} unreadable"
            + (f", no target for {report.no_target}" if report.no_target else "")
        ],
    )


# --------------------------------------------------------------------------- index
def _index(sdk: DataEncryptor) -> IndexClient:
    if sdk.index is None:  # both modes give one; a None here is a bug
        fail("this key service has no encrypted-data index")
    return sdk.index


def _record_line(record: Any) -> str:
    return (
        f"{record.seq:>6}  {record.identifier}  v{record.key_version}  "
        f"{record.data_type or '-'}  {record.location or '-'}"
    )


@index_app.command("list")
def index_list(
    ctx: typer.Context,
    key: Key,
    below_version: Annotated[int | None, typer.Option("--below-version", min=1)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 1000,
    as_json: Json = False,
) -> None:
    """Objects registered under a key (oldest first)."""
    records: list[Any] = []
    with _encryptor(ctx) as sdk:
        index = _index(sdk)
        after = 0
        while len(records) < limit:
            page = index.under(
                key, below_version=below_version, after=after, limit=min(1000, limit)
            )
            if not page:
                break
            records += page
            after = page[-1].seq
    records = records[:limit]
    _emit(
        {"objects": [r.as_dict() for r in records]},
        as_json,
        [_record_line(r) for r in records] or ["no objects"],
    )


@index_app.command("show")
def index_show(ctx: typer.Context, identifier: str, as_json: Json = False) -> None:
    """One indexed object, by identifier."""
    with _encryptor(ctx) as sdk:
        index = _index(sdk)
        record = index.get(identifier)
    data = record.as_dict()
    _emit(data, as_json, [f"{name:15} {value}" for name, value in data.items()])


@data_app.command("shred-report")
def shred_report(ctx: typer.Context, key: Key, as_json: Json = False) -> None:
    """What destroying a key made unrecoverable (every object indexed under it)."""
    with _encryptor(ctx) as sdk:
        index = _index(sdk)
        report = index.shred_report(key)
        objects = list(report.objects)
        while report.next_after is not None:
            report = index.shred_report(key, after=report.next_after)
            objects += report.objects
    data = {
        "key_id": report.key_id,
        "key_name": report.key_name,
        "status": report.status,
        "shredded": report.shredded,
        "destroyed_at": report.destroyed_at,
        "objects": [r.as_dict() for r in objects],
    }
    state = "shredded" if report.shredded else f"NOT destroyed (status {report.status})"
    head = f"key {report.key_name} ({report.key_id}): {state}; {len(objects)} indexed objects"
    _emit(data, as_json, [head, *(_record_line(r) for r in objects)])
