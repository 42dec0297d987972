"""Hot-path statements on a raw DBAPI connection store and return what Core would."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import Table, bindparam, delete, insert, select

from opensphere.service.hot_statements import (
    HotStatement,
    HotTransaction,
    HotTransactions,
    Outcome,
    hot_transaction,
)
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import Tenant, TpmActivation

# A table with columns of the types the hot paths bind: bytes, text, UUID, timestamps.
ROWS = cast(Table, TpmActivation.__table__)
STORE = HotStatement(
    insert(ROWS).values(
        id=bindparam("p_id"),
        secret_sha256=bindparam("p_nonce"),
        device_id=bindparam("p_device_id"),
        tenant_id=bindparam("p_tenant_id"),
        expires_at=bindparam("p_expires_at"),
        ak_public=b"fixed",
        ek_certificate=b"fixed",
        manufacturer_ca_thumbprint="0" * 64,
    )
)
TAKE = HotStatement(
    delete(ROWS)
    .where(ROWS.c.secret_sha256 == bindparam("p_nonce"))
    .returning(ROWS.c.device_id, ROWS.c.tenant_id, ROWS.c.expires_at)
)


@pytest.fixture
def tenant_id(storage: Storage) -> uuid.UUID:
    tenant = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with storage.engine.begin() as connection:
        connection.execute(
            insert(Tenant).values(
                id=tenant, name="t", name_key=tenant.hex, created_at=now, updated_at=now
            )
        )
    return tenant


def test_values_round_trip_with_their_column_types(storage: Storage, tenant_id: uuid.UUID) -> None:
    expires_at = dt.datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC)
    values = {
        "p_id": uuid.uuid4(),
        "p_nonce": b"n" * 32,
        "p_device_id": "ab" * 64,
        "p_tenant_id": tenant_id,
    }
    with hot_transaction(storage.engine) as transaction:
        stored = transaction.execute(STORE, {**values, "p_expires_at": expires_at})
    assert stored.rowcount == 1
    with storage.engine.connect() as connection:
        row = connection.execute(select(ROWS)).one()
    assert (row.device_id, row.tenant_id, row.expires_at) == ("ab" * 64, tenant_id, expires_at)
    assert (row.ak_public, row.manufacturer_ca_thumbprint) == (b"fixed", "0" * 64)
    with hot_transaction(storage.engine) as transaction:
        taken = transaction.execute(TAKE, {"p_nonce": b"n" * 32}).rows
        again = transaction.execute(TAKE, {"p_nonce": b"n" * 32}).rows
    assert taken == [("ab" * 64, tenant_id, expires_at)]
    assert again == []


def test_a_raising_block_rolls_back(storage: Storage, tenant_id: uuid.UUID) -> None:
    values = {
        "p_id": uuid.uuid4(),
        "p_nonce": b"m" * 32,
        "p_device_id": "cd" * 64,
        "p_tenant_id": tenant_id,
        "p_expires_at": dt.datetime.now(dt.UTC),
    }

    def refuse_after_storing() -> None:
        with hot_transaction(storage.engine) as transaction:
            transaction.execute(STORE, values)
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        refuse_after_storing()
    with storage.engine.connect() as connection:
        assert connection.execute(select(ROWS)).all() == []


def _nonce_values(tenant_id: uuid.UUID, nonce: bytes) -> dict[str, object]:
    return {
        "p_id": uuid.uuid4(),
        "p_nonce": nonce,
        "p_device_id": "ef" * 64,
        "p_tenant_id": tenant_id,
        "p_expires_at": dt.datetime.now(dt.UTC),
    }


@contextlib.contextmanager
def _write_lock_held(storage: Storage, seconds: float = 0.3) -> Iterator[None]:
    """Another connection holds SQLite's write lock for `seconds`, then commits."""
    holder = storage.engine.raw_connection()
    holder.cursor().execute("BEGIN IMMEDIATE")
    threading.Timer(seconds, holder.commit).start()
    try:
        yield
    finally:
        holder.close()


def _stored_nonces(storage: Storage) -> list[bytes]:
    with storage.engine.connect() as connection:
        return sorted(connection.execute(select(ROWS.c.secret_sha256)).scalars())


def test_hot_transactions_run_on_the_loop_when_the_database_is_free(
    storage: Storage, tenant_id: uuid.UUID
) -> None:
    hot = HotTransactions(storage.engine)

    def store(transaction: HotTransaction) -> int:
        transaction.execute(STORE, _nonce_values(tenant_id, b"a" * 32))
        return threading.get_ident()

    async def run() -> tuple[int, int]:
        return threading.get_ident(), await hot.run(store)

    try:
        loop_thread, worker = asyncio.run(run())
    finally:
        hot.close()
    assert _stored_nonces(storage) == [b"a" * 32]
    on_loop = storage.engine.dialect.name == "sqlite"  # PostgreSQL: always the thread pool
    assert (worker == loop_thread) is on_loop


@pytest.mark.parametrize("engine_name", ["sqlite"])  # SQLite's database-wide write lock
def test_a_hot_transaction_waits_in_the_pool_while_another_writer_holds_sqlite(
    storage: Storage, tenant_id: uuid.UUID
) -> None:
    hot = HotTransactions(storage.engine)
    threads: list[int] = []

    def store(transaction: HotTransaction) -> None:
        threads.append(threading.get_ident())
        transaction.execute(STORE, _nonce_values(tenant_id, b"b" * 32))

    async def run() -> int:
        await hot.run(store)
        return threading.get_ident()

    with _write_lock_held(storage):
        try:
            loop_thread = asyncio.run(run())
        finally:
            hot.close()
    assert _stored_nonces(storage) == [b"b" * 32]
    assert threads[-1] != loop_thread  # the loop did not wait: a worker thread did


def test_a_refused_hot_transaction_leaves_nothing_and_the_next_one_works(
    storage: Storage, tenant_id: uuid.UUID
) -> None:
    hot = HotTransactions(storage.engine)

    def refuse_after_storing(transaction: HotTransaction) -> None:
        transaction.execute(STORE, _nonce_values(tenant_id, b"c" * 32))
        raise RuntimeError("refused")

    def store(transaction: HotTransaction) -> None:
        transaction.execute(STORE, _nonce_values(tenant_id, b"d" * 32))

    async def run() -> None:
        with pytest.raises(RuntimeError):
            await hot.run(refuse_after_storing)
        await hot.run(store)

    try:
        asyncio.run(run())
    finally:
        hot.close()
    assert _stored_nonces(storage) == [b"d" * 32]


def test_a_lone_statement_is_committed_and_returns_its_rows(
    storage: Storage, tenant_id: uuid.UUID
) -> None:
    hot = HotTransactions(storage.engine)
    values = _nonce_values(tenant_id, b"e" * 32)

    async def run() -> tuple[Outcome, Outcome, Outcome]:
        stored = await hot.execute(STORE, values)
        taken = await hot.execute(TAKE, {"p_nonce": b"e" * 32})
        return stored, taken, await hot.execute(TAKE, {"p_nonce": b"e" * 32})

    try:
        stored, taken, again = asyncio.run(run())
    finally:
        hot.close()
    assert stored.rowcount == 1
    assert taken.rows == [("ef" * 64, tenant_id, values["p_expires_at"])]
    assert (again.rows, again.rowcount) == ([], 0)
    assert _stored_nonces(storage) == []


@pytest.mark.parametrize("engine_name", ["sqlite"])  # SQLite's database-wide write lock
def test_a_lone_statement_waits_in_the_pool_while_another_writer_holds_sqlite(
    storage: Storage, tenant_id: uuid.UUID
) -> None:
    hot = HotTransactions(storage.engine)

    async def run() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await hot.execute(STORE, _nonce_values(tenant_id, b"g" * 32))
        ticker.cancel()
        return ticks

    with _write_lock_held(storage):
        try:
            ticks = asyncio.run(run())
        finally:
            hot.close()
    assert _stored_nonces(storage) == [b"g" * 32]
    assert ticks >= 10  # the loop went on while the statement waited for the lock
