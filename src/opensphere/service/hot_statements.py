"""Core statements compiled once per dialect and run on a pooled DBAPI connection.

On the attestation hot path, SQLAlchemy's per-execution machinery (execution context,
events, result objects, the Connection and its transaction) cost about ten times SQLite's
own work for the same statements. These run the same Core statements, compiled by
SQLAlchemy for the engine's dialect, with SQLAlchemy's own bind and result processors for
each column type, straight on a connection checked out of the engine's pool (so
`pool_pre_ping` and the SQLite connect-time pragmas still apply).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]


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


def _compile(statement: UpdateBase, dialect: Dialect) -> _Compiled:
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
    """A Core DML statement (optionally with RETURNING), compiled at first use per dialect."""

    statement: UpdateBase
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
