"""`sphere device-emulator report DIR`: upload the device's error events and crash dumps."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from opensphere.cli.errors import CliError
from opensphere.cli.output import console
from opensphere.client import Client
from opensphere.device.reporting.uploader import report as upload_report
from opensphere.rot import EmulatedRootOfTrust
from opensphere.rot.errors import RootOfTrustError
from opensphere.rot.software import EmulatedRootOfTrustWarning

CREDENTIAL_FILE = Path("daa", "credential")


def report(
    folder: Annotated[Path, typer.Argument(help="the emulated device's folder")],
    url: Annotated[str, typer.Option(help="the service's URL")],
) -> None:
    """Upload pending error events and crash dumps (needs a credential: attest first)."""
    try:
        credential = (folder / CREDENTIAL_FILE).read_text().strip()
    except OSError as exc:
        raise CliError(
            f"{folder} has no device credential ({exc.strerror}): run "
            "'sphere device-emulator attest' first"
        ) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            device_id = EmulatedRootOfTrust.open(folder).device_id
    except RootOfTrustError as exc:
        raise CliError(f"{folder}: {exc}") from exc
    with Client(url) as client:
        result = upload_report(
            folder, device_id=device_id, client=client, credential=credential, now=int(time.time())
        )
    console.print(
        f"{result.stored} event(s) stored, {result.duplicates} already held, "
        f"{result.rejected} refused, {result.dumps} crash dump(s) uploaded",
        highlight=False,
    )
