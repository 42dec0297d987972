"""`sphere device-emulator attest DIR`: an emulated device attests and stores its certificate."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Annotated

import typer

from opensphere.cli.errors import CliError
from opensphere.cli.output import console
from opensphere.client import Client
from opensphere.device.agent import DeviceAgent
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning, RootOfTrustError

device_emulator_app = typer.Typer(
    help="Emulated devices: attest to the service.", no_args_is_help=True
)


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
    """Boot the measured chain, attest, and store the certificate in FOLDER/daa/."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            rot = EmulatedRootOfTrust.open(folder)
    except RootOfTrustError as exc:
        raise CliError(str(exc)) from exc
    with Client(url) as client:
        agent = DeviceAgent(folder, rot=rot, client=client)
        agent.boot()
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
