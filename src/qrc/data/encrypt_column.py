"""Encrypt an existing plaintext column in place, in batches, resumable after a crash.

The marker is the value itself: a value is taken as done when it carries the text form's
``qrcd1:`` prefix and parses as a data envelope under the chosen key. Each batch reads rows
without the prefix in primary-key order, locks them (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), writes each ciphertext only if the row still holds the plaintext it read
(compare and set), registers the batch in the encrypted-data index if asked, and commits:
a run killed at any point leaves every row either plaintext or encrypted, never lost and
never encrypted twice, and the next run carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import MetaData, Table, and_, create_engine, func, not_, select, update
from sqlalchemy.engine import Engine, make_url

from qrc.data.columns import EncryptedText, sql_identifier, sql_location
from qrc.data.format import TEXT_PREFIX, from_text, looks_encrypted, parse
from qrc.data.index import IndexEntry
from qrc.data.sdk import DataEncryptor, integrity_hash

__all__ = ["ColumnError", "ColumnReport", "encrypt_column", "sql_identifier", "sql_location"]

Progress = Callable[[int, int], None]
_MARKED = TEXT_PREFIX.replace("_", r"\_") + "%"


class ColumnError(Exception):
    """The column cannot be converted as asked (no such table, no single primary key,
    values that carry the marker but are not ciphertexts)."""


@dataclass(frozen=True)
class ColumnReport:
    """What a run found and did."""

    table: str
    column: str
    key: str
    dry_run: bool
    already_encrypted: int
    to_encrypt: int
    encrypted: int
    batches: int
    indexed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reflect(engine: Engine, name: str) -> Table:
    schema, _, table = name.rpartition(".")
    try:
        return Table(table, MetaData(), autoload_with=engine, schema=schema or None)
    except Exception as exc:
        raise ColumnError(f"no table {name!r} in the database ({type(exc).__name__})") from None


def encrypt_column(
    url: str,
    table: str,
    column: str,
    key: str,
    encryptor: DataEncryptor | None,
    *,
    bind_primary_key: bool = False,
    batch_size: int = 500,
    dry_run: bool = False,
    register: bool = False,
    progress: Progress | None = None,
) -> ColumnReport:
    """Encrypt ``table.column`` under ``key`` (see the module docstring).

    ``bind_primary_key`` must match the model's :class:`EncryptedText` declaration. With
    ``dry_run`` nothing is written and the key service is not called (``encryptor`` may be
    ``None``).
    """
    if not 1 <= batch_size <= 10_000:
        raise ColumnError("the batch size is 1..10000")
    engine = create_engine(url)
    try:
        return _run(
            engine,
            table,
            column,
            key,
            encryptor,
            bind_primary_key=bind_primary_key,
            batch_size=batch_size,
            dry_run=dry_run,
            register=register,
            progress=progress,
            database=make_url(url).database or "db",
        )
    finally:
        engine.dispose()


def _run(
    engine: Engine,
    table_name: str,
    column_name: str,
    key: str,
    encryptor: DataEncryptor | None,
    *,
    bind_primary_key: bool,
    batch_size: int,
    dry_run: bool,
    register: bool,
    progress: Progress | None,
    database: str,
) -> ColumnReport:
    table = _reflect(engine, table_name)
    if column_name not in table.c:
        raise ColumnError(f"table {table_name!r} has no column {column_name!r}")
    keys = list(table.primary_key.columns)
    if len(keys) != 1:
        raise ColumnError(f"table {table_name!r} needs a primary key of exactly one column")
    pk, col = keys[0], table.c[column_name]
    marked = col.like(_MARKED, escape="\\")
    todo = and_(col.is_not(None), not_(marked))
    key_id = encryptor.source.status(key).key_id if encryptor is not None else None
    with engine.connect() as conn:
        to_encrypt = conn.scalar(select(func.count()).select_from(table).where(todo)) or 0
        already = 0
        bad = 0
        for value in conn.execute(select(col).where(marked)).scalars():
            if looks_encrypted(value, key_id):
                already += 1
            else:
                bad += 1
    if bad:
        raise ColumnError(
            f"{bad} values of {table_name}.{column_name} start with {TEXT_PREFIX!r} but are "
            "not data envelopes under this key: nothing was written"
        )
    if dry_run or encryptor is None:
        return ColumnReport(table_name, column_name, key, True, already, to_encrypt, 0, 0, 0)
    kind = EncryptedText(key, encryptor=encryptor, bind_primary_key=bind_primary_key)
    kind = kind.for_column(table, col)
    done = batches = indexed = 0
    if progress is not None:
        progress(0, to_encrypt)
    while True:
        with engine.begin() as conn:
            query = select(pk, col).where(todo).order_by(pk).limit(batch_size)
            if engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                break
            entries = []
            for row_pk, plain in rows:
                sealed = kind.seal(str(plain), row_pk)
                changed = conn.execute(
                    update(table).where(and_(pk == row_pk, col == plain)).values({col: sealed})
                ).rowcount
                if changed:
                    done += 1
                    if register:
                        entries.append(
                            IndexEntry(
                                sql_identifier(database, table_name, column_name, row_pk),
                                key,
                                _version_of(sealed),
                                "sql-column",
                                location=sql_location(table_name, column_name, row_pk),
                                integrity_hash=integrity_hash(from_text(sealed)),
                            )
                        )
            # Registered before the commit: a crash in between leaves an index entry for a
            # row still in plaintext, which the next run encrypts and registers again.
            if entries and encryptor.index is not None:
                indexed += encryptor.index.register(entries)
            batches += 1
        if progress is not None:
            progress(done, to_encrypt)
    return ColumnReport(
        table_name, column_name, key, False, already, to_encrypt, done, batches, indexed
    )


def _version_of(sealed: str) -> int:
    return parse(from_text(sealed)).key_version
