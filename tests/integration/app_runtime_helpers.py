"""Writing test apps, running them on a real runtime, and watching what they do."""

from __future__ import annotations

import contextlib
import json
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from opensphere.device.flash import EVENTS_QUEUE
from opensphere.device.reporting.queue import EventQueue
from opensphere.device.runtime import AppLaunch, Isolation, RestartPolicy, Runtime
from opensphere.device.runtime.sandbox import probe_isolation

T = TypeVar("T")

ISOLATION, ISOLATION_REASON = probe_isolation()
needs_namespaces = pytest.mark.skipif(
    ISOLATION is not Isolation.NAMESPACES, reason=f"apps cannot be isolated: {ISOLATION_REASON}"
)
FAST_RESTARTS = RestartPolicy(initial=0.2, factor=2.0, maximum=1.0, reset_after=30.0)
# Ends a test app that has reported what it did, without a restart to record.
_IDLE = "\nimport time\ntime.sleep(60)\n"


@contextlib.contextmanager
def running_runtime(device: Path, **settings: Any) -> Iterator[Runtime]:
    settings.setdefault("restart", FAST_RESTARTS)
    settings.setdefault("stop_grace", 1.0)
    settings.setdefault("server_address", "127.0.0.1")
    runtime = Runtime(device, **settings)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.close()


@dataclass
class Apps:
    """Writes app folders under ``root`` and their launches for a device in ``device``."""

    root: Path
    device: Path

    def folder(self, name: str, code: str, *, idle: bool = False, **manifest: Any) -> Path:
        """An app folder; with ``idle`` the app sleeps after ``code`` rather than exiting."""
        folder = self.root / name
        folder.mkdir(parents=True)
        document = {
            "SchemaVersion": 1,
            "Name": name,
            "ComponentId": str(uuid.uuid4()),
            "EntryPoint": "/main.py",
            "CmdArgs": [],
            "ApplicationType": "Default",
            "Capabilities": {},
            **manifest,
        }
        (folder / "app_manifest.json").write_text(json.dumps(document))
        (folder / "main.py").write_text(textwrap.dedent(code) + (_IDLE if idle else ""))
        return folder

    def launch(self, folder: Path) -> AppLaunch:
        manifest = json.loads((folder / "app_manifest.json").read_text())
        return AppLaunch.from_folder(
            folder,
            image_id=uuid.uuid4(),
            storage_folder=self.device / "storage" / manifest["ComponentId"],
        )

    def write(self, name: str, code: str, *, idle: bool = False, **manifest: Any) -> AppLaunch:
        return self.launch(self.folder(name, code, idle=idle, **manifest))


def wait_for(check: Callable[[], T | None], timeout: float = 5.0, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def app_log(runtime: Runtime, launch: AppLaunch) -> str:
    path = Path(runtime.app_status(launch.component_id).log)
    return path.read_text(errors="replace") if path.exists() else ""


def results(runtime: Runtime, launch: AppLaunch, count: int, timeout: float = 5.0) -> list[str]:
    """The first ``count`` lines the app printed as ``RESULT <text>``, waiting for them."""

    def found() -> list[str] | None:
        lines = [
            line.removeprefix("RESULT ")
            for line in app_log(runtime, launch).splitlines()
            if line.startswith("RESULT ")
        ]
        return lines[:count] if len(lines) >= count else None

    try:
        return wait_for(found, timeout, f"{count} results from {launch.label}")
    except AssertionError:
        raise AssertionError(f"app log so far:\n{app_log(runtime, launch)}") from None


def pending_events(device: Path) -> list[dict[str, Any]]:
    """The device's failure-report queue, as the uploader would send it."""
    queue = EventQueue(device / EVENTS_QUEUE)
    return [event.model_dump(mode="json") for event in queue.pending()]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class LoopbackServer:
    """A TCP server on a loopback address that answers each line with ``echo: <line>``."""

    host: str = "127.0.0.1"
    accepted: list[tuple[str, int]] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server((self.host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                connection, peer = self._listener.accept()
            except OSError:
                return
            self.accepted.append(peer)
            threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    def _echo(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rwb") as stream:
            for line in stream:
                self.received.append(line)
                stream.write(b"echo: " + line)
                stream.flush()
