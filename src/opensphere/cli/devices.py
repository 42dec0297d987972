"""`sphere device …`: manufacture emulated devices, claim them (or bulk identities), list, show,
update."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
import warnings
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from opensphere.api import schemas
from opensphere.cli.common import (
    ProfileOption,
    TenantOption,
    resolve_device_group,
    resolve_tenant,
    signed_in_client,
)
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit, err_console
from opensphere.client import ClientError
from opensphere.device.emulator import CA_CERT_FILE, CA_KEY_FILE, Fleet, create_emulated_device
from opensphere.device.errors import DeviceError
from opensphere.device.packaging import SigningKeyError
from opensphere.factory import ManufacturingError, load_idevid, load_manufacturer_ca
from opensphere.factory.bulk import generate_claimable_identities
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning, RootOfTrustError

COLUMNS = (
    "device_id",
    "device_group_id",
    "enabled",
    "last_attestation_result",
    "last_attestation_at",
)

device_app = typer.Typer(
    help="Devices: manufacture (emulated), claim, list, show, update.", no_args_is_help=True
)
DeviceArgument = Annotated[str, typer.Argument(help="the device ID (128 hex characters)")]
GroupOption = Annotated[
    str | None,
    typer.Option("--device-group", "-g", help="device group GUID or 'Product/Group'"),
]


def _device_folders(paths: list[Path]) -> list[Path]:
    """Device folders as given, or the device folders inside a folder of them."""
    folders: list[Path] = []
    for path in paths:
        if (path / "rot").is_dir():
            folders.append(path)
        else:
            inside = (
                sorted(p for p in path.iterdir() if (p / "rot").is_dir()) if path.is_dir() else []
            )
            if not inside:
                raise CliError(f"{path} is not a device folder and holds none")
            folders.extend(inside)
    return folders


@device_app.command("manufacture")
def device_manufacture(
    out: Annotated[Path, typer.Option("--out", help="folder to put the new device folders in")],
    ca: Annotated[
        Path, typer.Option("--ca", help="folder of 'sphere manufacturer ca create'")
    ] = Path("manufacturer-ca"),
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=10000)] = 1,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Manufacture bootable emulated devices: identity, IDevID, the fleet's OS in both slots.

    The CA folder becomes an emulated fleet: the first time, the vendor signing keys and the
    initial OS release are added next to the CA (see 'sphere os-release register --fleet').
    """
    if not (ca / CA_KEY_FILE).exists():
        raise CliError(
            f"{ca} holds no manufacturer CA: make one with 'sphere manufacturer ca create'"
        )
    now = dt.datetime.now(dt.UTC)
    made: list[dict[str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
        try:
            completed = not Fleet.exists(ca)
            fleet = Fleet.open_or_create(ca, now=now)
            out.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                staging = out / f".new-{uuid.uuid4().hex}"
                device_id = create_emulated_device(staging, fleet, now=now)
                folder = out / device_id[:16]
                staging.rename(folder)
                made.append({"device_id": device_id, "folder": str(folder)})
        except (DeviceError, ManufacturingError, RootOfTrustError, SigningKeyError) as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"{exc.filename or ''}: {exc.strerror or exc}") from exc
    if output == OutputFormat.JSON:
        typer.echo(json.dumps(made, indent=2))
        return
    if completed:
        console.print(f"added the vendor signing keys and the initial OS release to {ca}")
    for item in made:
        console.print(f"{item['folder']}  {item['device_id']}", highlight=False)
    console.print(f"{len(made)} emulated device(s) manufactured (emulated root of trust)")


def _claim_for(folder: Path, tenant_id: uuid.UUID) -> schemas.DeviceClaim:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            rot = EmulatedRootOfTrust.open(folder)
        idevid = load_idevid(folder).public_bytes(serialization.Encoding.PEM).decode()
    except (RootOfTrustError, OSError, ValueError) as exc:
        raise CliError(f"{folder}: {exc}") from exc
    statement = ClaimStatement(
        device_id=rot.device_id, tenant_id=tenant_id, issued_at=int(time.time())
    )
    signed = encode_claim_statement(statement, rot.sign)
    return schemas.DeviceClaim(
        claim_statement=base64.urlsafe_b64encode(signed).decode(), idevid=idevid
    )


@device_app.command("claim")
def device_claim(
    folders: Annotated[
        list[Path], typer.Argument(help="device folders, or folders holding device folders")
    ],
    device_group: GroupOption = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Claim devices into the tenant (permanent), in one call: each device signs its consent."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group) if device_group else None
        claims = [_claim_for(folder, tenant_id) for folder in _device_folders(folders)]
        emit(client.claim_devices(tenant_id, claims, group_id), output, COLUMNS)


@device_app.command("bulk-claim")
def device_bulk_claim(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="how many devices")],
    ca: Annotated[
        Path, typer.Option("--ca", help="folder of 'sphere manufacturer ca create'")
    ] = Path("manufacturer-ca"),
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=1000, help="devices per claim request")
    ] = 1000,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="processes making identities")
    ] = None,
    device_group: GroupOption = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Make COUNT claimable identities and claim them, with no device folders (registry tests).

    Each has its own identity key, an IDevID from the CA and a signed claim statement, made
    in parallel processes and sent in batches; the keys are then thrown away, so these
    devices can never attest. Each batch is claimed whole or not at all.
    """
    try:
        ca_key, ca_cert = load_manufacturer_ca(
            key_path=ca / CA_KEY_FILE, cert_path=ca / CA_CERT_FILE
        )
    except ManufacturingError as exc:
        raise CliError(f"{exc}; make one with 'sphere manufacturer ca create'") from exc
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group) if device_group else None
        started = time.monotonic()
        claimed = 0
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
        ) as progress:
            task = progress.add_task("claiming", total=count)
            batches = generate_claimable_identities(
                ca_key, ca_cert, tenant_id, count=count, batch=batch, workers=workers
            )
            for identities in batches:
                claims = [
                    schemas.DeviceClaim(
                        claim_statement=base64.urlsafe_b64encode(item.claim_statement).decode(),
                        idevid=item.idevid_pem.decode(),
                    )
                    for item in identities
                ]
                try:
                    client.claim_devices(tenant_id, claims, group_id)
                except ClientError:
                    err_console.print(f"{claimed} of {count} devices were claimed before this")
                    raise
                claimed += len(claims)
                progress.update(task, advance=len(claims))
    elapsed = time.monotonic() - started
    console.print(
        f"{claimed} devices claimed in {elapsed:.1f} s ({claimed / elapsed:.0f}/s)",
        highlight=False,
    )


@device_app.command("list")
def device_list(
    device_group: GroupOption = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="only enabled or disabled ones")
    ] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's devices."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group) if device_group else None
        emit(
            list(client.devices(tenant_id, device_group_id=group_id, enabled=enabled)),
            output,
            COLUMNS,
        )


@device_app.command("show")
def device_show(
    device_id: DeviceArgument,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A device, with its last attestation's time and result."""
    with signed_in_client(profile) as client:
        emit(client.device(resolve_tenant(client, tenant, profile), device_id), output, COLUMNS)


@device_app.command("update")
def device_update(
    device_id: DeviceArgument,
    device_group: GroupOption = None,
    enabled: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="a disabled device gets no certificate"),
    ] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Move a device to a device group, or enable or disable it (Contributor)."""
    if device_group is None and enabled is None:
        raise CliError("nothing to change: give --device-group, --enable or --disable")
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = resolve_device_group(client, tenant_id, device_group) if device_group else None
        body = schemas.DeviceUpdate(device_group_id=group_id, enabled=enabled)
        emit(client.update_device(tenant_id, device_id, body), output, COLUMNS)


def capability_download(
    device_id: Annotated[str, typer.Option("--device-id", help="the device's ID")],
    output_file: Annotated[Path, typer.Option("--output", help="file to write")],
    capability_type: Annotated[
        list[str],
        typer.Option("--type", help="appDevelopment and/or fieldServicing (repeat the option)"),
    ],
    expires_in_days: Annotated[int | None, typer.Option(help="valid this many days")] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Get a capability file for one device, signed by the service (Contributor)."""
    with signed_in_client(profile) as client:
        data = client.download_capability(
            resolve_tenant(client, tenant, profile),
            device_id,
            capability_type,
            expires_in_days=expires_in_days,
        )
    output_file.write_bytes(data)
    console.print(
        f"capability file written to {output_file}; apply it with "
        "'sphere device capability update --file … --device DIR'",
        highlight=False,
    )
