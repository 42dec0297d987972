"""`sphere app …`: the apps on a running emulated device, and running an app folder on one."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.device.runtime import (
    VIRTUAL_BOARD,
    AppLaunch,
    AppRefusedError,
    BoardError,
    ControlClient,
    ControlError,
    Runtime,
    parse_board,
)

STATUS_COLUMNS = ("name", "component_id", "state", "pid", "restarts", "crashes", "last_exit")

app_app = typer.Typer(
    help="Apps on an emulated device: show-status, start, stop, and run an app folder.",
    no_args_is_help=True,
)

DeviceOption = Annotated[
    Path,
    typer.Option(
        "--device", "-d", help="the device folder", envvar="OPENSPHERE_DEVICE", file_okay=False
    ),
]
AppArgument = Annotated[str, typer.Argument(help="component ID or app name")]


def _client(device: Path) -> ControlClient:
    return ControlClient(device)


@app_app.command("show-status")
def show_status(
    device: DeviceOption,
    app: Annotated[str | None, typer.Argument(help="component ID or name; all if absent")] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """State, restarts, crashes and refusals of the device's apps."""
    try:
        statuses = _client(device).status()
    except ControlError as exc:
        raise CliError(str(exc)) from exc
    if app is not None:
        statuses = [s for s in statuses if app in (str(s.component_id), s.name)]
        if not statuses:
            raise CliError(f"no app {app!r} on this device")
    emit(statuses, output, STATUS_COLUMNS)


@app_app.command("start")
def start(
    app: AppArgument, device: DeviceOption, output: OutputOption = OutputFormat.TABLE
) -> None:
    """Start a stopped app."""
    try:
        status = _client(device).start(app)
    except ControlError as exc:
        raise CliError(str(exc)) from exc
    emit(status, output, STATUS_COLUMNS)


@app_app.command("stop")
def stop(app: AppArgument, device: DeviceOption, output: OutputOption = OutputFormat.TABLE) -> None:
    """Stop an app (SIGTERM, then SIGKILL); it stays stopped until started again."""
    try:
        status = _client(device).stop(app)
    except ControlError as exc:
        raise CliError(str(exc)) from exc
    emit(status, output, STATUS_COLUMNS)


@app_app.command("show-board")
def show_board(device: DeviceOption) -> None:
    """The virtual board's peripherals as apps left them (GPIO levels, PWM, ADC readings)."""
    try:
        typer.echo(json.dumps(_client(device).board(), indent=2))
    except ControlError as exc:
        raise CliError(str(exc)) from exc


@app_app.command("set-adc")
def set_adc(
    controller: Annotated[str, typer.Argument(help="ADC name ($TEMPERATURE_ADC) or number")],
    channel: Annotated[int, typer.Argument(help="channel number")],
    value: Annotated[int, typer.Argument(help="the raw sample the sensor now reads")],
    device: DeviceOption,
) -> None:
    """Change what a virtual sensor reads."""
    reference: int | str = int(controller) if controller.isdigit() else controller
    try:
        _client(device).set_adc(reference, channel, value)
    except ControlError as exc:
        raise CliError(str(exc)) from exc


@app_app.command("run")
def run(
    folder: Annotated[Path, typer.Argument(help="app folder with app_manifest.json")],
    device: DeviceOption,
    board: Annotated[
        Path | None, typer.Option(help="board definition JSON (default: the virtual board)")
    ] = None,
    server_address: Annotated[
        str, typer.Option(help="address the app's server ports listen on")
    ] = "127.0.0.1",
) -> None:
    """Run an app folder on a device's runtime until Ctrl-C, as sideloading would.

    The app's mutable storage is DEVICE/storage/COMPONENT_ID, as for installed apps. Use the
    other `sphere app` commands from another terminal meanwhile.
    """
    try:
        definition = parse_board(board.read_bytes()) if board is not None else None
        launch = AppLaunch.from_folder(folder.resolve(), image_id=uuid.uuid4(), storage_folder=None)
    except (OSError, BoardError, AppRefusedError) as exc:
        raise CliError(str(exc)) from exc
    storage = device.resolve() / "storage" / str(launch.component_id)
    launch = dataclasses.replace(launch, storage_folder=storage)
    runtime = Runtime(
        device.resolve(), board=definition or VIRTUAL_BOARD, server_address=server_address
    )
    stopping = threading.Event()

    def _stop(signo: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with runtime:
            console.print(f"app runtime: isolation {runtime.isolation.value}")
            try:
                runtime.launch_app(launch)
            except AppRefusedError as exc:
                raise CliError(str(exc)) from exc
            status = runtime.app_status(launch.component_id)
            console.print(f"running {launch.label}; its output goes to {status.log}")
            console.print("Ctrl-C stops it")
            while not stopping.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
