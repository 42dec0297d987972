"""`sphere simulate`: a fleet of emulated devices living simulated days against a real service.

Without `--url` the simulator starts its own throwaway `sphere server` (SQLite in a temporary
folder) and stops it at the end. With `--url` and an operator `--token` it uses that service;
it acts as the operator there (manufacturer CA, OS release "2.0.0" on the Retail feed, OS image
signers), so give it a service kept for simulations, fresh for each run.

`--time-scale` is simulated seconds per real second: each simulated day starts no earlier than
86,400 / scale real seconds after the previous one (1 = real time, 86400 = a day a second);
0, the default, runs as fast as the machine allows.

`--workers` drives that many devices at once (4 by default), so the service sees concurrent
mixed device traffic, as a fleet makes it. (With one worker the simulator first found that
the async hot paths waited for SQLite's write lock on the event loop, stalling requests in
worker threads that held it; their transactions now run in the thread pool.)
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, err_console
from opensphere.device.packaging import SigningKeyError, load_signing_key
from opensphere.rot.software import EmulatedRootOfTrustWarning
from opensphere.sim.backend import Backend, BackendError, throwaway_service
from opensphere.sim.plan import Rates, SimConfig, make_plan
from opensphere.sim.runner import Summary
from opensphere.sim.session import SessionOptions, prepared

SHOWN_VIOLATIONS = 20


def simulate(
    devices: Annotated[int, typer.Option(help="how many devices", min=1)] = 100,
    days: Annotated[int, typer.Option(help="how many simulated days", min=1)] = 3,
    seed: Annotated[int, typer.Option(help="the random seed: same seed, same plan")] = 1,
    time_scale: Annotated[
        float,
        typer.Option(help="simulated seconds per real second; 0 = as fast as possible", min=0),
    ] = 0.0,
    workers: Annotated[int, typer.Option(help="threads driving the devices at once", min=1)] = 4,
    url: Annotated[
        str | None, typer.Option(help="a service kept for simulations (default: start one)")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="operator token for --url", envvar="OPENSPHERE_TOKEN")
    ] = None,
    app_key: Annotated[
        Path, typer.Option(help="the SDK test signing key the simulated app is signed with")
    ] = Path("samples/keys/test-signing-key.pem"),
    work_dir: Annotated[
        Path | None, typer.Option(help="keep the fleet and device folders here")
    ] = None,
    crashes_per_day: Annotated[float, typer.Option(help="mean app crashes per device-day")] = 0.5,
    power_cut_rate: Annotated[
        float, typer.Option(help="chance the power goes off during a day's update check")
    ] = 0.1,
    offline_rate: Annotated[
        float, typer.Option(help="chance a device goes offline on a day")
    ] = 0.05,
    reboot_rate: Annotated[float, typer.Option(help="chance a device reboots on a day")] = 0.1,
    real_fsync: Annotated[
        bool, typer.Option(help="let device fsyncs reach the disk (slow, shows nothing new)")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Simulate a fleet for some days, then check that nothing was lost, missed or bricked."""
    try:
        rates = Rates(
            crashes_per_day=crashes_per_day,
            power_cut=power_cut_rate,
            offline=offline_rate,
            reboot=reboot_rate,
        )
        plan = make_plan(SimConfig(devices=devices, days=days, seed=seed, rates=rates))
        signer = load_signing_key(app_key)
    except SigningKeyError as exc:
        raise CliError(f"{exc}; pass --app-key (samples/keys/test-signing-key.pem)") from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if url is not None and token is None:
        raise CliError("--url needs an operator --token (or OPENSPHERE_TOKEN)")
    warnings.filterwarnings("ignore", category=EmulatedRootOfTrustWarning)
    logging.getLogger("opensphere").setLevel(logging.ERROR)
    with ExitStack() as stack:
        work = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sim-")))
        work.mkdir(parents=True, exist_ok=True)
        backend = stack.enter_context(_backend(url, token))
        options = SessionOptions(
            work=work,
            app_signer=signer,
            workers=workers,
            skip_fsync=not real_fsync,
            time_scale=time_scale,
        )
        with prepared(plan, backend, options) as simulation:
            simulation.run()
            summary = simulation.finish()
    _print(summary, output)
    if summary.violations:
        raise typer.Exit(1)


@contextmanager
def _backend(url: str | None, token: str | None) -> Iterator[Backend]:
    if url is not None and token is not None:
        yield Backend(url=url, token=token)
        return
    try:
        with throwaway_service() as backend:
            yield backend
    except BackendError as exc:
        raise CliError(f"cannot start a service for the simulation: {exc}") from exc


def _print(summary: Summary, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        data = asdict(summary)
        data["violations"] = [str(v) for v in summary.violations]
        data["device_days_per_second"] = summary.device_days_per_second
        typer.echo(json.dumps(data, indent=2))
    else:
        table = Table(title="Fleet simulation", title_justify="left", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("count", justify="right")
        rows = {
            "devices": summary.devices,
            "simulated days": summary.days,
            "attestations": summary.attestations,
            "update checks": summary.update_checks,
            "installs": summary.installs,
            "rollbacks": summary.rollbacks,
            "power cuts": summary.power_cuts,
            "reboots": summary.reboots,
            "offline periods": summary.offline_periods,
            "crashes filed": summary.crashes_filed,
            "crashes stored": summary.crashes_stored,
            "manufacturing (s)": f"{summary.manufactured_in:.1f}",
            "simulation (s)": f"{summary.seconds:.1f}",
            "device-days per second": f"{summary.device_days_per_second:.1f}",
        }
        for name, value in rows.items():
            table.add_row(name, str(value))
        console.print(table)
    if not summary.violations:
        if output is OutputFormat.TABLE:
            console.print("invariants: all passed")
        return
    for violation in summary.violations[:SHOWN_VIOLATIONS]:
        err_console.print(f"[red]invariant failed:[/red] {escape(str(violation))}", highlight=False)
    if len(summary.violations) > SHOWN_VIOLATIONS:
        err_console.print(f"… and {len(summary.violations) - SHOWN_VIOLATIONS} more")
