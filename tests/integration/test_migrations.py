"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from opensphere.service.storage.db import Storage, sqlite_url
from opensphere.service.storage.migrate import upgrade_schema
from opensphere.service.storage.models import Base


def test_migrations_match_models(storage: Storage) -> None:
    with storage.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_upgrade_is_idempotent(storage: Storage) -> None:
    upgrade_schema(storage.engine)
    with storage.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version is not None
    assert "products" in inspect(storage.engine).get_table_names()


def test_concurrent_first_starts_migrate_once(tmp_path: Path) -> None:
    """Several processes starting together on one fresh database serialise the upgrade."""
    lock = tmp_path / ".migrate.lock"
    errors: list[BaseException] = []

    def start() -> None:
        storage = Storage.connect(sqlite_url(tmp_path))
        try:
            upgrade_schema(storage.engine, lock_file=lock)
        except BaseException as exc:
            errors.append(exc)
        finally:
            storage.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    storage = Storage.connect(sqlite_url(tmp_path))
    with storage.engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()
    storage.dispose()
    assert rows == 1


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    storage = Storage.connect(sqlite_url(tmp_path))
    with storage.engine.connect() as connection:
        mode = connection.execute(text("PRAGMA journal_mode")).scalar()
    storage.dispose()
    assert mode == "wal"


def test_list_queries_use_indexes_not_scans(tmp_path: Path) -> None:
    """Keyset pages walk the (tenant_id, id) indexes; no table scan, no sort, no offset."""
    storage = Storage.connect(sqlite_url(tmp_path))
    upgrade_schema(storage.engine)
    queries = {
        "products": "SELECT * FROM products WHERE tenant_id = 'x' AND id > 'y' "
        "ORDER BY id LIMIT 101",
        "device_groups": "SELECT * FROM device_groups WHERE tenant_id = 'x' AND id > 'y' "
        "ORDER BY id LIMIT 101",
        "device_groups by product": "SELECT * FROM device_groups WHERE product_id = 'x' "
        "AND tenant_id = 'x' AND id > 'y' ORDER BY id LIMIT 101",
        "audit_events": "SELECT * FROM audit_events WHERE tenant_id = 'x' AND id < 'y' "
        "ORDER BY id DESC LIMIT 101",
    }
    with storage.engine.connect() as connection:
        for name, query in queries.items():
            plan = " | ".join(
                str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))
            )
            assert "USING INDEX" in plan, (name, plan)
            assert "TEMP B-TREE" not in plan, (name, plan)
    storage.dispose()
