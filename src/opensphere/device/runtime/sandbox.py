"""How an app process is started: its user, what files it sees, its limits, its command line.

Two isolation levels, chosen once at boot by ``probe_isolation``:

- ``namespaces`` (the runtime is root and Linux namespaces work): each app gets its own user
  ID, network namespace (loopback only, no route out: the broker is its only way out) and
  mount namespace (see ``launcher``). This is what the tests and the demo run.
- ``applibs-only``: apps run as the runtime's user on the host's network; only applibs calls
  are checked, and a raw ``socket.connect`` is not stopped. The runtime warns at boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final
from uuid import UUID

from opensphere.device.applibs.protocol import ENV_FD
from opensphere.device.runtime import launcher
from opensphere.formats.app_manifest import AppManifest

PYTHON: Final = os.path.realpath(sys.executable)
LAUNCHER: Final = Path(launcher.__file__).resolve()
UID_BASE: Final = 0x40000000
UID_RANGE: Final = 1 << 28


class Isolation(StrEnum):
    NAMESPACES = "namespaces"
    APPLIBS_ONLY = "applibs-only"


class IsolationUnavailableWarning(UserWarning):
    """Apps run without their own users and network namespaces: the firewall is advisory."""


def probe_isolation() -> tuple[Isolation, str]:
    """Which isolation this machine allows, and why, by trying it in a throwaway process."""
    if os.geteuid() != 0:
        return Isolation.APPLIBS_ONLY, "the runtime is not root, so apps cannot get own users"
    result = subprocess.run(
        [PYTHON, "-I", "-S", str(LAUNCHER), "--probe"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        return Isolation.APPLIBS_ONLY, f"Linux namespaces are unavailable: {reason[0]}"
    return Isolation.NAMESPACES, "each app has its own user, network and mount namespace"


def warn_if_unisolated(isolation: Isolation, reason: str) -> None:
    if isolation is Isolation.APPLIBS_ONLY:
        warnings.warn(
            f"apps are not isolated ({reason}): the network firewall is enforced only for "
            "applibs calls, and apps can read each other's files",
            IsolationUnavailableWarning,
            stacklevel=2,
        )


@dataclass(frozen=True)
class AppLimits:
    """Resource limits for each app process; ``processes`` counts the app user's threads too."""

    memory_bytes: int = 512 * 1024 * 1024
    open_files: int = 64
    processes: int = 64
    cpu_seconds: int | None = None


def app_uid(device_folder: Path, component_id: UUID) -> int:
    """A user ID for the app, stable across boots, unlikely to be shared with another device.

    Derived from the device folder and the component ID, far above ordinary accounts; the
    runtime never needs a name for it, as the app owns no files.
    """
    digest = hashlib.sha256(f"{device_folder.resolve()}\0{component_id}".encode()).digest()
    return UID_BASE + int.from_bytes(digest[:8], "big") % UID_RANGE


@dataclass(frozen=True)
class AppView:
    """Where the app finds its own files, applibs and the device certificate folder."""

    app_folder: str
    applibs_folder: str
    device_auth_folder: str | None


def app_view(
    isolation: Isolation, *, app_folder: Path, applibs_folder: Path, device_auth: Path | None
) -> AppView:
    if isolation is Isolation.NAMESPACES:
        auth = launcher.DEVICE_AUTH_ROOT if device_auth is not None else None
        return AppView(launcher.APP_ROOT, launcher.APPLIBS_ROOT, auth)
    return AppView(str(app_folder), str(applibs_folder), str(device_auth) if device_auth else None)


def launch_command(
    *,
    isolation: Isolation,
    manifest: AppManifest,
    app_folder: Path,
    applibs_folder: Path,
    device_auth_folder: Path | None,
    uid: int | None,
    limits: AppLimits,
    applibs_fd: int,
) -> list[str]:
    """The launcher command line for one run of the app; ``applibs_fd`` becomes fd 3."""
    view = app_view(
        isolation,
        app_folder=app_folder,
        applibs_folder=applibs_folder,
        device_auth=device_auth_folder,
    )
    rlimits: list[tuple[str, int, int]] = [
        ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
        ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
        ("RLIMIT_CORE", 0, 0),
    ]
    if isolation is Isolation.NAMESPACES:
        # Counted per user: meaningful only when the app has a user of its own.
        rlimits.append(("RLIMIT_NPROC", limits.processes, limits.processes))
    if limits.cpu_seconds is not None:
        rlimits.append(("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds))
    sandbox: launcher.Sandbox | None = None
    if isolation is Isolation.NAMESPACES:
        if uid is None:
            raise RuntimeError("an isolated app needs a user ID")
        sandbox = {
            "app_folder": str(app_folder),
            "applibs_folder": str(applibs_folder),
            "device_auth_folder": str(device_auth_folder) if device_auth_folder else None,
            "python_prefix": sys.base_prefix,
            "uid": uid,
        }
    entry = f"{view.app_folder}/{manifest.entry_point_path}"
    spec: launcher.LaunchSpec = {
        "python": PYTHON,
        # -S: only the standard library and applibs; -B: the app folder is read-only.
        "argv": ["-S", "-B", "-u", "-X", "faulthandler", entry, *manifest.cmd_args],
        "env": {
            "PYTHONPATH": f"{view.applibs_folder}:{view.app_folder}",
            ENV_FD: str(launcher.APPLIBS_FD),
            "LANG": "C.UTF-8",
            "PATH": "/usr/bin:/bin",
        },
        "cwd": view.app_folder,
        "limits": rlimits,
        "applibs_fd": applibs_fd,
        "sandbox": sandbox,
    }
    return [PYTHON, "-I", "-S", str(LAUNCHER), json.dumps(spec)]
