"""`sphere ca-certificate …`: the tenant CA certificates, for third-party clouds to trust."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from opensphere.api.schemas import CaCertificateStatus, CertificateFormat
from opensphere.cli.common import ProfileOption, TenantOption, resolve_tenant, signed_in_client
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.client import Client

COLUMNS = ("id", "generation", "status", "thumbprint", "active_from", "not_after")

ca_app = typer.Typer(
    help="Tenant CA certificates: list, download, download-chain, download-proof.",
    no_args_is_help=True,
)
CaArgument = Annotated[
    uuid.UUID | None, typer.Argument(help="the CA certificate's GUID (default: the active one)")
]
OutOption = Annotated[Path, typer.Option("--output-file", "-f", help="where to write it")]
FormatOption = Annotated[CertificateFormat, typer.Option("--format", help="pem or der")]


def _pick(client: Client, tenant_id: uuid.UUID, ca_id: uuid.UUID | None) -> uuid.UUID:
    if ca_id is not None:
        return ca_id
    for ca in client.ca_certificates(tenant_id):
        if ca.status == CaCertificateStatus.ACTIVE:
            return ca.id
    raise CliError("the tenant has no active CA certificate; see 'sphere ca-certificate list'")


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    console.print(f"wrote {path} ({len(data)} bytes)")


@ca_app.command("list")
def ca_list(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Every generation of the tenant's CA: Active, Inactive (successor or retired), Expired."""
    with signed_in_client(profile) as client:
        emit(list(client.ca_certificates(resolve_tenant(client, tenant, profile))), output, COLUMNS)


@ca_app.command("download")
def ca_download(
    output_file: OutOption,
    ca_id: CaArgument = None,
    output_format: FormatOption = CertificateFormat.PEM,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """The CA certificate a relying party trusts to accept this tenant's devices."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        data = client.download_ca_certificate(
            tenant_id, _pick(client, tenant_id, ca_id), output_format
        )
    _write(output_file, data)


@ca_app.command("download-chain")
def ca_download_chain(
    output_file: OutOption,
    ca_id: CaArgument = None,
    output_format: FormatOption = CertificateFormat.DER,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """PKCS#7 (.p7b): the tenant CA signed by the service root, and the root."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        data = client.download_ca_chain(tenant_id, _pick(client, tenant_id, ca_id), output_format)
    _write(output_file, data)


@ca_app.command("download-proof")
def ca_download_proof(
    output_file: OutOption,
    verification_code: Annotated[
        str, typer.Option("--verification-code", help="the code the relying party gave you")
    ],
    ca_id: CaArgument = None,
    output_format: FormatOption = CertificateFormat.DER,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """A proof-of-possession certificate (CN = the verification code), signed by the CA."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        data = client.download_proof(
            tenant_id, _pick(client, tenant_id, ca_id), verification_code, output_format
        )
    _write(output_file, data)
