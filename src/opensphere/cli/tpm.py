"""`sphere tpm-manufacturer`: the TPM manufacturer (EK) CAs whose TPMs are genuine."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from opensphere.cli.common import ProfileOption, signed_in_client
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, emit

tpm_manufacturer_app = typer.Typer(
    help="TPM manufacturers: the EK CAs a TPM's endorsement certificate must chain to.",
    no_args_is_help=True,
)
COLUMNS = ("id", "name", "subject", "not_after", "thumbprint")


@tpm_manufacturer_app.command("register")
def register(
    certificate: Annotated[Path, typer.Argument(help="the EK CA certificate, PEM")],
    name: Annotated[str, typer.Option("--name", "-n", help="a name for it, 1-50 chars")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Trust a TPM manufacturer's EK CA: TPMs it certified can be claimed (operator only)."""
    try:
        pem = certificate.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {certificate}: {exc.strerror}") from exc
    with signed_in_client(profile) as client:
        emit(client.register_tpm_manufacturer_ca(name, pem), output, COLUMNS)


@tpm_manufacturer_app.command("list")
def list_cas(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """The TPM manufacturer CAs the service trusts (operator only)."""
    with signed_in_client(profile) as client:
        emit(list(client.tpm_manufacturer_cas()), output, COLUMNS)


@tpm_manufacturer_app.command("delete")
def delete(
    ca_id: Annotated[uuid.UUID, typer.Argument(help="the TPM manufacturer CA's GUID")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Stop trusting a TPM manufacturer CA for new claims (operator only)."""
    with signed_in_client(profile) as client:
        emit(client.delete_tpm_manufacturer_ca(ca_id), output, COLUMNS)
