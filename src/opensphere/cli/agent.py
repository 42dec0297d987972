"""`sphere agent`: run a device — boot, apps, attestation, update checks, error reports.

`run` keeps a device alive until Ctrl-C (or once, with `--once`); `check-now` asks a running
agent for an update check at once (SIGUSR1), the forced check Azure Sphere users asked for;
`status` reads what the device folder says about its images and its last update.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import threading
import warnings
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import BaseModel

from opensphere.cli.common import (
    ProfileOption,
    TenantOption,
    resolve_device_group,
    resolve_tenant,
    signed_in_client,
)
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.client import Client, ClientError
from opensphere.device.errors import DeviceError
from opensphere.device.flash import DeviceFlash
from opensphere.device.host import DeviceHost, HostSettings
from opensphere.device.tpm_agent import (
    DEFAULT_OS_FILE,
    TpmAttestation,
    TpmDevice,
    os_version_of,
)
from opensphere.device.tpm_host import TpmHost
from opensphere.rot import EmulatedRootOfTrust
from opensphere.rot.errors import RootOfTrustError
from opensphere.rot.software import EmulatedRootOfTrustWarning
from opensphere.updates.client import UpdateClientError

agent_app = typer.Typer(help="Run a device: boot, apps, attestation, updates, error reports.")

PID_FILE = Path("agent.pid")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

DeviceArgument = Annotated[Path, typer.Argument(help="the device's folder")]


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '30m', '20h', '1d' → timedelta; anything else is a usage error."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 30m, 20h or 1d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _open_rot(folder: Path) -> EmulatedRootOfTrust:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            return EmulatedRootOfTrust.open(folder)
    except RootOfTrustError as exc:
        raise CliError(f"{folder}: {exc}") from exc


class RootOfTrustKind(StrEnum):
    EMULATED = "emulated"
    TPM = "tpm"


TctiOption = Annotated[
    str,
    typer.Option(
        help="how to reach the TPM (tpm2-tss TCTI), e.g. device:/dev/tpmrm0 or "
        "swtpm:host=127.0.0.1,port=2321",
        envvar="OPENSPHERE_TCTI",
    ),
]


@agent_app.command("run")
def run(
    folder: DeviceArgument,
    url: Annotated[str, typer.Option(help="the service's URL")],
    rot: Annotated[
        RootOfTrustKind, typer.Option(help="emulated device folder, or this host's TPM")
    ] = RootOfTrustKind.EMULATED,
    tcti: TctiOption = "device:/dev/tpmrm0",
    os_file: Annotated[
        Path, typer.Option(help="TPM hosts: the file measured as the OS")
    ] = DEFAULT_OS_FILE,
    os_version: Annotated[
        str | None, typer.Option(help="TPM hosts: OS version (default: VERSION_ID of --os-file)")
    ] = None,
    check_every: Annotated[
        str, typer.Option(help="time between update checks, e.g. 20h or 90s")
    ] = "20h",
    report_every: Annotated[
        str, typer.Option(help="time between error-report uploads (at least daily)")
    ] = "24h",
    apps: Annotated[bool, typer.Option(help="start the installed apps")] = True,
    health_window: Annotated[
        float, typer.Option(help="seconds an updated app must run without crashing", min=0)
    ] = 5.0,
    once: Annotated[bool, typer.Option(help="boot, attest, check, upload once, then stop")] = False,
) -> None:
    """Power the device on and keep it running until Ctrl-C.

    With --rot tpm the folder is this Linux host's agent state (claim it first with
    'sphere agent claim'); see docs/opensphere-agent.service for a systemd unit.
    """
    folder = folder.resolve()
    settings = HostSettings(
        run_apps=apps,
        health_window=health_window,
        check_interval=parse_duration(check_every),
        report_interval=min(parse_duration(report_every), dt.timedelta(days=1)),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(Client(url))
        try:
            if rot is RootOfTrustKind.TPM:
                tpm = stack.enter_context(_open_tpm(folder, tcti))
                device = TpmDevice(tpm)
                attestation = TpmAttestation(
                    device,
                    client=client,
                    os_file=os_file,
                    os_version=os_version or os_version_of(os_file),
                )
                host = DeviceHost(
                    folder, rot=device, client=client, settings=settings, attestation=attestation
                )
            else:
                host = DeviceHost(folder, rot=_open_rot(folder), client=client, settings=settings)
            if once:
                _run_once(host)
                return
            _run_until_stopped(host, folder)
        except (DeviceError, ClientError, UpdateClientError, RootOfTrustError) as exc:
            raise CliError(str(exc)) from exc


@agent_app.command("claim")
def claim(
    folder: DeviceArgument,
    tcti: TctiOption = "device:/dev/tpmrm0",
    device_group: Annotated[
        str | None, typer.Option("--device-group", "-g", help="'Product/Group' or GUID")
    ] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Claim this Linux host into a tenant by its TPM (Contributor): the EK certificate must
    chain to a registered TPM manufacturer and the TPM must activate the service's credential."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        group_id = None
        if device_group is not None:
            group_id = resolve_device_group(client, tenant_id, device_group)
        try:
            with _open_tpm(folder.resolve(), tcti) as host:
                device = host.claim(client, tenant_id, device_group_id=group_id)
        except RootOfTrustError as exc:
            raise CliError(str(exc)) from exc
    console.print(f"claimed TPM host {device.device_id}")


def _open_tpm(folder: Path, tcti: str) -> TpmHost:
    try:
        return TpmHost(folder, tcti=tcti)
    except RootOfTrustError as exc:
        raise CliError(f"cannot use the TPM at {tcti!r}: {exc}") from exc


def _run_once(host: DeviceHost) -> None:
    try:
        boot = host.power_on()
        console.print(f"booted slot {boot.slot}: OS {boot.os_version}, {len(boot.apps)} app(s)")
        result = host.check_for_updates()
        console.print(f"update check: {result.outcome.value}" + _reason(result.reason))
        uploaded = host.upload_reports()
        console.print(f"error reports: {uploaded.stored} event(s) stored")
    finally:
        host.shutdown()


def _reason(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def _run_until_stopped(host: DeviceHost, folder: Path) -> None:
    stop = threading.Event()

    def _stop(signo: int, frame: FrameType | None) -> None:
        stop.set()
        host.stop()

    def _check_now(signo: int, frame: FrameType | None) -> None:
        host.check_now()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _stop),
        signal.SIGINT: signal.signal(signal.SIGINT, _stop),
        signal.SIGUSR1: signal.signal(signal.SIGUSR1, _check_now),
    }
    failures: list[BaseException] = []

    def _run() -> None:
        try:
            host.run()
        except BaseException as exc:  # handed to the main thread, which reports it
            failures.append(exc)

    worker = threading.Thread(target=_run, name="device-agent")
    try:
        worker.start()
        while not stop.wait(0.2):
            if host.powered_on.is_set():
                _write_pid(folder)
            if not worker.is_alive():
                break
        host.stop()
        worker.join()
        if failures:
            raise failures[0]
    finally:
        (folder / PID_FILE).unlink(missing_ok=True)
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def _write_pid(folder: Path) -> None:
    pid_file = folder / PID_FILE
    if not pid_file.exists():
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")


@agent_app.command("check-now")
def check_now(folder: DeviceArgument) -> None:
    """Ask the agent running for this device to check for updates at once."""
    pid_file = folder / PID_FILE
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError) as exc:
        raise CliError(
            f"no agent is running for {folder}: start one with 'sphere agent run {folder} "
            "--url URL' (or use --once for a single check)"
        ) from exc
    console.print(f"asked the agent (pid {pid}) to check for updates now")


@agent_app.command("status")
def status(folder: DeviceArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """What the device runs and where its last update stands, from its folder."""
    flash = DeviceFlash(folder)
    try:
        control = flash.read_control()
        trial = flash.read_app_trial()
    except DeviceError as exc:
        raise CliError(f"{folder}: {exc}") from exc
    state_file = folder / "updates" / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    report = json.loads(state.get("last_report") or "[null, null, []]")
    emit(
        AgentStatus(
            active_slot=control.active,
            os_on_trial=control.trial or control.unconfirmed,
            apps_on_trial=sorted(str(c) for c in trial.had_previous) if trial else [],
            installed_apps=[p.name for p in flash.installed_image_files()],
            last_update_state=report[0],
            last_deployment=None if report[1] in (None, "None") else report[1],
            last_update_report_at=state.get("last_report_at") or None,
            failed_images=state.get("failed", {}),
            agent_running=(folder / PID_FILE).exists(),
        ),
        output,
        [],
    )


class AgentStatus(BaseModel):
    active_slot: str
    os_on_trial: str | None
    apps_on_trial: list[str]
    installed_apps: list[str]
    last_update_state: str | None
    last_deployment: str | None
    last_update_report_at: str | None
    failed_images: dict[str, str]
    agent_running: bool
