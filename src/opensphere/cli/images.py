"""`sphere image …`: upload packages (the service production-signs them), list, show, download."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TransferSpeedColumn,
)

from opensphere.cli.common import ProfileOption, TenantOption, resolve_tenant, signed_in_client
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit, err_console

COLUMNS: Final = ("image_id", "name", "version", "image_type", "component_id", "uploaded_at")
_CHUNK: Final = 1 << 16

image_app = typer.Typer(
    help="Images: upload (production-signed by the service), list, show, download.",
    no_args_is_help=True,
)
ImageArgument = Annotated[uuid.UUID, typer.Argument(help="the image ID")]


def _chunks(path: Path, progress: Progress, task: TaskID) -> Iterator[bytes]:
    """The file in chunks for a streaming upload, moving the progress bar as they go."""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            progress.advance(task, len(chunk))
            yield chunk


@image_app.command("add")
def image_add(
    file: Annotated[Path, typer.Argument(help="the image package to upload", exists=True)],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Upload an image package (Contributor); the service checks it and production-signs it."""
    size = file.stat().st_size
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"uploading {file.name}", total=size)
            image, created = client.upload_image(tenant_id, _chunks(file, progress, task), size)
    if not created and output == OutputFormat.TABLE:
        console.print("the same package was uploaded before; this is the stored image")
    emit(image, output, COLUMNS)


@image_app.command("list")
def image_list(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's images."""
    with signed_in_client(profile) as client:
        emit(list(client.images(resolve_tenant(client, tenant, profile))), output, COLUMNS)


@image_app.command("show")
def image_show(
    image_id: ImageArgument,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """An image: identity, version, hash and signer."""
    with signed_in_client(profile) as client:
        emit(client.image(resolve_tenant(client, tenant, profile), image_id), output, COLUMNS)


@image_app.command("download")
def image_download(
    image_id: ImageArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="file to write the package to")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Download the production-signed package, as devices get it."""
    if out.exists():
        raise CliError(f"{out} exists; choose another file")
    partial = out.with_name(out.name + ".part")
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        try:
            with partial.open("wb") as handle:
                written = client.download_image(tenant_id, image_id, handle)
            partial.rename(out)
        finally:
            partial.unlink(missing_ok=True)
    console.print(f"{out}: {written} bytes", highlight=False)
