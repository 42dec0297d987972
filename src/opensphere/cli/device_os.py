"""Device OS commands: emulated devices (create, boot), sideloading, installed images, packages.

A thin shell over ``opensphere.device``: parse options, call the library, print. Every
refusal from the library becomes a one-line ``CliError``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console
from opensphere.device.boot import BootResult, boot_device
from opensphere.device.capabilities import apply_capability
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.errors import DeviceError
from opensphere.device.flash import DeviceFlash, write_atomically
from opensphere.device.install import InstalledImage, list_installed, sideload
from opensphere.device.keystore import TrustedKeyStore
from opensphere.device.packaging import (
    SigningKeyError,
    load_signing_key,
    package_application,
    package_board_config,
)
from opensphere.factory.manufacturer import ManufacturingError
from opensphere.formats.errors import FormatError
from opensphere.formats.image_package import describe_package, parse_package, resign_package
from opensphere.rot import EmulatedRootOfTrust, RootOfTrustError

device_os_app = typer.Typer(help="Emulated device OS: create, boot, sideload, images.")
sideload_app = typer.Typer(help="Put apps on a device in development or servicing.")
image_app = typer.Typer(help="Images installed on a device.")
capability_app = typer.Typer(help="The device's capability file (appDevelopment, fieldServicing).")
image_package_app = typer.Typer(help="Build, inspect and sign image packages.")
device_os_app.add_typer(sideload_app, name="sideload")
device_os_app.add_typer(image_app, name="image")
device_os_app.add_typer(capability_app, name="capability")
device_os_app.add_typer(image_package_app, name="image-package")

DeviceOption = Annotated[
    Path, typer.Option("--device", "-d", help="the emulated device's folder", file_okay=False)
]
KeyOption = Annotated[
    Path,
    typer.Option(
        "--key",
        "-k",
        help="P-256 PEM private key; samples/keys/test-signing-key.pem gives a test-signed "
        "package for development devices",
        dir_okay=False,
    ),
]
VersionOption = Annotated[str, typer.Option("--version", help="version label shown to people")]
SecurityVersionOption = Annotated[
    int, typer.Option("--security-version", min=0, help="anti-rollback version")
]


@contextmanager
def _refusals() -> Iterator[None]:
    """Turn the library's refusals into one-line CLI errors."""
    try:
        yield
    except (
        DeviceError,
        FormatError,
        RootOfTrustError,
        ManufacturingError,
        SigningKeyError,
    ) as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or ''}: {exc.strerror or exc}") from exc


def _now() -> int:
    return int(time.time())


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


@device_os_app.command("create")
def create(
    folder: Annotated[Path, typer.Argument(help="new device folder", file_okay=False)],
    fleet_folder: Annotated[
        Path,
        typer.Option(
            "--fleet", help="fleet folder; what is missing of it (CA, vendor keys, OS) is made"
        ),
    ],
    enable_development: Annotated[
        bool, typer.Option("--enable-development", help="also grant appDevelopment")
    ] = False,
) -> None:
    """Manufacture an emulated device with the fleet's signed OS in both slots."""
    if folder.exists() and any(folder.iterdir()):
        raise CliError(f"{folder} is not empty; a device is created in a new folder")
    now = dt.datetime.now(dt.UTC)
    with _refusals():
        complete = Fleet.exists(fleet_folder)
        fleet = Fleet.open_or_create(fleet_folder, now=now)
        if not complete:
            console.print(f"made fleet {fleet_folder} (vendor keys, OS release)")
        device_id = create_emulated_device(folder, fleet, now=now, development=enable_development)
    console.print(f"created device {device_id} in {folder}")


@device_os_app.command("boot")
def boot(
    folder: Annotated[Path, typer.Argument(help="device folder", file_okay=False)],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Boot: verify and measure every stage and app; fall back to the other slot if needed."""
    with _refusals():
        rot = EmulatedRootOfTrust.open(folder)
        result = boot_device(DeviceFlash(folder), rot, now=_now())
        register = rot.register().hex()
    if output == OutputFormat.JSON:
        _print_json(_boot_json(result, register))
        return
    console.print(
        f"booted slot {result.slot}{' (trial, unconfirmed)' if result.trial else ''}: "
        f"OS {result.os_version}, development mode {'on' if result.development_mode else 'off'}"
    )
    table = Table(title="measured images", title_justify="left")
    for column in ("stage", "name", "version", "security version", "image ID", "SHA-256"):
        table.add_column(column)
    images = [*result.os_images, *(app.image for app in result.apps), *result.board_configs]
    for image in images:
        metadata = image.metadata
        table.add_row(
            image.stage,
            metadata.name,
            metadata.version,
            str(metadata.security_version),
            str(metadata.identity.image_id),
            image.digest.hex()[:16] + "…",
        )
    console.print(table)
    console.print(f"boot register {register}")
    for event in result.events:
        console.print(f"[yellow]{event.type.value}[/yellow] {event.component}: {event.reason}")


def _boot_json(result: BootResult, register: str) -> dict[str, Any]:
    return {
        "slot": result.slot,
        "trial": result.trial,
        "os_version": result.os_version,
        "development_mode": result.development_mode,
        "boot_register": register,
        "images": [
            {
                "stage": image.stage,
                "name": image.metadata.name,
                "version": image.metadata.version,
                "security_version": image.metadata.security_version,
                "component_id": str(image.metadata.identity.component_id),
                "image_id": str(image.metadata.identity.image_id),
                "sha256": image.digest.hex(),
                "test_signed": image.test_signed,
            }
            for image in [*result.os_images, *(a.image for a in result.apps), *result.board_configs]
        ],
        "apps": [
            {
                "name": app.manifest.name,
                "component_id": str(app.manifest.component_id),
                "app_dir": str(app.app_dir),
                "storage_dir": str(app.storage_dir) if app.storage_dir else None,
                "storage_quota_bytes": app.storage_quota_bytes,
            }
            for app in result.apps
        ],
        "events": [
            {"type": e.type.value, "component": e.component, "reason": e.reason, "slot": e.slot}
            for e in result.events
        ],
    }


@sideload_app.command("deploy")
def sideload_deploy(
    package: Annotated[Path, typer.Argument(help="image package to install", dir_okay=False)],
    device: DeviceOption,
) -> None:
    """Install an app (test-signed needs appDevelopment); it starts at the next boot."""
    with _refusals():
        rot = EmulatedRootOfTrust.open(device)
        metadata = sideload(DeviceFlash(device), rot, package.read_bytes(), now=_now())
    identity = metadata.identity
    console.print(
        f"installed {metadata.name} {metadata.version} (component {identity.component_id}, "
        f"image {identity.image_id})"
    )


@image_app.command("list-installed")
def image_list_installed(device: DeviceOption, output: OutputOption = OutputFormat.TABLE) -> None:
    """Images in both OS slots and the app area (needs a capability once DeviceComplete)."""
    with _refusals():
        rot = EmulatedRootOfTrust.open(device)
        listing = list_installed(DeviceFlash(device), rot, now=_now())
    rows = [_installed_row(item) for item in listing]
    if output == OutputFormat.JSON:
        _print_json(rows)
        return
    table = Table(title="installed images", title_justify="left")
    columns = ("location", "name", "type", "version", "security_version", "component_id")
    for column in (*columns, "test_signed"):
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(
            *(str(row.get(c) or row.get("problem") or "") for c in columns),
            "yes" if row["test_signed"] else "no",
        )
    console.print(table)


def _installed_row(item: InstalledImage) -> dict[str, Any]:
    row: dict[str, Any] = {
        "location": item.location,
        "file": item.file_name,
        "size": item.size,
        "test_signed": item.test_signed,
    }
    if item.metadata is None:
        return {**row, "problem": item.problem}
    identity = item.metadata.identity
    return {
        **row,
        "name": item.metadata.name,
        "type": identity.image_type.name,
        "version": item.metadata.version,
        "security_version": item.metadata.security_version,
        "component_id": str(identity.component_id),
        "image_id": str(identity.image_id),
    }


@capability_app.command("update")
def capability_update(
    capability_file: Annotated[
        Path, typer.Option("--file", "-f", help="capability file from the service", dir_okay=False)
    ],
    device: DeviceOption,
) -> None:
    """Apply a capability file; one for another device or from an untrusted signer is refused."""
    with _refusals():
        rot = EmulatedRootOfTrust.open(device)
        flash = DeviceFlash(device)
        keystore = TrustedKeyStore.decode(flash.read_keystore_bytes())
        grant = apply_capability(
            flash,
            capability_file.read_bytes(),
            keystore=keystore,
            device_id=rot.device_id,
            now=_now(),
        )
    names = ", ".join(sorted(c.display_name for c in grant.capabilities)) or "none"
    console.print(f"capabilities now: {names}")


@image_package_app.command("pack-application")
def pack_application(
    folder: Annotated[Path, typer.Argument(help="app folder with app_manifest.json")],
    out: Annotated[Path, typer.Option("--out", "-o", help="image package to write")],
    key: KeyOption,
    version: VersionOption = "1.0.0",
    security_version: SecurityVersionOption = 1,
) -> None:
    """Pack and sign an app folder into an image package."""
    with _refusals():
        data = package_application(
            folder,
            signer=load_signing_key(key),
            version=version,
            security_version=security_version,
            build_time=_now(),
        )
        write_atomically(out, data)
    console.print(f"wrote {out} ({len(data)} bytes)")


@image_package_app.command("pack-board-config")
def pack_board_config(
    config_file: Annotated[
        Path, typer.Argument(help="board configuration file to carry", dir_okay=False)
    ],
    name: Annotated[str, typer.Option("--name", help="configuration name (≤ 31 bytes)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="image package to write")],
    key: KeyOption,
    component_id: Annotated[
        uuid.UUID | None, typer.Option("--component-id", help="default: derived from --name")
    ] = None,
    version: VersionOption = "1.0.0",
    security_version: SecurityVersionOption = 1,
) -> None:
    """Sign a board configuration file into an image package."""
    with _refusals():
        data = package_board_config(
            config_file,
            name=name,
            signer=load_signing_key(key),
            version=version,
            security_version=security_version,
            build_time=_now(),
            component_id=component_id,
        )
        write_atomically(out, data)
    console.print(f"wrote {out} ({len(data)} bytes)")


@image_package_app.command("show")
def show(
    package: Annotated[Path, typer.Argument(help="image package", dir_okay=False)],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show a package's fields; the signature is NOT checked (a device checks it)."""
    with _refusals():
        fields = describe_package(parse_package(package.read_bytes()))
    if output == OutputFormat.JSON:
        _print_json(fields)
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in fields.items():
        table.add_row(name, str(value))
    console.print(table)


@image_package_app.command("sign")
def sign(
    package: Annotated[Path, typer.Argument(help="image package", dir_okay=False)],
    key: KeyOption,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="default: in place")] = None,
) -> None:
    """Re-sign a package with another key (e.g. production signing of a tested app)."""
    target = out or package
    with _refusals():
        data = resign_package(package.read_bytes(), load_signing_key(key))
        write_atomically(target, data)
    console.print(f"wrote {target} ({len(data)} bytes)")
