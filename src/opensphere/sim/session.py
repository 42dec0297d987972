"""One simulation from nothing to claimed devices: fleet, service set-up, manufacturing.

Shared by `sphere simulate` and bench/fleet.py: both get a `Simulation` ready to run, inside
the durable-steps wrapper (power cuts, skipped fsyncs) that lasts as long as the block.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from opensphere.client import Client
from opensphere.device.emulator import Fleet
from opensphere.formats.image_package import KeySigner
from opensphere.sim.backend import Backend
from opensphere.sim.devices import DeviceClock, SimClient, manufacture
from opensphere.sim.plan import Plan
from opensphere.sim.powercut import DurableSteps
from opensphere.sim.runner import SimDevice, Simulation
from opensphere.sim.world import set_up


@dataclass(frozen=True)
class SessionOptions:
    work: Path
    app_signer: KeySigner
    workers: int = 1
    manufacture_workers: int = 2
    skip_fsync: bool = True
    time_scale: float = 0.0


@contextmanager
def prepared(plan: Plan, backend: Backend, options: SessionOptions) -> Iterator[Simulation]:
    """A fleet in `options.work`, registered with the service, its devices made and claimed."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    fleet = Fleet.create(options.work / "fleet", now=now)
    client = SimClient(backend.url)
    with Client(backend.url, backend.token) as operator, closing(client):
        world = set_up(operator, fleet, work=options.work, app_signer=options.app_signer)
        folders = [options.work / "devices" / f"{i:06d}" for i in range(plan.config.devices)]
        began = time.perf_counter()
        made = []
        for chunk in manufacture(
            fleet.folder,
            folders,
            tenant_id=world.tenant_id,
            workers=options.manufacture_workers,
            skip_fsync=options.skip_fsync,
        ):
            world.claim([device.claim for device in chunk])
            made.extend(chunk)
        manufactured_in = time.perf_counter() - began
        start = dt.datetime.now(dt.UTC).replace(microsecond=0)
        devices = []
        for index, device in enumerate(made):
            clock = DeviceClock(start)
            client.add_device(device.device_id, clock)
            devices.append(SimDevice(index, device.folder, device.device_id, clock))
        with DurableSteps(skip_fsync=options.skip_fsync) as steps:
            yield Simulation(
                plan,
                world=world,
                client=client,
                devices=devices,
                steps=steps,
                start=start,
                workers=options.workers,
                time_scale=options.time_scale,
                manufactured_in=manufactured_in,
            )
