"""The app runtime of one device: checks apps in, runs them, serves their applibs calls.

Secure boot creates one ``Runtime`` per boot, calls ``start()``, then ``launch_app`` for every
verified app. Tests do the same with folders they write. The runtime keeps its files in the
device folder: ``run/control.sock``, ``run/runtime/`` (applibs for apps; rebuilt each start),
``events/queue.json`` (AppCrash and AppExit events, in the failure-report queue) and
``logs/apps/`` (each app's output).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final
from uuid import UUID

import opensphere.device.applibs as applibs_package
from opensphere.device.flash import EVENTS_QUEUE
from opensphere.device.reporting.queue import EventQueue
from opensphere.device.runtime.board import VIRTUAL_BOARD, BoardDefinition, VirtualBoard
from opensphere.device.runtime.control import CONTROL_SOCKET, ControlServer, runtime_answers
from opensphere.device.runtime.events import EventSink, QueueEventSink
from opensphere.device.runtime.launch import AppLaunch, AppRefusedError
from opensphere.device.runtime.network import ALL_INTERFACES, NetworkBroker
from opensphere.device.runtime.policy import BoardMismatchError, RestartPolicy, grants_for
from opensphere.device.runtime.sandbox import (
    AppLimits,
    Isolation,
    app_uid,
    probe_isolation,
    warn_if_unisolated,
)
from opensphere.device.runtime.storage import MutableStorage
from opensphere.device.runtime.supervisor import AppStatus, AppSupervisor, DeviceServices
from opensphere.device.runtime.updates import UpdateDeferrals

RUNTIME_FOLDER: Final = Path("run", "runtime")  # volatile, like all of run/

log = logging.getLogger(__name__)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UnknownAppError(LookupError):
    """No app with that component ID or name is known to the runtime."""


class Runtime:
    def __init__(
        self,
        device_folder: Path,
        *,
        board: BoardDefinition = VIRTUAL_BOARD,
        events: EventSink | None = None,
        restart: RestartPolicy | None = None,
        limits: AppLimits | None = None,
        isolation: Isolation | None = None,
        server_address: str = ALL_INTERFACES,
        device_certificate: Path | None = None,
        device_tenant: UUID | None = None,
        now: Callable[[], dt.datetime] = _utc_now,
        stop_grace: float = 3.0,
    ) -> None:
        """``isolation`` None probes the machine; ``device_certificate`` is the file that
        ``deviceauth.certificate_path`` exposes: its folder is shown to apps granted
        DeviceAuthentication, so it must hold nothing secret."""
        self.device_folder = device_folder
        self.board = VirtualBoard(board)
        self.updates = UpdateDeferrals()
        self._limits = limits or AppLimits()
        self.events = events or QueueEventSink(
            EventQueue(device_folder / EVENTS_QUEUE),
            device_folder=device_folder,
            memory_limit_bytes=self._limits.memory_bytes,
        )
        self._requested_isolation = isolation
        self._restart = restart or RestartPolicy()
        self._broker = NetworkBroker(server_address=server_address)
        self._device_certificate = device_certificate
        self._device_tenant = device_tenant
        self._now = now
        self._stop_grace = stop_grace
        self._lock = threading.RLock()
        self._apps: dict[UUID, AppSupervisor] = {}
        self._device: DeviceServices | None = None
        self._control: ControlServer | None = None

    @property
    def isolation(self) -> Isolation:
        return self._started().isolation

    @property
    def control_socket_path(self) -> Path:
        return self.device_folder / CONTROL_SOCKET

    def start(self) -> None:
        """Choose the isolation (warning if apps cannot be isolated), prepare ``run/``."""
        with self._lock:
            if self._device is not None:
                return
            if runtime_answers(self.control_socket_path):
                raise RuntimeError(f"another runtime is running for {self.device_folder}")
            if self._requested_isolation is None:
                isolation, reason = probe_isolation()
            else:
                isolation, reason = self._requested_isolation, "chosen by the caller"
            warn_if_unisolated(isolation, reason)
            log.info("app runtime isolation: %s (%s)", isolation.value, reason)
            run = self.device_folder / RUNTIME_FOLDER
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True, mode=0o700)
            self._device = DeviceServices(
                isolation=isolation,
                device_folder=self.device_folder,
                applibs_folder=_install_applibs(run / "applibs"),
                board=self.board,
                broker=self._broker,
                updates=self.updates,
                events=self.events,
                limits=self._limits,
                restart=self._restart,
                device_certificate=self._device_certificate,
                device_tenant=self._device_tenant,
                now=self._now,
                stop_grace=self._stop_grace,
            )
            self._control = ControlServer(self, self.control_socket_path)
            self._control.start()

    def close(self) -> None:
        """Stop every app and the control socket."""
        if self._control is not None:
            self._control.close()
        with self._lock:
            apps = list(self._apps.values())
        for app in apps:
            app.stop()

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def add_app(self, launch: AppLaunch) -> None:
        """Check an app in without starting it; refused with every reason found."""
        device = self._started()
        problems = self._problems(launch, device.isolation)
        try:
            grants = grants_for(launch.manifest, device.board.definition)
        except BoardMismatchError as exc:
            problems.extend(exc.problems)
        if problems:
            raise AppRefusedError(launch.label, problems)
        storage = None
        if grants.storage_bytes is not None and launch.storage_folder is not None:
            storage = MutableStorage(launch.storage_folder, quota=grants.storage_bytes)
            storage.prepare()
        uid = None
        if device.isolation is Isolation.NAMESPACES:
            uid = app_uid(self.device_folder, launch.component_id)
        supervisor = AppSupervisor(launch, grants, storage, uid=uid, device=device)
        with self._lock:
            if launch.component_id in self._apps:
                raise AppRefusedError(launch.label, ["an app with this component ID is present"])
            self._apps[launch.component_id] = supervisor
        if grants.system_event_notifications:
            self.updates.subscribe(launch.component_id)

    def launch_app(self, launch: AppLaunch) -> None:
        """Check an app in and start it: what boot does for each verified app."""
        self.add_app(launch)
        self.start_app(launch.component_id)

    def start_app(self, component_id: UUID) -> None:
        self._app(component_id).start()

    def stop_app(self, component_id: UUID) -> None:
        self._app(component_id).stop()

    def remove_app(self, component_id: UUID) -> None:
        """Stop an app and forget it (before installing another version)."""
        app = self._app(component_id)
        app.stop()
        with self._lock:
            self._apps.pop(component_id, None)
        self.updates.unsubscribe(component_id)

    def find_app(self, reference: str) -> UUID:
        """The component ID of the app named by its component ID or its name."""
        with self._lock:
            for component_id, app in self._apps.items():
                if reference in (str(component_id), app.launch.manifest.name):
                    return component_id
        raise UnknownAppError(f"no app {reference!r} on this device")

    def status(self) -> list[AppStatus]:
        with self._lock:
            apps = list(self._apps.values())
        return [app.status() for app in apps]

    def app_status(self, component_id: UUID) -> AppStatus:
        return self._app(component_id).status()

    def _app(self, component_id: UUID) -> AppSupervisor:
        with self._lock:
            app = self._apps.get(component_id)
        if app is None:
            raise UnknownAppError(f"no app {component_id} on this device")
        return app

    def _started(self) -> DeviceServices:
        if self._device is None:
            raise RuntimeError("call Runtime.start() first")
        return self._device

    def _problems(self, launch: AppLaunch, isolation: Isolation) -> list[str]:
        problems: list[str] = []
        if launch.component_id != launch.manifest.component_id:
            problems.append(
                f"the image is component {launch.component_id}, "
                f"its manifest says {launch.manifest.component_id}"
            )
        entry = launch.app_folder / launch.manifest.entry_point_path
        if not entry.is_file():
            problems.append(f"the entry point {launch.manifest.entry_point} is not in the app")
        elif isolation is Isolation.NAMESPACES and not _readable_by_others(
            launch.app_folder, entry
        ):
            problems.append("the app's files must be readable by others: it runs as its own user")
        if launch.manifest.capabilities.mutable_storage is not None:
            if launch.storage_folder is None:
                problems.append("its manifest grants MutableStorage but it has no storage folder")
            else:
                problems.extend(self._shared_storage(launch.storage_folder.resolve()))
        return problems

    def _shared_storage(self, folder: Path) -> list[str]:
        with self._lock:
            return [
                f"its storage folder is {other.launch.label}'s"
                for other in self._apps.values()
                if other.launch.storage_folder is not None
                and other.launch.storage_folder.resolve() == folder
            ]


def _readable_by_others(app_folder: Path, entry: Path) -> bool:
    folders = [app_folder / parent for parent in entry.relative_to(app_folder).parents]
    if not all(os.stat(folder).st_mode & stat.S_IXOTH for folder in folders):
        return False
    return bool(entry.stat().st_mode & stat.S_IROTH)


def _install_applibs(destination: Path) -> Path:
    """Copy applibs into a folder of its own: the only package on an app's path besides its own.

    Returns the folder to put on the app's path (it holds ``applibs/``).
    """
    source = Path(applibs_package.__file__).parent
    package = destination / "applibs"
    package.mkdir(parents=True, mode=0o755)
    destination.chmod(0o755)
    for module in sorted(source.glob("*.py")):
        target = package / module.name
        shutil.copyfile(module, target)
        target.chmod(0o644)
    return destination
