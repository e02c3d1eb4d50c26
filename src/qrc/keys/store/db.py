"""The database: SQLAlchemy 2 engine and sessions for SQLite (embedded) and PostgreSQL.

:class:`Database` takes a SQLAlchemy URL: ``postgresql+psycopg://...`` for production, or
SQLite for the embedded default (:func:`qrc.keys.factory.open_service` chooses, from the
configuration's ``database_url``). The schema is owned by the Alembic migrations in
``qrc/keys/store/migrations``; :meth:`Database.upgrade` applies them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, create_engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

__all__ = [
    "SQLITE_SYNCHRONOUS_MODES",
    "STORE_ERRORS",
    "Base",
    "Database",
    "StoreBusy",
    "UTCDateTime",
    "after_commit",
    "utcnow",
]

logger = logging.getLogger(__name__)


# What the store raises when the database fails, for callers above the key service that
# report it without knowing the database library.
class StoreBusy(Exception):
    """Another writer held the store longer than the busy timeout (try again later)."""


STORE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, StoreBusy)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every ``qrc`` table (constraint names fixed for migrations)."""

    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, truncated to microseconds."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no time zones; PostgreSQL's ``timestamptz`` has. Both read back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: use utcnow() or an aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SQLITE_SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")


def _sqlite_pragmas(synchronous: str, busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; busy_timeout makes writers queue, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    # WAL with synchronous=NORMAL: a commit survives a crash of the process and never
    # corrupts the file, but the last commits before a power loss or OS crash may be lost
    # (they are synced at the next checkpoint). That keeps an fsync off every request;
    # QRC_SQLITE_SYNCHRONOUS=FULL syncs each commit. Production stores use PostgreSQL.
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    # Zero freed pages, so erased (destroyed) key material does not linger in the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


_AFTER_COMMIT = "qrc.after_commit"
_READ_ONLY = "qrc_read_only"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` after ``session``'s transaction commits (never if it rolls back)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


class Database:
    """One store: an engine, a session factory and the migrations."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
        **engine_options: Any,
    ) -> None:
        """``busy_timeout``: seconds a SQLite writer waits for the write lock (then the
        store is busy: the API answers 503)."""
        if sqlite_synchronous.upper() not in SQLITE_SYNCHRONOUS_MODES:
            raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS_MODES}")
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            engine_options.setdefault("connect_args", {"timeout": busy_timeout})
            _private_sqlite_files(url)
        else:
            engine_options.setdefault("pool_pre_ping", True)
        self.engine: Engine = create_engine(url, **engine_options)
        if self.is_sqlite:
            pragmas = functools.partial(
                _sqlite_pragmas, sqlite_synchronous.upper(), int(busy_timeout * 1000)
            )
            event.listen(self.engine, "connect", pragmas)
            # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that
            # SELECT ... FOR UPDATE-style sections (BEGIN IMMEDIATE) really serialise.
            event.listen(self.engine, "connect", _disable_pysqlite_begin)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite admits one writer; writers that wait for it inside SQLite sleep in growing
        # steps (its busy handler) even after the lock is free, which under load wastes most
        # of the time. Our writers queue here instead (threads on a lock, processes on a
        # lock file) and get the turn at once.
        self._writer: contextlib.AbstractContextManager[object] = (
            _WriterQueue(_sqlite_path(url), busy_timeout)
            if self.is_sqlite
            else contextlib.nullcontext()
        )
        # Reads run in transactions that take no write lock (SQLite: a deferred BEGIN, which
        # in WAL mode reads a snapshot beside the writer): a long audit verification or a
        # flood of token lookups does not hold writers up.
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        Callbacks registered with :func:`after_commit` run once the commit succeeded.
        """
        with self._writer, self._sessions() as session:
            with session.begin():
                yield session
            callbacks = session.info.pop(_AFTER_COMMIT, ())
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the transaction committed: its caller must hear success
                logger.exception("a callback after commit failed")

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reading only: it takes no write lock (nothing may be written)."""
        with self._read_sessions() as session, session.begin():
            yield session

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision``."""
        from qrc.keys.store.migrations import upgrade  # noqa: PLC0415 - Alembic loads lazily

        upgrade(self.engine, revision)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class _WriterQueue:
    """One writer at a time among this process's threads and every process on the file.

    Waiting longer than ``timeout`` gives up (the store is busy: the caller answers 503).
    """

    def __init__(self, database: Path | None, timeout: float) -> None:
        self._threads = threading.RLock()
        self._path = database.with_name(database.name + "-writer") if database else None
        self._timeout = timeout
        self._fd: int | None = None  # opened once; flock belongs to it (one per process)
        self._depth = 0

    def __enter__(self) -> None:
        if not self._threads.acquire(timeout=self._timeout):
            raise StoreBusy("the store is busy (another writer)")
        self._depth += 1
        if self._depth > 1 or self._path is None:
            return
        try:
            self._lock_file()
        except BaseException:
            self._depth -= 1
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self) -> None:
        if self._fd is None and self._path is not None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        if self._fd is None:
            return
        deadline, pause = time.monotonic() + self._timeout, 0.0002
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusy("the store is busy (another process writes)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)


def _private_sqlite_files(url: str) -> None:
    """Make the store's files 0600 (created so, or tightened): they hold wrapped keys and the
    audit trail. SQLite creates its -wal and -shm files with the main file's mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for item in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if item.stat().st_mode & 0o077:
                item.chmod(0o600)


def _disable_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN")  # deferred: a snapshot, no write lock
        return
    # Take the write lock at the start of every other transaction: no lost updates between
    # processes sharing the file, at the cost of serialising writers (fine for embedded use).
    connection.exec_driver_sql("BEGIN IMMEDIATE")
