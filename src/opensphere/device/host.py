"""One running emulated device: power-on, its apps, and the agent's schedule until it stops.

`DeviceHost` ties the parts together the way the device's OS does: secure boot, the app runtime
(optional: a host without it boots and updates images but starts no app processes), attestation
(`DeviceAgent`), update checks (`UpdateAgent`) and failure reporting (`reporting.uploader`).
It is the `UpdateHost` of the update agent: `reboot` stops the apps, boots the flash again and
starts the apps that verified; `health_check` watches the apps for a while after an update.

Schedule (`run`): at power-on attest, check for updates and upload error reports; then check
every `check_interval` (about 20 h by default) and upload at least every `report_interval`
(a day) and after every reboot an update caused; `check_now` (SIGUSR1 from
`sphere agent check-now`) forces a check at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from uuid import UUID

from opensphere.client import ApiError, Client, ClientError
from opensphere.device.agent import DeviceAgent
from opensphere.device.boot import BootResult
from opensphere.device.errors import DeviceError
from opensphere.device.reporting.uploader import UploadResult, report
from opensphere.device.runtime import AppLaunch, Runtime
from opensphere.device.runtime.launch import AppRefusedError
from opensphere.device.update_agent import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_DEFERRAL_GRACE,
    CheckResult,
    UpdateAgent,
    UpdateOutcome,
)
from opensphere.rot import RootOfTrust
from opensphere.updates.client import UpdateClientError

DEFAULT_REPORT_INTERVAL: Final = dt.timedelta(hours=24)
DEFAULT_HEALTH_WINDOW: Final = 5.0
REBOOTED: Final = frozenset({UpdateOutcome.INSTALLED, UpdateOutcome.ROLLED_BACK})

log = logging.getLogger(__name__)
T = TypeVar("T")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class HostSettings:
    run_apps: bool = True
    health_window: float = DEFAULT_HEALTH_WINDOW
    check_interval: dt.timedelta = DEFAULT_CHECK_INTERVAL
    report_interval: dt.timedelta = DEFAULT_REPORT_INTERVAL
    deferral_grace: float = DEFAULT_DEFERRAL_GRACE


class DeviceHost:
    def __init__(
        self,
        folder: Path,
        *,
        rot: RootOfTrust,
        client: Client,
        settings: HostSettings = HostSettings(),
        now: Callable[[], dt.datetime] = _utc_now,
        attestation: DeviceAgent | None = None,
    ) -> None:
        """`attestation` boots and attests; the default is the emulated device's own (a TPM
        host passes `tpm_agent.TpmAttestation`)."""
        self.folder = Path(folder)
        self.rot = rot
        self.settings = settings
        self._client = client
        self._now = now
        self.attestation = attestation or DeviceAgent(self.folder, rot=rot, client=client)
        self._runtime: Runtime | None = None
        self._boot: BootResult | None = None
        self.updates = UpdateAgent(
            self.folder,
            rot=rot,
            client=client,
            credential=self.credential,
            host=self,
            deferral_grace=settings.deferral_grace,
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.powered_on = threading.Event()

    @property
    def boot_result(self) -> BootResult:
        if self._boot is None:
            raise RuntimeError("power the device on first")
        return self._boot

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    def power_on(self) -> BootResult:
        """Boot; an update left on trial by a power cut is judged and settled now."""
        booted = self._start(self.attestation.boot(now=self._now(), confirm_trial=False))
        self._boot, _ = self.updates.settle(booted, now=self._now())
        self.powered_on.set()
        return self._boot

    def credential(self) -> str:
        """The device credential, attesting first when the certificate is due (a day old)."""
        self.attestation.renew_if_due(now=self._now())
        return self.attestation.credential

    def check_for_updates(self) -> CheckResult:
        result = self._with_credential(
            lambda: self.updates.check(self.boot_result, now=self._now())
        )
        self._boot = self.updates.last_boot or self._boot
        return result

    def upload_reports(self) -> UploadResult:
        return self._with_credential(
            lambda: report(
                self.folder,
                device_id=self.rot.device_id,
                client=self._client,
                credential=self.credential(),
                now=int(self._now().timestamp()),
            )
        )

    def _with_credential(self, action: Callable[[], T]) -> T:
        """`action`, attesting again once if the service refuses the stored credential.

        A credential the service no longer honours (its keys were replaced, or it was issued
        in a format the service has dropped) would otherwise be refused until the daily
        renewal. A disabled device's attestation is refused in turn, and that refusal is
        what the caller sees.
        """
        try:
            return action()
        except ApiError as exc:
            if (exc.status, exc.code) != (403, "device_refused"):
                raise
            log.info("the service refused the device credential (%s): attesting again", exc)
        self.attestation.attest()
        return action()

    # --- UpdateHost -------------------------------------------------------------------

    def reboot(self) -> BootResult:
        self._stop_apps()
        self._boot = self._start(self.attestation.boot(now=self._now(), confirm_trial=False))
        return self._boot

    def health_check(self, boot: BootResult) -> str | None:
        """Apps that an update touched must not crash within the health window."""
        if self._runtime is None:
            return None
        watched = [
            app for app in boot.apps if boot.trial or app.manifest.component_id in boot.app_trial
        ]
        deadline = time.monotonic() + self.settings.health_window
        while True:
            for app in watched:
                status = self._runtime.app_status(app.manifest.component_id)
                if status.crashes:
                    return f"app {status.name} crashed at start ({status.last_exit})"
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    # --- running ----------------------------------------------------------------------

    def check_now(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Power on and keep the schedule until `stop`; network trouble only delays work."""
        self.power_on()
        try:
            next_check = next_report = self._now()
            while not self._stopping.is_set():
                now = self._now()
                if now >= next_check or self._wake.is_set():
                    self._wake.clear()
                    result = self._attempt("update check", self.check_for_updates)
                    next_check = self._now() + self.settings.check_interval
                    if isinstance(result, CheckResult) and result.outcome in REBOOTED:
                        next_report = now  # reports go out at every boot
                if now >= next_report:
                    self._attempt("error report upload", self.upload_reports)
                    next_report = self._now() + self.settings.report_interval
                wait = min(next_check, next_report) - self._now()
                self._wake.wait(max(0.0, min(wait.total_seconds(), 3600.0)))
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self._stop_apps()

    def _attempt(self, what: str, action: Callable[[], object]) -> object:
        try:
            outcome = action()
            log.info("%s: %s", what, outcome)
            return outcome
        except (ClientError, UpdateClientError, DeviceError) as exc:
            log.warning("%s did not complete (retried later): %s", what, exc)
            return None

    def _start(self, boot: BootResult) -> BootResult:
        if not self.settings.run_apps:
            return boot
        runtime = Runtime(
            self.folder,
            device_certificate=self.attestation.certificate_path,
            now=self._now,
        )
        runtime.start()
        self._runtime = runtime
        for app in boot.apps:
            launch = AppLaunch(
                manifest=app.manifest,
                app_folder=app.app_dir,
                component_id=app.manifest.component_id,
                image_id=app.image.metadata.identity.image_id,
                storage_folder=app.storage_dir,
            )
            try:
                runtime.launch_app(launch)
            except AppRefusedError as exc:
                log.warning("%s", exc)
        self.updates.deferrals = runtime.updates
        return boot

    def _stop_apps(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


def running_apps(host: DeviceHost) -> dict[UUID, str]:
    """Component → state of each app the host's runtime supervises (for tests and `status`)."""
    if host.runtime is None:
        return {}
    return {status.component_id: status.state.value for status in host.runtime.status()}
