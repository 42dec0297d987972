"""The shell: carries a `Plan` out with real `DeviceHost`s against a real service.

Day by day: the day's fleet events first (deployments, OS releases, through `SimWorld`), then
every device's day on a small thread pool (`workers`); a device is only ever touched by one
thread at a time. A device's day, in the order of its simulated times: app crashes filed into
its real event queue, its daily check when online (attest when due, update check, error
report upload), a reboot. A check the plan cuts runs with `DurableSteps.cut_at`: at the cut
the `DeviceHost` is dropped and a new one powers on from the folder (secure boot, a trial
settled or rolled back), then checks again, as a device does at boot. On the last day every
device also uploads once more at the end of the day, so that every filed crash could arrive.

`observe` then looks at every device twice: a fresh power-on from its folder, and what the
service says (attestation, update status, stored error events); `invariants` judges.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from uuid import UUID

from opensphere.device.events import EventType
from opensphere.device.flash import EVENTS_QUEUE
from opensphere.device.host import DeviceHost, HostSettings
from opensphere.device.reporting.queue import EventQueue, Occurrence
from opensphere.device.update_agent import UpdateOutcome
from opensphere.formats.error_events import EventCategory
from opensphere.rot import EmulatedRootOfTrust
from opensphere.sim.devices import DeviceClock, SimClient
from opensphere.sim.invariants import (
    DeployedApp,
    DeviceObservation,
    Expectations,
    PublishedOs,
    Violation,
    check_fleet,
)
from opensphere.sim.plan import DAY_SECONDS, DeviceDay, FleetEventKind, Plan
from opensphere.sim.powercut import DurableSteps, PowerCut
from opensphere.sim.world import APP_COMPONENT, SimWorld

CRASH_SIGNAL: Final = 11
SETTINGS: Final = HostSettings(run_apps=False)


@dataclass
class SimDevice:
    """One simulated device: its folder, clock, running host (None while off) and tallies."""

    index: int
    folder: Path
    device_id: str
    clock: DeviceClock
    host: DeviceHost | None = None
    update_checks: int = 0
    installs: int = 0
    rollbacks: int = 0
    power_cuts: int = 0
    reboots: int = 0
    crashes_filed: int = 0
    boot_error: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    devices: int
    days: int
    attestations: int
    update_checks: int
    installs: int
    rollbacks: int
    power_cuts: int
    reboots: int
    offline_periods: int
    crashes_filed: int
    crashes_stored: int
    manufactured_in: float
    seconds: float
    violations: tuple[Violation, ...]

    @property
    def device_days_per_second(self) -> float:
        return self.devices * self.days / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class StoredEvent:
    event_id: UUID
    count: int


@dataclass(frozen=True)
class StormResult:
    attestations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.attestations / self.seconds if self.seconds else 0.0


class Simulation:
    def __init__(
        self,
        plan: Plan,
        *,
        world: SimWorld,
        client: SimClient,
        devices: Sequence[SimDevice],
        steps: DurableSteps,
        start: dt.datetime,
        workers: int,
        time_scale: float = 0.0,
        manufactured_in: float = 0.0,
    ) -> None:
        self.plan = plan
        self.world = world
        self.client = client
        self.devices = list(devices)
        self.steps = steps
        self.start = start
        self.workers = workers
        self.time_scale = time_scale
        self.manufactured_in = manufactured_in
        self.deployments: list[DeployedApp] = []
        self.os_release: PublishedOs | None = None
        self.day_seconds: list[float] = []
        self._began = time.monotonic()

    def run(self) -> None:
        for day in range(len(self.plan.days)):
            self.run_day(day)

    def run_day(self, day: int) -> None:
        """The day's fleet events, then every device's day; paced by `time_scale`."""
        if self.time_scale > 0:
            due = self._began + day * DAY_SECONDS / self.time_scale
            time.sleep(max(0.0, due - time.monotonic()))
        began = time.perf_counter()
        for event in self.plan.fleet_events:
            if event.day != day:
                continue
            if event.kind is FleetEventKind.DEPLOY_APP:
                self.deployments.append(
                    self.world.deploy_app(
                        day=day, version=event.version, rollout_percentage=event.rollout_percentage
                    )
                )
            else:
                self.world.publish_os(version=event.version)
                self.os_release = PublishedOs(day, event.version)
        self._each(lambda device: self._device_day(device, day))
        self.day_seconds.append(time.perf_counter() - began)

    def reconnect_storm(self, outage: dt.timedelta, *, workers: int) -> StormResult:
        """Every device comes back after `outage` (its certificate expired meanwhile) and
        attests at once, `workers` at a time."""
        running = [device for device in self.devices if device.host is not None]
        for device in running:
            device.clock.advance_to(device.clock.now() + outage)
        before = self._attestations()
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(self._reconnect, running):
                pass
        seconds = time.perf_counter() - began
        return StormResult(self._attestations() - before, seconds)

    def finish(self) -> Summary:
        """Observe every device, check the invariants, sum up."""
        seconds = sum(self.day_seconds)
        stored = self._stored_crashes()
        observations: list[DeviceObservation] = []
        self._each(lambda device: observations.append(self._observe(device, stored)))
        expectations = Expectations(
            initial_os_version=self.world.fleet.reference_values().version,
            deployments=tuple(self.deployments),
            os_release=self.os_release,
        )
        violations = check_fleet(self.plan, expectations, observations)
        return Summary(
            devices=len(self.devices),
            days=len(self.day_seconds),
            attestations=self._attestations(),
            update_checks=sum(d.update_checks for d in self.devices),
            installs=sum(d.installs for d in self.devices),
            rollbacks=sum(d.rollbacks for d in self.devices),
            power_cuts=sum(d.power_cuts for d in self.devices),
            reboots=sum(d.reboots for d in self.devices),
            offline_periods=self.plan.offline_periods(),
            crashes_filed=sum(d.crashes_filed for d in self.devices),
            crashes_stored=sum(e.count for events in stored.values() for e in events),
            manufactured_in=self.manufactured_in,
            seconds=seconds,
            violations=tuple(sorted(violations, key=lambda v: (v.device, v.invariant))),
        )

    # --- one device -------------------------------------------------------------------

    def _device_day(self, device: SimDevice, day: int) -> None:
        plan = self.plan.days[day][device.index]
        day_start = self.start + dt.timedelta(seconds=day * DAY_SECONDS)
        moments: list[tuple[int, int, Callable[[], None]]] = [
            (moment, 0, lambda: self._crash(device)) for moment in plan.crash_times
        ]
        if plan.online:
            moments.append((plan.check_at, 1, lambda: self._daily_check(device, plan)))
        if plan.reboot_at is not None:
            moments.append((plan.reboot_at, 2, lambda: self._reboot(device)))
        if plan.online and day == len(self.plan.days) - 1:
            moments.append((DAY_SECONDS - 1, 3, lambda: self._upload(device)))
        if device.host is None and device.boot_error is None:
            device.clock.advance_to(day_start)
            self._attempt(device, day, "power-on", lambda: self._power_on(device))
        for moment, _, action in sorted(moments, key=lambda m: (m[0], m[1])):
            if device.boot_error is not None:
                return
            device.clock.advance_to(day_start + dt.timedelta(seconds=moment))
            self._attempt(device, day, "daily work", action)

    def _attempt(
        self, device: SimDevice, day: int, what: str, action: Callable[[], object]
    ) -> None:
        try:
            action()
        except Exception as exc:  # any failure is this device's, reported at the end
            device.errors.append(f"day {day}: {what}: {type(exc).__name__}: {exc}")

    def _power_on(self, device: SimDevice) -> DeviceHost:
        """A new host from the folder alone, as after a power cut; no boot is a bricked device."""
        host = DeviceHost(
            device.folder,
            rot=EmulatedRootOfTrust.open(device.folder),
            client=self.client,
            settings=SETTINGS,
            now=device.clock.now,
        )
        try:
            boot = host.power_on()
        except Exception as exc:
            device.boot_error = f"{type(exc).__name__}: {exc}"
            device.host = None
            raise
        device.rollbacks += sum(1 for e in boot.events if e.type is EventType.UPDATE_ROLLED_BACK)
        device.host = host
        return host

    def _running(self, device: SimDevice) -> DeviceHost:
        return device.host if device.host is not None else self._power_on(device)

    def _crash(self, device: SimDevice) -> None:
        """The app crashed (SIGSEGV): what the runtime files, in the device's own queue."""
        host = self._running(device)
        images = [
            app.image.metadata.identity.image_id
            for app in host.boot_result.apps
            if app.manifest.component_id == APP_COMPONENT
        ]
        EventQueue(device.folder / EVENTS_QUEUE).record(
            Occurrence(
                category=EventCategory.APP_CRASH,
                component_id=APP_COMPONENT,
                image_id=images[0] if images else None,
                signal_status=CRASH_SIGNAL,
            ),
            now=int(device.clock.now().timestamp()),
        )
        device.crashes_filed += 1

    def _daily_check(self, device: SimDevice, plan: DeviceDay) -> None:
        host = self._running(device)
        try:
            if plan.power_cut_step is None:
                outcome = host.check_for_updates().outcome
            else:
                with self.steps.cut_at(plan.power_cut_step):
                    outcome = host.check_for_updates().outcome
        except PowerCut:
            device.power_cuts += 1
            device.host = None
            host = self._power_on(device)
            outcome = host.check_for_updates().outcome  # a device checks at boot
        device.update_checks += 1
        if outcome is UpdateOutcome.INSTALLED:
            device.installs += 1
        elif outcome is UpdateOutcome.ROLLED_BACK:
            device.rollbacks += 1
        elif outcome in (UpdateOutcome.FAILED, UpdateOutcome.INTERRUPTED):
            device.errors.append(f"update check: {outcome}")
        host.upload_reports()

    def _upload(self, device: SimDevice) -> None:
        self._running(device).upload_reports()

    def _reboot(self, device: SimDevice) -> None:
        self._running(device).reboot()
        device.reboots += 1

    def _reconnect(self, device: SimDevice) -> None:
        self._attempt(device, len(self.plan.days), "reconnect", self._running(device).credential)

    # --- the end ----------------------------------------------------------------------

    def _observe(
        self, device: SimDevice, stored: dict[str, list[StoredEvent]]
    ) -> DeviceObservation:
        """The device as its folder boots now, and as the service sees it."""
        boot_error = device.boot_error
        os_version: str | None = None
        app_images: frozenset[UUID] = frozenset()
        if boot_error is None:
            try:
                boot = self._power_on(device).boot_result
                os_version = boot.os_version
                app_images = frozenset(a.image.metadata.identity.image_id for a in boot.apps)
            except Exception as exc:
                boot_error = f"{type(exc).__name__}: {exc}"
        pending = sum(
            event.count
            for event in EventQueue(device.folder / EVENTS_QUEUE).pending()
            if event.category is EventCategory.APP_CRASH
        )
        seen = self.world.client.device(self.world.tenant_id, device.device_id)
        status = seen.update_status
        events = stored.get(device.device_id, [])
        ids = Counter(event.event_id for event in events)
        return DeviceObservation(
            index=device.index,
            device_id=device.device_id,
            attestations=self.client.attestations(device.device_id),
            service_attestation=None
            if seen.last_attestation_result is None
            else seen.last_attestation_result.value,
            boot_error=boot_error,
            os_version=os_version,
            app_images=app_images,
            service_os_version=None if status is None else status.os_version,
            service_images=frozenset() if status is None else frozenset(status.installed_images),
            crashes_filed=device.crashes_filed,
            crashes_stored=sum(event.count for event in events),
            crashes_pending=pending,
            duplicate_event_ids=sum(1 for n in ids.values() if n > 1),
            errors=tuple(device.errors),
        )

    def _stored_crashes(self) -> dict[str, list[StoredEvent]]:
        """Per device, the AppCrash events of the service's error report (every page)."""
        stored: dict[str, list[StoredEvent]] = {}
        since = self.start - dt.timedelta(days=1)
        for row in self.world.client.error_report(self.world.tenant_id, since=since.isoformat()):
            if row.event_category == EventCategory.APP_CRASH.value:
                stored.setdefault(row.device_id, []).append(
                    StoredEvent(row.event_id, row.event_count)
                )
        return stored

    def _attestations(self) -> int:
        return sum(self.client.attestations(d.device_id) for d in self.devices)

    def _each(self, action: Callable[[SimDevice], None]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for _ in pool.map(action, self.devices):
                pass
