"""Service settings: where data lives and which database to use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opensphere.service.storage.db import sqlite_url


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    data_dir: Path
    database_url: str

    @classmethod
    def from_options(cls, data_dir: Path, database_url: str | None = None) -> ServiceSettings:
        """The embedded default is SQLite in the data folder; a URL selects PostgreSQL."""
        data_dir = data_dir.expanduser().resolve()
        return cls(data_dir=data_dir, database_url=database_url or sqlite_url(data_dir))

    @property
    def operator_token_file(self) -> Path:
        return self.data_dir / "operator-token"

    @property
    def key_folder(self) -> Path:
        return self.data_dir / "keys"

    @property
    def blob_folder(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def is_embedded(self) -> bool:
        return self.database_url.startswith("sqlite")
