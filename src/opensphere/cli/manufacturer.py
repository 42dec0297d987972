"""`sphere manufacturer ca …`: make a manufacturer CA, and let the service trust it."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated

import typer

from opensphere.cli.common import ProfileOption, signed_in_client
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.device.emulator import CA_CERT_FILE, CA_KEY_FILE
from opensphere.factory import ManufacturingError, create_manufacturer_ca, save_manufacturer_ca

COLUMNS = ("id", "name", "thumbprint", "not_after")

manufacturer_app = typer.Typer(help="Manufacturers: their CAs.", no_args_is_help=True)
ca_app = typer.Typer(
    help="Manufacturer CAs: create one (offline), register it with the service (operator).",
    no_args_is_help=True,
)
manufacturer_app.add_typer(ca_app, name="ca")


@ca_app.command("create")
def ca_create(
    out: Annotated[Path, typer.Option("--out", help="folder for the CA key and certificate")],
    name: Annotated[str, typer.Option("--name", help="the CA's common name")] = (
        "OpenSphere Manufacturer CA"
    ),
    days: Annotated[int, typer.Option(help="validity in days", min=1)] = 3650,
) -> None:
    """Create a manufacturer CA in a folder (key 0600); no service involved."""
    out.mkdir(parents=True, exist_ok=True)
    key, certificate = create_manufacturer_ca(name, now=dt.datetime.now(dt.UTC), validity_days=days)
    try:
        save_manufacturer_ca(
            key, certificate, key_path=out / CA_KEY_FILE, cert_path=out / CA_CERT_FILE
        )
    except ManufacturingError as exc:
        raise CliError(str(exc)) from exc
    console.print(f"manufacturer CA written to {out / CA_CERT_FILE} (key {out / CA_KEY_FILE})")


@ca_app.command("register")
def ca_register(
    certificate: Annotated[Path, typer.Argument(help="the CA certificate, PEM")],
    name: Annotated[str, typer.Option("--name", "-n", help="a name for it, 1-50 chars")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Trust a manufacturer CA: its devices become genuine (operator only)."""
    try:
        pem = certificate.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {certificate}: {exc.strerror}") from exc
    with signed_in_client(profile) as client:
        emit(client.register_manufacturer_ca(name, pem), output, COLUMNS)


@ca_app.command("list")
def ca_list(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """The manufacturer CAs the service trusts (operator only)."""
    with signed_in_client(profile) as client:
        emit(list(client.manufacturer_cas()), output, COLUMNS)


@ca_app.command("delete")
def ca_delete(
    ca_id: Annotated[uuid.UUID, typer.Argument(help="the manufacturer CA's GUID")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Stop trusting a manufacturer CA for new claims (operator only)."""
    with signed_in_client(profile) as client:
        emit(client.delete_manufacturer_ca(ca_id), output, COLUMNS)
