"""SQLAlchemy column types: values encrypted under managed keys, and blind indexes.

::

    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(EncryptedText("customers", bind_primary_key=True))
        email_bidx: Mapped[str] = mapped_column(String(64), index=True)

    use_encryptor(sdk)           # or EncryptedText("customers", encryptor=sdk)

A value is stored in the data envelope's text form (``qrcd1:...``) and binds table and
column (``schema.table`` where the table has a schema), and with ``bind_primary_key`` the
row's primary key too: a value copied to another row or column fails with the one
``DecryptionError``. The primary key must then be set before the insert (not left to a
sequence): it is part of what is encrypted. Reads with a bound primary key select it along
with the value (``column_expression``), so ``select(Customer.email)`` decrypts too; writes
go through the ORM, or through :meth:`EncryptedText.seal` in Core statements.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text, event, inspect, literal, type_coerce
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.expression import ColumnElement, cast
from sqlalchemy.sql.schema import Column, Table
from sqlalchemy.types import TypeDecorator

from qrc.crypto.errors import DecryptionError
from qrc.data.format import TEXT_PREFIX, from_text, parse, to_text
from qrc.data.index import IndexEntry
from qrc.data.sdk import DataEncryptor, TextReader, integrity_hash

__all__ = [
    "BlindIndex",
    "EncryptedText",
    "Sealed",
    "column_context",
    "sql_identifier",
    "sql_location",
    "use_encryptor",
]

_default: list[DataEncryptor] = []
_PK_SEPARATOR = "|"
_BLIND_LABEL = b"qrc.data/v1 blind index\x00"


def use_encryptor(encryptor: DataEncryptor | None) -> None:
    """The :class:`DataEncryptor` of every :class:`EncryptedText` not given its own."""
    _default.clear()
    if encryptor is not None:
        _default.append(encryptor)


def column_context(table: str, column: str, primary_key: str | None = None) -> bytes:
    """The context a column value is bound to (``docs/data-at-rest.md``)."""
    parts = [b"qrc.sql/v1", table.encode(), column.encode()]
    if primary_key is not None:
        parts.append(primary_key.encode())
    return b"\x00".join(parts)


class Sealed(str):
    """A value already encrypted for its row (written as it is)."""

    __slots__ = ()


class EncryptedText(TypeDecorator[str]):
    """A ``str`` column stored encrypted under managed key ``key`` (ID or name).

    Args:
        encryptor: the SDK (or a callable returning it); default :func:`use_encryptor`'s.
        bind_primary_key: bind the row's (single-column) primary key as well.
        allow_plaintext: read values without the ``qrcd1:`` marker as they are (only while
            ``qrc data encrypt-column`` converts an existing column).
        register: register each value the ORM writes in the encrypted-data index (location
            ``sql:TABLE/COLUMN/PK``), in the flush, so that rewrap reaches it; needs
            ``bind_primary_key``. One key-service call per flush.
    """

    impl = Text
    cache_ok = True

    def __init__(
        self,
        key: str,
        *,
        encryptor: DataEncryptor | Callable[[], DataEncryptor] | None = None,
        bind_primary_key: bool = False,
        allow_plaintext: bool = False,
        register: bool = False,
        table: str | None = None,
        column: str | None = None,
        primary_key: str | None = None,
    ) -> None:
        super().__init__()
        self.key = key
        self.encryptor = encryptor
        self.bind_primary_key = bind_primary_key
        self.allow_plaintext = allow_plaintext
        if register and not bind_primary_key:
            raise ValueError("register=True needs bind_primary_key=True (the row is the location)")
        self.register = register
        self.table, self.column, self.primary_key = table, column, primary_key
        self._context = b""
        if table is not None and column is not None:
            self._context = column_context(table, column) + (b"\x00" if bind_primary_key else b"")

    # ------------------------------------------------------------------ plumbing
    def _sdk(self) -> DataEncryptor:
        chosen = self.encryptor
        if isinstance(chosen, DataEncryptor):
            return chosen
        if chosen is not None:
            return chosen()
        if not _default:
            raise RuntimeError("no DataEncryptor: call qrc.data.columns.use_encryptor(sdk)")
        return _default[0]

    def _where(self) -> tuple[str, str]:
        if self.table is None or self.column is None:
            raise RuntimeError("EncryptedText is not attached to a table column")
        return self.table, self.column

    def for_column(self, table: Table, column: Column[Any]) -> EncryptedText:
        """A copy of this type that knows its table and column (done on attachment)."""
        pk = None
        if self.bind_primary_key:
            keys = list(table.primary_key.columns)
            if len(keys) != 1:
                raise ValueError(
                    f"{table.fullname}.{column.name}: bind_primary_key needs a primary key "
                    "of exactly one column"
                )
            pk = keys[0].name
        return EncryptedText(
            self.key,
            encryptor=self.encryptor,
            bind_primary_key=self.bind_primary_key,
            allow_plaintext=self.allow_plaintext,
            register=self.register,
            table=table.fullname,
            column=column.name,
            primary_key=pk,
        )

    # ------------------------------------------------------------------ encryption
    def seal(self, value: str, primary_key: object = None) -> Sealed:
        """``value`` encrypted for this column (and row): for Core inserts and updates."""
        table, column = self._where()
        pk = None
        if self.bind_primary_key:
            if primary_key is None:
                raise ValueError(
                    f"{table}.{column} binds the primary key: set it before the insert"
                )
            pk = str(primary_key)
        context = column_context(table, column, pk)
        return Sealed(to_text(self._sdk().encrypt(self.key, value.encode(), context=context)))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, Sealed):
            return value
        if not isinstance(value, str):
            raise TypeError(f"EncryptedText holds str, not {type(value).__name__}")
        if self.bind_primary_key:
            raise ValueError(
                f"{self.table}.{self.column} binds the primary key: write it through the "
                "ORM, or pass EncryptedText.seal(value, primary_key)"
            )
        return self.seal(value)

    # ------------------------------------------------------------------ decryption
    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any] | None:
        if not self.bind_primary_key or self.primary_key is None:
            return colexpr
        table = getattr(colexpr, "table", None)
        if table is None:
            return colexpr
        pk = table.c[self.primary_key]
        joined = cast(pk, Text) + literal(_PK_SEPARATOR, Text) + type_coerce(colexpr, Text)
        return type_coerce(joined, self)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if self.table is None:
            self._where()
        context = self._context
        if self.bind_primary_key:
            pk, _, value = value.rpartition(_PK_SEPARATOR)
            context += pk.encode()
        if self.allow_plaintext and not value.startswith(TEXT_PREFIX):
            return value
        plaintext = self._sdk().decrypt(from_text(value), context=context)
        try:
            return plaintext.decode()
        except UnicodeDecodeError:
            raise DecryptionError from None

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        # The same as process_result_value, without TypeDecorator's layers: every value read
        # goes through here (the PostgreSQL drivers hand Text over as str, unprocessed).
        inner = self.impl_instance.result_processor(dialect, coltype)
        if inner is not None:
            return super().result_processor(dialect, coltype)  # type: ignore[return-value]
        if self.table is None or self.allow_plaintext:
            return lambda value: self.process_result_value(value, dialect)
        sdk, base, bound = self._sdk, self._context, self.bind_primary_key
        chosen = self.encryptor
        fixed = chosen if isinstance(chosen, DataEncryptor) else None
        by_default = chosen is None
        readers: list[TextReader] = []  # one per SDK in use; values under a DEK come in runs

        def process(value: str | None) -> str | None:
            if value is None:
                return None
            context = base
            if bound:
                cut = value.rfind(_PK_SEPARATOR)  # slices, not a tuple: fewer objects for gc
                context = base + value[:cut].encode()
                value = value[cut + 1 :]
            # The SDK is looked up per value (use_encryptor may change it), cheaply.
            current = fixed or (_default[0] if by_default and _default else sdk())
            reader = readers[-1] if readers else None
            if reader is None or reader.sdk is not current:
                reader = current.text_reader()
                readers[:] = [reader]
            plaintext = reader.decrypt(value, context)
            try:
                return plaintext.decode()
            except UnicodeDecodeError:
                raise DecryptionError from None

        return process


@event.listens_for(Column, "after_parent_attach")
def _attached(column: Column[Any], table: object) -> None:
    kind = column.type
    if isinstance(kind, EncryptedText) and isinstance(table, Table) and kind.table is None:
        column.type = kind.for_column(table, column)


# --------------------------------------------------------------------------- ORM writes
_STASH = "qrc.data.plaintext"
_PENDING = "qrc.data.index"


def _bound_columns(mapper: Mapper[Any]) -> list[tuple[str, EncryptedText]]:
    found = []
    for prop in mapper.column_attrs:
        for col in prop.columns:
            kind = getattr(col, "type", None)
            if isinstance(kind, EncryptedText) and kind.bind_primary_key:
                found.append((prop.key, kind))
    return found


def sql_location(table: str, column: str, pk: object) -> str:
    """Where the index finds a column value: ``sql:TABLE/COLUMN/PK``."""
    return f"sql:{table}/{column}/{pk}"


def sql_identifier(database: str, table: str, column: str, pk: object) -> str:
    """The index identifier of a column value: ``DATABASE/TABLE/COLUMN/PK``."""
    return f"{database}/{table}/{column}/{pk}"


def _index_entry(kind: EncryptedText, database: str, pk: object, sealed: str) -> IndexEntry:
    data = from_text(sealed)
    table, column = kind._where()
    return IndexEntry(
        sql_identifier(database, table, column, pk),
        kind.key,
        parse(data).key_version,
        "sql-column",
        location=sql_location(table, column, pk),
        integrity_hash=integrity_hash(data),
    )


def _seal_row(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    columns = _bound_columns(mapper)
    if not columns:
        return
    state = inspect(target)
    identity = mapper.primary_key_from_instance(target)
    stash: dict[str, str] = state.info.setdefault(_STASH, {})
    for name, kind in columns:
        value = getattr(target, name)
        if value is None or isinstance(value, Sealed):
            continue
        if state.has_identity and not state.attrs[name].history.has_changes():
            continue
        if len(identity) != 1 or identity[0] is None:
            raise ValueError(
                f"{kind.table}.{kind.column} binds the primary key: set it before the insert"
            )
        stash[name] = value
        sealed = kind.seal(value, identity[0])
        setattr(target, name, sealed)
        if kind.register and state.session is not None:
            database = connection.engine.url.database or "db"
            pending = state.session.info.setdefault(_PENDING, [])
            pending.append((kind._sdk(), _index_entry(kind, database, identity[0], sealed)))


def _restore_row(mapper: Mapper[Any], target: Any) -> None:
    stash = inspect(target).info.pop(_STASH, None)
    for name, value in (stash or {}).items():
        set_committed_value(target, name, value)


@event.listens_for(Mapper, "before_insert")
def _before_insert(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    _seal_row(mapper, connection, target)


@event.listens_for(Mapper, "before_update")
def _before_update(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    _seal_row(mapper, connection, target)


@event.listens_for(Session, "after_flush")
def _register(session: Session, _context: Any) -> None:
    """Register what the flush wrote, inside the transaction: if the index cannot be told,
    the flush fails and nothing is committed unindexed (a rolled-back row may stay indexed:
    rewrap reports it as missing)."""
    pending: list[tuple[DataEncryptor, IndexEntry]] = session.info.pop(_PENDING, [])
    by_sdk: dict[int, tuple[DataEncryptor, list[IndexEntry]]] = {}
    for sdk, entry in pending:
        by_sdk.setdefault(id(sdk), (sdk, []))[1].append(entry)
    for sdk, entries in by_sdk.values():
        if sdk.index is None:
            raise RuntimeError("register=True needs a DataEncryptor with an index")
        for start in range(0, len(entries), 1000):
            sdk.index.register(entries[start : start + 1000])


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


@event.listens_for(Mapper, "after_insert")
def _after_insert(mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    _restore_row(mapper, target)


@event.listens_for(Mapper, "after_update")
def _after_update(mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    _restore_row(mapper, target)


# --------------------------------------------------------------------------- blind index
class BlindIndex:
    """Deterministic HMAC-SHA256 tags of a column's values, for equality search.

    The secret is a DEK wrapped under a managed key (:meth:`create_secret`, kept in the
    application's configuration); it is unwrapped once, through the service (audited).
    Each (table, column) gets its own HMAC key (HKDF). Tags are ``size`` bytes, hex.

    What it leaks: equal values have equal tags, so the tag column shows which rows share a
    value and how often each value occurs (frequency analysis on low-entropy columns); with
    truncation, unequal values sometimes share a tag (check the decrypted value after the
    search). Whoever can run the SDK can tag guesses (a dictionary attack): keep tags only
    for columns that need equality search.
    """

    def __init__(
        self,
        encryptor: DataEncryptor,
        secret: str,
        *,
        size: int = 16,
        normalise: Callable[[str], str] | None = None,
    ) -> None:
        if not 4 <= size <= 32:
            raise ValueError("a blind index keeps 4 to 32 bytes of the HMAC")
        header = parse(from_text(secret))
        self._root = encryptor.source.unwrap(header.key_id, header.wrapped_key)
        self.size = size
        self.normalise = normalise
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def create_secret(encryptor: DataEncryptor, key: str) -> str:
        """A new blind-index secret under ``key``, in text form (store it in config)."""
        made = encryptor.source.data_key(key)
        # An envelope of nothing: it carries the wrapped secret and names the key.
        cipher_key = made.plaintext
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        from qrc.data.format import seal_value  # noqa: PLC0415

        blob = seal_value(
            AESGCM(cipher_key),
            b"",
            context=_BLIND_LABEL,
            key_id=made.key_id,
            key_version=made.key_version,
            wrapped_key=made.wrapped,
        )
        return to_text(blob)

    def _key(self, table: str, column: str) -> bytes:
        with self._lock:
            key = self._keys.get((table, column))
            if key is None:
                info = _BLIND_LABEL + table.encode() + b"\x00" + column.encode()
                key = HKDF(hashes.SHA256(), 32, None, info).derive(self._root)
                self._keys[(table, column)] = key
            return key

    def tag(self, table: str, column: str, value: str) -> str:
        """The tag of ``value`` in ``table.column`` (store it; search with it)."""
        if self.normalise is not None:
            value = self.normalise(value)
        mac = hmac.new(self._key(table, column), value.encode(), sha256).digest()
        return mac[: self.size].hex()
