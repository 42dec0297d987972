"""`sphere server`: upgrade the schema, make sure there is an operator, serve."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DATA_DIR = Path("sphere-data")


def server(
    data_dir: Annotated[
        Path, typer.Option(help="folder for the database, blobs and the operator token")
    ] = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8443,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="OPENSPHERE_DATABASE_URL",
            help="postgresql://… to scale out (default: SQLite in the data folder)",
        ),
    ] = None,
    retention_every: Annotated[
        int, typer.Option(min=1, help="seconds between runs of the error-report retention job")
    ] = 3600,
    key_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            envvar="OPENSPHERE_KEY_PASSPHRASE_FILE",
            help="file holding the passphrase that encrypts the CA keys in DATA_DIR/keys",
        ),
    ] = None,
) -> None:
    """Run the security service."""
    import uvicorn  # the service's imports are heavy; other commands don't pay for them

    from opensphere.service.app import create_app
    from opensphere.service.bootstrap import prepare_storage
    from opensphere.service.fast_lane import server_config
    from opensphere.service.keystore import FileKeyStore
    from opensphere.service.settings import ServiceSettings
    from opensphere.service.storage.db import Storage
    from opensphere.service.updates.blobs import FolderBlobStore

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ServiceSettings.from_options(data_dir, database_url)
    prepare_storage(settings)
    passphrase = None
    if key_passphrase_file is not None:
        passphrase = key_passphrase_file.read_bytes().strip()
    else:
        logging.getLogger("opensphere").warning(
            "CA keys in %s are not encrypted: pass --key-passphrase-file", settings.key_folder
        )
    keys = FileKeyStore(settings.key_folder, passphrase=passphrase)
    app = create_app(
        storage=Storage.connect(settings.database_url),
        keys=keys,
        blobs=FolderBlobStore(settings.blob_folder),
        retention_every=dt.timedelta(seconds=retention_every),
    )
    config = server_config(app, host=host, port=port, log_level="info", access_log=False)
    uvicorn.Server(config).run()  # exits with status 3, having logged why, if it cannot start
