"""Shared fixtures: the real storage engines (SQLite and a throwaway PostgreSQL) and the app."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from opensphere.service.app import create_app
from opensphere.service.bootstrap import ensure_operator
from opensphere.service.keystore import FileKeyStore
from opensphere.service.storage.db import Storage, sqlite_url
from opensphere.service.storage.migrate import upgrade_schema
from opensphere.service.storage.models import Base
from opensphere.service.updates.blobs import FolderBlobStore
from support.pgserver import PostgresServer

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The runner's server (OPENSPHERE_TEST_POSTGRES_URL), or one of our own for this session."""
    url = os.environ.get("OPENSPHERE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="opensphere-pg-")))
    try:
        yield server.start()
    finally:
        server.stop()


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> str:
    """A migrated database for this worker; each test empties it again."""
    name = f"opensphere_test_{_worker_suffix()}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    storage = Storage.connect(url)
    upgrade_schema(storage.engine)
    storage.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sqlite-template")
    storage = Storage.connect(sqlite_url(folder))
    upgrade_schema(storage.engine)
    storage.dispose()
    return folder / "opensphere.db"


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(engine_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A migrated, empty database on the engine under test."""
    if engine_name == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "opensphere.db")
        store = Storage.connect(sqlite_url(tmp_path))
    else:
        url: str = request.getfixturevalue("postgres_template")
        store = Storage.connect(url)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with store.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    yield store
    store.dispose()


class FixedClock:
    """A clock the test moves by hand, so expiry is tested without sleeping."""

    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, delta: dt.timedelta) -> None:
        self.current += delta


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@dataclass
class Api:
    """The ASGI app in-process, plus the operator's token."""

    client: TestClient
    operator_token: str

    def as_(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def operator(self) -> dict[str, str]:
        return self.as_(self.operator_token)


@pytest.fixture
def api(storage: Storage, clock: FixedClock, tmp_path: Path) -> Iterator[Api]:
    token_file = tmp_path / "operator-token"
    ensure_operator(storage, token_file, now=clock.now())
    app = create_app(
        storage=storage,
        keys=FileKeyStore(tmp_path / "keys"),
        blobs=FolderBlobStore(tmp_path / "blobs"),
        clock=clock,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client=client, operator_token=token_file.read_text().strip())


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"
