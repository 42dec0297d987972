"""Alembic, driven from code: `sphere server` upgrades the schema before it serves."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from opensphere.service.storage.db import migration_lock

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade_schema(engine: Engine, *, lock_file: Path | None = None) -> None:
    with migration_lock(engine, lock_file):
        command.upgrade(alembic_config(engine), "head")
