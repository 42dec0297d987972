"""Engine and sessions for SQLite (embedded default) and PostgreSQL (scale-out).

SQLite runs in WAL mode; a writing session takes the write lock at BEGIN
(`BEGIN IMMEDIATE`) so that two processes never deadlock upgrading a read
lock, and waits for the lock instead of failing at once.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000
_WRITE_OPTION = "opensphere_write"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'opensphere.db').resolve()}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, pool_size=8
        )
        _configure_sqlite(engine)
        return engine
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise ValueError(
        f"unsupported database URL scheme {url.drivername!r}: use sqlite:/// or postgresql://"
    )


@dataclass(frozen=True, slots=True)
class Storage:
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def connect(cls, database_url: str) -> Storage:
        engine = make_engine(database_url)
        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    def read_session(self) -> Session:
        return self.sessions()

    def write_session(self) -> Session:
        """A session whose transaction takes the write lock up front on SQLite."""
        session = self.sessions()
        session.connection(execution_options={_WRITE_OPTION: True})
        return session

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A Core connection in a write transaction, for hot paths that skip the ORM."""
        with self.engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                yield connection

    def dispose(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def migration_lock(engine: Engine, lock_file: Path | None) -> Iterator[None]:
    """Serialises schema upgrades when several service processes start together."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(7265812)"))
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(7265812)"))
                connection.commit()
        return
    if lock_file is None:
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
