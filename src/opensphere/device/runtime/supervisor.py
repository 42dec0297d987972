"""Runs one app as its own process and keeps it running (reference §3.2, §3.9).

A high-level app is expected never to stop. When it does, the supervisor records an AppCrash
(signal or non-zero status) or AppExit event and starts it again after an exponential
back-off. A refused network request is also filed as a FirewallDenial event, at most once a
second per capability, so an app retrying in a tight loop costs no queue writes.

Each run gets a fresh applibs connection, network session and process group; all three are
torn down when the run ends, whatever the app left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Final
from uuid import UUID

from pydantic import BaseModel

from opensphere.device.reporting.queue import Occurrence
from opensphere.device.runtime.board import VirtualBoard
from opensphere.device.runtime.events import AppEvent, AppEventType, EventSink
from opensphere.device.runtime.launch import AppLaunch
from opensphere.device.runtime.launcher import LAUNCH_FAILED
from opensphere.device.runtime.network import NetworkBroker, NetworkSession
from opensphere.device.runtime.policy import CapabilityError, Grants, RestartPolicy, restart_delay
from opensphere.device.runtime.sandbox import AppLimits, Isolation, app_view, launch_command
from opensphere.device.runtime.services import AppContext, AppServices
from opensphere.device.runtime.storage import MutableStorage
from opensphere.device.runtime.updates import UpdateDeferrals
from opensphere.formats.error_events import EventCategory

MAX_LOG_BYTES: Final = 1024 * 1024
MAX_LINE_BYTES: Final = 64 * 1024
# Refusals of these capabilities are the app firewall at work, reported as FirewallDenial.
FIREWALL_CAPABILITIES: Final = frozenset(
    {"AllowedConnections", "AllowedTcpServerPorts", "AllowedUdpServerPorts"}
)
DENIAL_FILING_INTERVAL: Final = 1.0  # seconds between filings per capability

log = logging.getLogger(__name__)


class AppState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting-to-restart"
    STOPPED = "stopped"


class AppStatus(BaseModel):
    """One app as ``app show-status`` reports it."""

    component_id: UUID
    name: str
    image_id: UUID
    state: AppState
    pid: int | None
    uid: int | None
    restarts: int
    crashes: int
    last_exit: str | None
    last_exit_time: dt.datetime | None
    refusals: dict[str, int]
    log: str


@dataclass(frozen=True)
class DeviceServices:
    """What every app's supervisor shares: the device and the runtime's settings."""

    isolation: Isolation
    device_folder: Path
    applibs_folder: Path
    board: VirtualBoard
    broker: NetworkBroker
    updates: UpdateDeferrals
    events: EventSink
    limits: AppLimits
    restart: RestartPolicy
    device_certificate: Path | None
    device_tenant: UUID | None
    now: Callable[[], dt.datetime]
    stop_grace: float


LOG_TAIL_BYTES = 16 * 1024


class AppLog:
    """The app's stdout and stderr, plus the runtime's notes about it; kept under 1 MiB.

    App output is written a whole line at a time, so that notes never land inside a line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(data) > MAX_LOG_BYTES:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("ab") as handle:
                handle.write(data)

    def tail(self, size: int) -> str:
        """The last `size` bytes the app wrote (a Python fault prints its traceback there)."""
        with self._lock:
            try:
                with self.path.open("rb") as handle:
                    handle.seek(max(0, handle.seek(0, os.SEEK_END) - size))
                    return handle.read().decode(errors="replace")
            except OSError:
                return ""

    def note(self, text: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.write(f"[runtime {stamp}] {text}\n".encode())


class AppSupervisor:
    def __init__(
        self,
        launch: AppLaunch,
        grants: Grants,
        storage: MutableStorage | None,
        *,
        uid: int | None,
        device: DeviceServices,
    ) -> None:
        self.launch = launch
        self.grants = grants
        self.log = AppLog(device.device_folder / "logs" / "apps" / f"{launch.component_id}.log")
        self._storage = storage
        self._uid = uid
        self._device = device
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._state = AppState.STOPPED
        self._restarts = 0
        self._crashes = 0
        self._last_exit: AppEvent | None = None
        self._refusals: Counter[str] = Counter()
        self._denials_filed: dict[str, float] = {}  # capability: monotonic time of last filing

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._state = AppState.RUNNING
            self._thread = threading.Thread(
                target=self._supervise, name=f"app-{self.launch.manifest.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Ask the app to stop (SIGTERM), kill it after the grace period; records no event."""
        with self._lock:
            thread = self._thread
            self._stopping.set()
        if thread is None:
            return
        self._signal_group(signal.SIGTERM)
        thread.join(self._device.stop_grace)
        if thread.is_alive():
            self._signal_group(signal.SIGKILL)
            thread.join()

    def status(self) -> AppStatus:
        with self._lock:
            process, last = self._process, self._last_exit
            return AppStatus(
                component_id=self.launch.component_id,
                name=self.launch.manifest.name,
                image_id=self.launch.image_id,
                state=self._state,
                pid=process.pid if process is not None else None,
                uid=self._uid,
                restarts=self._restarts,
                crashes=self._crashes,
                last_exit=last.reason if last is not None else None,
                last_exit_time=last.time if last is not None else None,
                refusals=dict(self._refusals),
                log=str(self.log.path),
            )

    def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            returncode = self._run_once()
            if self._stopping.is_set():
                break
            self._record(returncode)
            ran_for = time.monotonic() - started
            failures = 1 if ran_for >= self._device.restart.reset_after else failures + 1
            delay = restart_delay(self._device.restart, failures)
            self.log.note(f"restarting in {delay:g} s")
            with self._lock:
                self._state = AppState.WAITING
            if self._stopping.wait(delay):
                break
            with self._lock:
                self._restarts += 1
                self._state = AppState.RUNNING
        with self._lock:
            self._state = AppState.STOPPED

    def _run_once(self) -> int:
        """One run of the app, from spawn to clean-up; returns its return code."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        network = self._device.broker.session(self.grants, on_refusal=self._refused)
        try:
            try:
                with theirs:
                    process = self._spawn(theirs)
            except OSError as exc:
                self.log.note(f"could not start: {exc}")
                return LAUNCH_FAILED
            if process is None:
                return 0  # stopped before it started
            self.log.note(f"started, pid {process.pid}")
            helpers = [
                threading.Thread(
                    target=AppServices(self._context(network)).serve, args=(ours,), daemon=True
                ),
                threading.Thread(target=self._pump_output, args=(process.stdout,), daemon=True),
            ]
            for helper in helpers:
                helper.start()
            returncode = process.wait()
            self._signal_group(signal.SIGKILL)  # anything the app left running in its group
            with contextlib.suppress(OSError):
                ours.shutdown(socket.SHUT_RDWR)
            network.close()
            for helper in helpers:
                helper.join(timeout=5)
            with self._lock:
                self._process = None
            return returncode
        finally:
            network.close()
            ours.close()

    def _spawn(self, theirs: socket.socket) -> subprocess.Popen[bytes] | None:
        device = self._device
        command = launch_command(
            isolation=device.isolation,
            manifest=self.launch.manifest,
            app_folder=self.launch.app_folder,
            applibs_folder=device.applibs_folder,
            device_auth_folder=self._device_auth_folder(),
            uid=self._uid,
            limits=device.limits,
            applibs_fd=theirs.fileno(),
        )
        with self._lock:
            if self._stopping.is_set():
                return None
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),),
                env={},
                cwd="/",
                start_new_session=True,
            )
            return self._process

    def _context(self, network: NetworkSession) -> AppContext:
        device = self._device
        certificate = device.device_certificate
        view = app_view(
            device.isolation,
            app_folder=self.launch.app_folder,
            applibs_folder=device.applibs_folder,
            device_auth=self._device_auth_folder(),
        )
        seen_as = None
        if certificate is not None and view.device_auth_folder is not None:
            seen_as = f"{view.device_auth_folder}/{certificate.name}"
        return AppContext(
            component_id=self.launch.component_id,
            grants=self.grants,
            board=device.board,
            storage=self._storage,
            network=network,
            updates=device.updates,
            device_certificate=certificate,
            device_certificate_for_app=seen_as,
            device_tenant=device.device_tenant,
            now=device.now,
            on_refusal=self._refused,
        )

    def _device_auth_folder(self) -> Path | None:
        certificate = self._device.device_certificate
        if certificate is None or self.grants.device_authentication is None:
            return None
        return certificate.parent

    def _record(self, returncode: int) -> None:
        event = AppEvent.from_returncode(
            returncode,
            time=self._device.now(),
            component_id=self.launch.component_id,
            image_id=self.launch.image_id,
            app_name=self.launch.manifest.name,
            log_tail=self.log.tail(LOG_TAIL_BYTES),
        )
        self.log.note(f"{event.event_type.value}: {event.reason}")
        with self._lock:
            self._last_exit = event
            if event.event_type is AppEventType.APP_CRASH:
                self._crashes += 1
        try:
            self._device.events.record(event)
        except OSError:
            log.exception("could not record %s for %s", event.event_type, self.launch.label)

    def _refused(self, refusal: CapabilityError) -> None:
        capability = refusal.capability
        now = time.monotonic()
        with self._lock:
            self._refusals[capability] += 1
            last = self._denials_filed.get(capability)
            file_denial = capability in FIREWALL_CAPABILITIES and (
                last is None or now - last >= DENIAL_FILING_INTERVAL
            )
            if file_denial:
                self._denials_filed[capability] = now
        self.log.note(f"refused: {refusal}")
        log.info("%s refused: %s", self.launch.label, refusal)
        if file_denial:
            self._file_denial(refusal)

    def _file_denial(self, refusal: CapabilityError) -> None:
        occurrence = Occurrence(
            category=EventCategory.FIREWALL_DENIAL,
            component_id=self.launch.component_id,
            image_id=self.launch.image_id,
            detail=f"{self.launch.manifest.name}: {refusal}",
        )
        try:
            self._device.events.record_occurrence(occurrence, time=self._device.now())
        except OSError:
            log.exception("could not record a firewall denial for %s", self.launch.label)

    def _pump_output(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        pending = bytearray()
        with stream:
            descriptor = stream.fileno()
            for chunk in iter(lambda: os.read(descriptor, 65536), b""):
                pending += chunk
                # Whole lines, or everything once a line grows too long to hold back.
                end = len(pending) if len(pending) > MAX_LINE_BYTES else pending.rfind(b"\n") + 1
                if end:
                    self.log.write(bytes(pending[:end]))
                    del pending[:end]
        if pending:
            self.log.write(bytes(pending) + b"\n")

    def _signal_group(self, signo: signal.Signals) -> None:
        with self._lock:
            process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signo)
