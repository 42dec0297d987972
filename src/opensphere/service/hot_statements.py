"""Core statements compiled once per dialect and run on a pooled DBAPI connection.

On the attestation hot path, SQLAlchemy's per-execution machinery (execution context,
events, result objects, the Connection and its transaction) cost about ten times SQLite's
own work for the same statements. These run the same Core statements, compiled by
SQLAlchemy for the engine's dialect, with SQLAlchemy's own bind and result processors for
each column type, straight on a connection checked out of the engine's pool (so
`pool_pre_ping` and the SQLite connect-time pragmas still apply).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, PoolProxiedConnection, Select
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None
    """Parameter names in order for a positional paramstyle; None for a named one."""
    binds: tuple[tuple[str, bool, Any, Processor | None], ...]
    """Name, whether the caller gives it, its fixed value if not, the type's processor."""
    results: tuple[Processor | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        processed = {}
        for name, required, fixed, process in self.binds:
            value = values[name] if required else fixed
            processed[name] = value if process is None else process(value)
        if self.positions is None:
            return processed
        return tuple(processed[name] for name in self.positions)

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for value, process in zip(raw, self.results, strict=True)
        )


def _compile(statement: UpdateBase | Select[Any], dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    return _Compiled(
        sql=compiled.string,
        positions=tuple(compiled.positiontup or ()) if compiled.positional else None,
        binds=tuple(
            (
                name,
                bind.required,
                bind.value,
                bind.type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name, bind in compiled.binds.items()
        ),
        results=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.exported_columns
        ),
    )


@dataclass(slots=True)
class HotStatement:
    """A Core DML statement (optionally with RETURNING) or query, compiled at first use per
    dialect."""

    statement: UpdateBase | Select[Any]
    _compiled: dict[str, _Compiled] = field(default_factory=dict)

    def compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return compiled


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a statement did: the rows it returned and the rows it changed."""

    rows: list[tuple[Any, ...]]
    rowcount: int


class HotTransaction:
    """Runs `HotStatement`s in one transaction: on a raw DBAPI cursor, or a Core connection.

    The Core form (`on_connection`) is for callers that share the transaction with code
    written against a SQLAlchemy `Connection`.
    """

    def __init__(self, dialect: Dialect, *, cursor: Any, connection: Connection | None) -> None:
        self._dialect = dialect
        self._cursor = cursor
        self._connection = connection

    @classmethod
    def on_connection(cls, connection: Connection) -> HotTransaction:
        return cls(connection.dialect, cursor=None, connection=connection)

    def core_connection(self) -> Connection:
        """The Core connection of a transaction made by `on_connection`."""
        if self._connection is None:
            raise RuntimeError("this transaction runs on a raw DBAPI cursor, not a Connection")
        return self._connection

    def execute(self, statement: HotStatement, values: Mapping[str, Any]) -> Outcome:
        if self._connection is not None:
            result = self._connection.execute(statement.statement, dict(values))
            rows = [tuple(row) for row in result.all()] if result.returns_rows else []
            return Outcome(rows, result.rowcount)
        compiled = statement.compiled(self._dialect)
        cursor = self._cursor
        cursor.execute(compiled.sql, compiled.parameters(values))
        rows = [compiled.row(raw) for raw in cursor.fetchall()] if compiled.results else []
        return Outcome(rows, cursor.rowcount)


@contextlib.contextmanager
def hot_transaction(engine: Engine) -> Iterator[HotTransaction]:
    """A write transaction on a pooled DBAPI connection (`BEGIN IMMEDIATE` on SQLite).

    Commits when the block ends, rolls back if it raises. The SQLite connections of
    `storage.db` are in autocommit mode, so the transaction is begun explicitly here.
    """
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        try:
            yield HotTransaction(engine.dialect, cursor=cursor, connection=None)
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        connection.close()


class HotTransactions:
    """Runs hot write transactions from async handlers without making the event loop wait.

    On SQLite a transaction runs right on the event loop, on a connection of its own that
    never waits for the write lock (`busy_timeout` 0): local statements cost less than the
    hop to a worker thread and back. When another connection holds the lock, the work goes
    to a worker thread, where waiting is harmless: the holder may be a request in a worker
    thread that needs the loop to finish. On PostgreSQL every transaction goes to a worker
    thread (its statements are network round trips, and may wait for row locks).

    `work` runs synchronously in one transaction and may run twice (a first try refused by a
    busy database is rolled back and retried in a worker thread), so it must not have
    effects outside the database besides values it returns.

    The worker threads are its own (`in_thread`), not anyio's: the device lanes run a
    handler at once, outside any task, up to its first wait (`service.fast_lane`), and
    anyio's `to_thread` needs a current task; the loop's `run_in_executor` does not.
    """

    THREADS = 8
    """Worker threads: as many as the engine's pool keeps connections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._threads: ThreadPoolExecutor | None = None
        # One per event loop (tests run several): a connection is in one transaction at a time.
        # Held with the pool's wrapper, so that nothing but `close` or the loop's end closes it.
        self._loop_connections: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, PoolProxiedConnection
        ] = weakref.WeakKeyDictionary()

    async def run(self, work: Callable[[HotTransaction], T]) -> T:
        if self.engine.dialect.name == "sqlite":
            try:
                return _run_sqlite(self._loop_connection(), self.engine.dialect, work)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
        return await self.in_thread(self.run_in_pool, work)

    async def execute(self, statement: HotStatement, values: Mapping[str, Any]) -> Outcome:
        """One statement in a transaction of its own, the same way.

        On SQLite the loop's connection runs it in autocommit mode, which makes a single
        statement atomic without `BEGIN` and `COMMIT`; a WAL reader waits for nobody but in
        rare moments (recovery after a crash), and then it runs in the pool, as a writer
        that finds the write lock taken does.
        """
        if self.engine.dialect.name == "sqlite":
            cursor = self._loop_connection().cursor()
            try:
                return HotTransaction(self.engine.dialect, cursor=cursor, connection=None).execute(
                    statement, values
                )
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise

        def alone(transaction: HotTransaction) -> Outcome:
            return transaction.execute(statement, values)

        return await self.in_thread(self.run_in_pool, alone)

    async def in_thread(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` in one of the worker threads."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.THREADS, thread_name_prefix="hot-statements")
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(function, *args, **kwargs)
        )

    def run_in_pool(self, work: Callable[[HotTransaction], T]) -> T:
        with hot_transaction(self.engine) as transaction:
            return work(transaction)

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None
        for pooled in list(self._loop_connections.values()):
            pooled.close()
        self._loop_connections.clear()

    def _loop_connection(self) -> Any:
        loop = asyncio.get_running_loop()
        pooled = self._loop_connections.get(loop)
        if pooled is None:
            pooled = self._loop_connections[loop] = self.engine.raw_connection()
            pooled.detach()  # the loop's for good, with its own busy timeout
            pooled.cursor().execute("PRAGMA busy_timeout=0")
        return pooled.dbapi_connection


def _run_sqlite(connection: Any, dialect: Dialect, work: Callable[[HotTransaction], T]) -> T:
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        result = work(HotTransaction(dialect, cursor=cursor, connection=None))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return result


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, with any extended code."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )
