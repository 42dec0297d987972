"""`sphere operator …`: what the service operator does on the service's own machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.cli.errors import CliError
from opensphere.cli.output import console

operator_app = typer.Typer(
    help="Service operator tasks on the service's machine.", no_args_is_help=True
)


@operator_app.command("import-capability-key")
def import_capability_key(
    key_file: Annotated[
        Path, typer.Option(help="the fleet's capability-signing-key.pem", dir_okay=False)
    ],
    data_dir: Annotated[Path, typer.Option(help="the service's data folder")] = Path("sphere-data"),
    key_passphrase_file: Annotated[
        Path | None, typer.Option(help="passphrase file of the service's key store, if any")
    ] = None,
) -> None:
    """Let the service sign capability files that the fleet's devices trust (once)."""
    from opensphere.service.capabilities import CAPABILITY_KEY_ID
    from opensphere.service.keystore import FileKeyStore, KeyStoreError
    from opensphere.service.settings import ServiceSettings

    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"cannot read a private key from {key_file}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CliError(f"{key_file} is not an ECDSA key")
    passphrase = key_passphrase_file.read_bytes().strip() if key_passphrase_file else None
    settings = ServiceSettings.from_options(data_dir)
    try:
        FileKeyStore(settings.key_folder, passphrase=passphrase).import_key(CAPABILITY_KEY_ID, key)
    except KeyStoreError as exc:
        raise CliError(str(exc)) from exc
    console.print(f"capability signing key imported into {settings.key_folder}", highlight=False)
