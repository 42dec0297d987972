"""`sphere device-emulator …`: an emulated device attests; its fleet's reference values."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console
from opensphere.client import Client
from opensphere.device.agent import DeviceAgent
from opensphere.device.emulator import Fleet
from opensphere.device.errors import DeviceError
from opensphere.device.packaging import SigningKeyError
from opensphere.factory import ManufacturingError
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning, RootOfTrustError

device_emulator_app = typer.Typer(
    help="Emulated devices: create, boot, attest; the fleet's reference values.",
    no_args_is_help=True,
)
FleetOption = Annotated[
    Path, typer.Option("--fleet", help="the emulated fleet's folder", file_okay=False)
]


def load_fleet(folder: Path) -> Fleet:
    """An existing fleet, or a one-line error saying how to make one."""
    try:
        return Fleet.load(folder)
    except (DeviceError, ManufacturingError, SigningKeyError) as exc:
        raise CliError(str(exc)) from exc


@device_emulator_app.command("attest")
def attest(
    folder: Annotated[Path, typer.Argument(help="the emulated device's folder")],
    url: Annotated[
        str,
        typer.Option(
            "--url", envvar="OPENSPHERE_SERVICE_URL", help="the service, e.g. http://127.0.0.1:8443"
        ),
    ],
    if_due: Annotated[
        bool, typer.Option("--if-due", help="only when the certificate ends within 4 hours")
    ] = False,
) -> None:
    """Boot (secure boot of the device's flash), attest, store the certificate in FOLDER/daa/."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            rot = EmulatedRootOfTrust.open(folder)
    except RootOfTrustError as exc:
        raise CliError(str(exc)) from exc
    with Client(url) as client:
        agent = DeviceAgent(folder, rot=rot, client=client)
        try:
            agent.boot(now=dt.datetime.now(dt.UTC))
        except DeviceError as exc:
            raise CliError(f"boot failed: {exc}") from exc
        if if_due:
            grant = agent.renew_if_due(now=dt.datetime.now(dt.UTC))
            if grant is None:
                state = agent.state()
                assert state is not None
                console.print(f"certificate still valid until {state.certificate_expires_at}")
                return
        else:
            grant = agent.attest()
    console.print(
        f"device {grant.device_id[:16]}… attested; certificate {agent.certificate_path} "
        f"valid until {grant.certificate_expires_at:%Y-%m-%d %H:%M:%S}Z"
    )


@device_emulator_app.command("reference-values")
def reference_values(fleet: FleetOption, output: OutputOption = OutputFormat.TABLE) -> None:
    """What the fleet's devices measure at boot; `-o json` is a file for `os-release register`."""
    release = load_fleet(fleet).reference_values()
    if output == OutputFormat.JSON:
        typer.echo(release.model_dump_json(indent=2))
        return
    table = Table(title=f"OS {release.version}: reference measurements", title_justify="left")
    table.add_column("stage")
    table.add_column("SHA-256")
    for measurement in release.measurements:
        table.add_row(measurement.stage, measurement.digest)
    console.print(table)
