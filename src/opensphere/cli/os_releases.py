"""`sphere os-release …` and `sphere security-version …`: what attestation accepts (operator).

A device passes attestation only if its evidence names a registered OS release, its boot
measurements match that release's reference values, and each component's security version
is at least the operator's minimum. Devices report the boot stages' fuses under the stage
names, so those are the components to set minimums for.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opensphere.api import schemas
from opensphere.cli.common import ProfileOption, signed_in_client
from opensphere.cli.device_emulator import load_fleet
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.client import Client
from opensphere.device.policy import BOOT_STAGES

COLUMNS = ("id", "version", "description", "created_at")
STAGE_NAMES = ", ".join(stage.name for stage in BOOT_STAGES)

os_release_app = typer.Typer(
    help="Known-good OS releases: the reference values attestation compares (operator).",
    no_args_is_help=True,
)
security_version_app = typer.Typer(
    help=f"Minimum security versions per component ({STAGE_NAMES}) (operator).",
    no_args_is_help=True,
)


def _emit_release(release: schemas.OsRelease, output: OutputFormat, verb: str) -> None:
    if output == OutputFormat.JSON:
        typer.echo(release.model_dump_json(indent=2))
        return
    console.print(f"{verb} OS release {release.version} ({release.id})", highlight=False)
    table = Table(title="reference measurements", title_justify="left")
    table.add_column("stage")
    table.add_column("SHA-256")
    for measurement in release.measurements:
        table.add_row(measurement.stage, measurement.digest)
    console.print(table)


def _release_from_file(path: Path) -> schemas.OsReleaseCreate:
    try:
        data = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    return schemas.OsReleaseCreate.model_validate_json(data)


@os_release_app.command("register")
def register(
    fleet: Annotated[
        Path | None,
        typer.Option("--fleet", help="an emulated fleet: register its OS release", file_okay=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="an OsReleaseCreate JSON, e.g. from 'sphere device-emulator reference-values'",
            dir_okay=False,
        ),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="up to 100 characters")
    ] = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Register an OS release's reference values: devices that boot it pass attestation."""
    if (fleet is None) == (file is None):
        raise CliError("give either --fleet or --file")
    if fleet is not None:
        body = load_fleet(fleet).reference_values(description=description or "")
    else:
        assert file is not None
        body = _release_from_file(file)
        if description is not None:
            body = body.model_copy(update={"description": description})
    with signed_in_client(profile) as client:
        _emit_release(client.register_os_release(body), output, "registered")


@os_release_app.command("list")
def list_releases(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """The registered OS releases (any signed-in user)."""
    with signed_in_client(profile) as client:
        emit(list(client.os_releases()), output, COLUMNS)


def _resolve_release(client: Client, value: str) -> uuid.UUID:
    """A GUID as given, else the release with that version."""
    try:
        return uuid.UUID(value)
    except ValueError:
        pass
    for release in client.os_releases():
        if release.version == value:
            return release.id
    raise CliError(f"no OS release has version {value!r}: see 'sphere os-release list'")


@os_release_app.command("delete")
def delete(
    release: Annotated[str, typer.Argument(help="the OS release's GUID or version")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Stop accepting an OS release: its devices fail their next attestation."""
    with signed_in_client(profile) as client:
        deleted = client.delete_os_release(_resolve_release(client, release))
        _emit_release(deleted, output, "deleted")


def _emit_minimums(minimums: schemas.SecurityVersionMinimums, output: OutputFormat) -> None:
    if output == OutputFormat.JSON:
        typer.echo(json.dumps(minimums.minimums, indent=2, sort_keys=True))
        return
    if not minimums.minimums:
        console.print("no minimum security versions: every version is accepted")
        return
    table = Table()
    table.add_column("component")
    table.add_column("minimum", justify="right")
    for component, minimum in sorted(minimums.minimums.items()):
        table.add_row(component, str(minimum))
    console.print(table)


@security_version_app.command("show")
def show(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """The lowest security version accepted per component."""
    with signed_in_client(profile) as client:
        _emit_minimums(client.minimum_security_versions(), output)


def _parse_assignment(text: str) -> tuple[str, int]:
    component, sep, value = text.partition("=")
    if not sep or not component or not (value.isascii() and value.isdigit()):
        raise CliError(f"{text!r} is not COMPONENT=N (N ≥ 0), e.g. os=2")
    return component, int(value)


@security_version_app.command("set")
def set_minimums(
    assignments: Annotated[
        list[str],
        typer.Argument(
            help=f"COMPONENT=N, e.g. os=2; components: {STAGE_NAMES}; N=0 drops a minimum",
            show_default=False,
        ),
    ],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Set the minimums of the components named; the others keep theirs.

    Raising one refuses devices whose fuse is lower; lowering one lets older software back in.
    """
    changes = dict(_parse_assignment(text) for text in assignments)
    with signed_in_client(profile) as client:
        merged = {**client.minimum_security_versions().minimums, **changes}
        kept = {component: minimum for component, minimum in merged.items() if minimum > 0}
        _emit_minimums(client.set_minimum_security_versions(kept), output)
