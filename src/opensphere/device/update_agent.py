"""The device's update agent: one update check, from trust to a confirmed (or rolled back) update.

It is the shell around `update_plan` (what to do) and python-tuf's ngclient
(`opensphere.updates.client`: every byte verified before use). One `check`:

1. learn the tenant's trust over the device credential (TUF root on first contact, the tenant's
   app-signing key into `keystore/tenant-keys.json`),
2. refresh the TUF metadata and read the group's manifest,
3. plan against what the device runs,
4. download what the plan needs (resumable: an interrupted download continues next time),
5. verify and stage: an OS release into the inactive slot, marked for one trial boot,
6. let apps defer (`SoftwareUpdateDeferral`, at most 24 h after the announcement),
7. install apps on trial, remove the ones the deployment dropped,
8. reboot through the host, run its health check,
9. confirm — only now do the anti-rollback fuses rise — or roll everything back, reboot into
   the old images and report the failure.

Each step is reported to the service (`POST /v1/device/update-status`, a growing `sequence`)
and update outcomes go into the failure-report queue. A power cut anywhere leaves a device
that boots verified images: staging never touches the active slot, the trial records are the
commit points, and a trial that was not confirmed before the next boot is rolled back by boot.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.client import Client, ClientError
from opensphere.device.boot import BootResult, confirm_boot
from opensphere.device.errors import DeviceError, ImageRefusedError
from opensphere.device.events import ErrorEvent, EventType, record_event
from opensphere.device.flash import DeviceFlash, make_durable_dir, write_atomically
from opensphere.device.install import (
    confirm_app_trial,
    install_app_trial,
    remove_app,
    roll_back_app_trial,
    stage_os_release,
)
from opensphere.device.keystore import KeyUsage, TrustedKey, TrustedKeyStore
from opensphere.device.runtime.updates import UpdateDeferrals
from opensphere.device.update_plan import (
    DeviceImages,
    OfferedImage,
    OfferError,
    UpdatePlan,
    plan_update,
)
from opensphere.formats.errors import FormatError
from opensphere.formats.image_package import parse_package
from opensphere.rot import RootOfTrust
from opensphere.updates.client import (
    DownloadedTarget,
    UntrustedDataError,
    UpdateClientError,
    UpdateSession,
    init_trust,
)
from opensphere.updates.repository import Channel

UPDATES_FOLDER: Final = "updates"
STATE_FILE: Final = "state.json"
DEFAULT_CHECK_INTERVAL: Final = dt.timedelta(hours=20)
CHECKED_REPORT_INTERVAL: Final = dt.timedelta(hours=24)
MAX_REASON: Final = 200
DEFAULT_DEFERRAL_GRACE: Final = 2.0

log = logging.getLogger(__name__)


class UpdateOutcome(StrEnum):
    UP_TO_DATE = "up-to-date"
    WAITING = "waiting-for-rollout"
    NO_GROUP = "no-device-group"
    INTERRUPTED = "download-interrupted"
    DEFERRED = "deferred"
    INSTALLED = "installed"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True, slots=True)
class CheckResult:
    outcome: UpdateOutcome
    plan: UpdatePlan | None = None
    reason: str | None = None
    deferred_until: dt.datetime | None = None
    resumed_bytes: int = 0


class UpdateHost(Protocol):
    """What the agent needs from the device around it: rebooting and judging the result."""

    def reboot(self) -> BootResult:
        """Power-cycle into whatever boot control and the app trial say (nothing confirmed)."""
        ...

    def health_check(self, boot: BootResult) -> str | None:
        """None when the freshly booted images are healthy, else why not."""
        ...


@dataclass
class _AgentState:
    """`updates/state.json`: report sequence, images that failed here, the last report."""

    sequence: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    last_report: str = ""
    last_report_at: str = ""

    @classmethod
    def load(cls, path: Path) -> _AgentState:
        try:
            raw = json.loads(path.read_bytes())
            return cls(
                sequence=int(raw["sequence"]),
                failed={str(k): str(v) for k, v in dict(raw["failed"]).items()},
                last_report=str(raw.get("last_report", "")),
                last_report_at=str(raw.get("last_report_at", "")),
            )
        except FileNotFoundError:
            return cls()
        except (ValueError, TypeError, KeyError) as exc:
            # Only bookkeeping lives here: start afresh rather than stop updating for good.
            log.warning("update agent state %s is damaged (%s); starting afresh", path, exc)
            return cls()

    def save(self, path: Path) -> None:
        document = {
            "sequence": self.sequence,
            "failed": self.failed,
            "last_report": self.last_report,
            "last_report_at": self.last_report_at,
        }
        write_atomically(path, json.dumps(document, sort_keys=True).encode())


class UpdateAgent:
    """Runs update checks for one device folder against one service."""

    def __init__(
        self,
        folder: Path,
        *,
        rot: RootOfTrust,
        client: Client,
        credential: Callable[[], str],
        host: UpdateHost,
        deferrals: UpdateDeferrals | None = None,
        deferral_grace: float = DEFAULT_DEFERRAL_GRACE,
    ) -> None:
        self._flash = DeviceFlash(folder)
        self._folder = Path(folder) / UPDATES_FOLDER
        self._rot = rot
        self._client = client
        self._credential = credential
        self._host = host
        self.deferrals = deferrals
        self.deferral_grace = deferral_grace
        self.last_boot: BootResult | None = None
        self._state_path = self._folder / STATE_FILE

    @property
    def metadata_dir(self) -> Path:
        return self._folder / "metadata"

    @property
    def target_dir(self) -> Path:
        return self._folder / "targets"

    def check(self, boot: BootResult, *, now: dt.datetime) -> CheckResult:
        """One update check; returns what happened. Network failures raise ClientError or
        `UpdateClientError` subclasses other than `UntrustedDataError`, and leave nothing
        half-done: the next check picks up where this one stopped."""
        make_durable_dir(self._folder)
        state = _AgentState.load(self._state_path)
        credential = self._credential()
        headers = {"Authorization": f"Device {credential}"}
        trust = self._client.device_trust(credential)
        self._install_trust(trust)
        if trust.device_group_id is None:
            return CheckResult(UpdateOutcome.NO_GROUP)
        base = self._client.base_url
        session = UpdateSession(
            self.metadata_dir,
            base + trust.metadata_path,
            target_dir=self.target_dir,
            target_base_url=base + trust.targets_path,
            headers=headers,
        )
        try:
            session.refresh()
            targets = session.channel_targets(Channel.group(trust.device_group_id))
            offered = [OfferedImage.from_custom(t.path, t.custom) for t in targets]
        except (UntrustedDataError, OfferError) as exc:
            self._report(state, credential, now, schemas.UpdateState.FAILED, None, boot, str(exc))
            return CheckResult(UpdateOutcome.FAILED, reason=_short(str(exc)))
        plan = plan_update(offered, self._device_images(boot, state), device_id=self._rot.device_id)
        if plan.empty:
            waiting = plan.waiting_for_rollout
            outcome = UpdateOutcome.WAITING if waiting else UpdateOutcome.UP_TO_DATE
            self._report(
                state, credential, now, schemas.UpdateState.CHECKED, plan.deployment_id, boot
            )
            return CheckResult(outcome, plan)
        return self._apply(plan, session, boot, state, credential, now)

    def _apply(
        self,
        plan: UpdatePlan,
        session: UpdateSession,
        boot: BootResult,
        state: _AgentState,
        credential: str,
        now: dt.datetime,
    ) -> CheckResult:
        deployment = plan.deployment_id
        self._report(state, credential, now, schemas.UpdateState.DOWNLOADING, deployment, boot)
        downloaded: dict[UUID, DownloadedTarget] = {}
        try:
            for image in plan.downloads:
                target = session.find_target(image.target_path)
                downloaded[image.image_id] = session.download(target)
        except UntrustedDataError as exc:
            reason = f"download refused: {exc}"
            failed = schemas.UpdateState.FAILED
            self._report(state, credential, now, failed, deployment, boot, reason)
            return CheckResult(UpdateOutcome.FAILED, plan, _short(reason))
        except UpdateClientError as exc:
            log.info("update download interrupted, resuming at the next check: %s", exc)
            return CheckResult(UpdateOutcome.INTERRUPTED, plan, _short(str(exc)))
        resumed = sum(d.resumed_from for d in downloaded.values())

        def data(image: OfferedImage) -> bytes:
            return downloaded[image.image_id].path.read_bytes()

        stamp = int(now.timestamp())
        try:
            if plan.os_release:
                stage_os_release(self._flash, self._rot, [data(i) for i in plan.os_release])
        except (ImageRefusedError, DeviceError, FormatError) as exc:
            return self._failed(plan, state, credential, now, boot, f"OS release refused: {exc}")
        self._report(state, credential, now, schemas.UpdateState.STAGED, deployment, boot)

        if self.deferrals is not None:
            self.deferrals.announce("System" if plan.os_release else "App", now)
            if self.deferrals.has_listeners():
                time.sleep(self.deferral_grace)  # apps poll for events: give them time to answer
            until = self.deferrals.deferred_until(now)
            if until is not None:
                return CheckResult(UpdateOutcome.DEFERRED, plan, deferred_until=until)

        try:
            if plan.install_apps:
                install_app_trial(
                    self._flash, self._rot, [data(i) for i in plan.install_apps], now=stamp
                )
            for component_id in plan.remove_apps:
                remove_app(self._flash, component_id)
        except (ImageRefusedError, DeviceError, FormatError) as exc:
            self._undo_staging()
            return self._failed(plan, state, credential, now, boot, f"app refused: {exc}")

        rebooted = self._host.reboot()
        settled, problem = self.settle(rebooted, now=now, plan=plan)
        self._finish_deferral(now)
        if problem is not None:
            state = _AgentState.load(self._state_path)
            self._report(
                state, credential, now, schemas.UpdateState.FAILED, deployment, settled, problem
            )
            return CheckResult(UpdateOutcome.ROLLED_BACK, plan, _short(problem))
        for image in plan.downloads:
            kind = EventType.OS_UPDATED if image.is_os else EventType.APP_UPDATED
            record_event(
                self._flash,
                ErrorEvent(
                    kind,
                    "os" if image.is_os else "app",
                    "installed and confirmed",
                    stamp,
                    component_id=str(image.component_id),
                    image_id=str(image.image_id),
                ),
            )
        self._report(state, credential, now, schemas.UpdateState.INSTALLED, deployment, settled)
        return CheckResult(UpdateOutcome.INSTALLED, plan, resumed_bytes=resumed)

    def settle(
        self, boot: BootResult, *, now: dt.datetime, plan: UpdatePlan | None = None
    ) -> tuple[BootResult, str | None]:
        """Judge a boot that runs images on trial: confirm them (fuses rise only now), or roll
        them back, reboot into the previous images and remember the trial's images as failed.

        Called after the agent's own reboot and at power-on, when a power cut interrupted an
        update between its reboot and its confirmation."""
        self.last_boot = boot
        if not boot.trial and not boot.app_trial:
            return boot, None
        problem = (_trial_problem(plan, boot) if plan else None) or self._host.health_check(boot)
        if problem is None:
            if boot.trial:
                confirm_boot(self._flash, self._rot, boot)
            confirm_app_trial(self._flash, self._rot)
            return boot, None
        tried = [i.metadata.identity.image_id for i in boot.os_images] if boot.trial else []
        tried += [
            app.image.metadata.identity.image_id
            for app in boot.apps
            if app.manifest.component_id in boot.app_trial
        ]
        tried += [i.image_id for i in plan.downloads] if plan else []
        reason = _short(f"rolled back: {problem}")
        state = _AgentState.load(self._state_path)
        for image_id in tried:
            state.failed[str(image_id)] = reason
        state.save(self._state_path)
        record_event(
            self._flash,
            ErrorEvent(EventType.UPDATE_FAILED, "update", reason, int(now.timestamp())),
        )
        roll_back_app_trial(self._flash)
        self.last_boot = self._host.reboot()  # an unconfirmed OS trial rolls back at this boot
        return self.last_boot, reason

    def _failed(
        self,
        plan: UpdatePlan,
        state: _AgentState,
        credential: str,
        now: dt.datetime,
        boot: BootResult,
        reason: str,
    ) -> CheckResult:
        """Remember the images as failed here, file the event, tell the service."""
        for image in plan.downloads:
            state.failed[str(image.image_id)] = _short(reason)
        record_event(
            self._flash,
            ErrorEvent(EventType.UPDATE_FAILED, "update", _short(reason), int(now.timestamp())),
        )
        self._report(
            state, credential, now, schemas.UpdateState.FAILED, plan.deployment_id, boot, reason
        )
        return CheckResult(UpdateOutcome.FAILED, plan, _short(reason))

    def _undo_staging(self) -> None:
        """Drop a staged OS release that will not be installed (nothing boots it)."""
        control = self._flash.read_control()
        if control.trial is not None:
            self._flash.write_control(type(control)(active=control.active))

    def _finish_deferral(self, now: dt.datetime) -> None:
        if self.deferrals is not None:
            self.deferrals.finish(now)

    def _install_trust(self, trust: schemas.DeviceTrust) -> None:
        """Trust the tenant's TUF root once (later roots come through TUF) and its app keys."""
        if not (self.metadata_dir / "root.json").exists():
            init_trust(self.metadata_dir, trust.tuf_root.encode())
        keys = []
        for entry in trust.image_signing_keys:
            public_key = serialization.load_pem_public_key(entry.public_key.encode())
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise DeviceError(f"tenant key {entry.name!r} is not an EC key")
            keys.append(TrustedKey(entry.name[:64], public_key, frozenset({KeyUsage.APP})))
        store = TrustedKeyStore(tuple(keys))
        if store != self._flash.read_tenant_keys():
            self._flash.write_tenant_keys(store)

    def _device_images(self, boot: BootResult, state: _AgentState) -> DeviceImages:
        tenant = self._flash.read_tenant_keys().for_usage(KeyUsage.APP)
        cloud_apps = {}
        for path in self._flash.installed_image_files():
            try:
                package = parse_package(path.read_bytes())
            except FormatError:
                continue
            if package.signer_thumbprint in tenant:
                identity = package.metadata.identity
                cloud_apps[identity.component_id] = identity.image_id
        return DeviceImages(
            os_images={
                image.metadata.identity.component_id: image.metadata.identity.image_id
                for image in boot.os_images
            },
            cloud_apps=cloud_apps,
            development_mode=boot.development_mode,
            failed_images=frozenset(UUID(key) for key in state.failed),
            manages_os=bool(boot.os_images),
        )

    def _report(
        self,
        state: _AgentState,
        credential: str,
        now: dt.datetime,
        update_state: schemas.UpdateState,
        deployment_id: UUID | None,
        boot: BootResult,
        reason: str | None = None,
    ) -> None:
        """Tell the service; a repeated `checked` goes at most once a day. Best effort: a
        report that does not arrive is replaced by the next one (higher sequence)."""
        installed = sorted(
            {i.metadata.identity.image_id for i in boot.os_images}
            | {app.image.metadata.identity.image_id for app in boot.apps}
        )
        summary = json.dumps([update_state, str(deployment_id), [str(i) for i in installed]])
        if (
            update_state is schemas.UpdateState.CHECKED
            and summary == state.last_report
            and state.last_report_at
            and now - dt.datetime.fromisoformat(state.last_report_at) < CHECKED_REPORT_INTERVAL
        ):
            return
        state.sequence += 1
        state.last_report, state.last_report_at = summary, now.isoformat()
        state.save(self._state_path)
        report = schemas.UpdateStatusReport(
            sequence=state.sequence,
            deployment_id=deployment_id,
            state=update_state,
            reason=None if reason is None else _reason_text(reason),
            installed_images=installed[:64],
            os_version=boot.os_version or None,
        )
        try:
            self._client.report_update_status(credential, report)
        except ClientError as exc:
            log.info("update status not delivered (the next report replaces it): %s", exc)


def _trial_problem(plan: UpdatePlan, boot: BootResult) -> str | None:
    """Did the reboot run what was installed? A refused trial slot falls back silently."""
    if plan.os_release and not boot.trial:
        return "the new OS release did not boot"
    booted = {app.image.metadata.identity.image_id for app in boot.apps} | {
        config.metadata.identity.image_id for config in boot.board_configs
    }
    refused = [i for i in plan.install_apps if i.image_id not in booted]
    if refused:
        return f"app image {refused[0].image_id} did not boot"
    return None


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _reason_text(text: str) -> str:
    """The service accepts printable text of at most 200 characters."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return _short(printable)
