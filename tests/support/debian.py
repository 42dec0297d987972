"""Debian packages the tests need (servers, a TPM emulator, a browser), installed once if missing.

The test runner calls `ensure_packages(TEST_PACKAGES)` before pytest starts, so parallel
workers never race on apt; a test that needs a package may call it again (cheap when present).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Final

TEST_PACKAGES: Final = (
    "postgresql",
    "mosquitto",
    "nginx-light",
    "chromium",
    "swtpm",
    "swtpm-tools",
    "libtss2-dev",
    "tpm2-tools",
)
_LOCK: Final = Path("/tmp/opensphere-apt.lock")


class PackagesUnavailableError(RuntimeError):
    pass


def missing(packages: Iterable[str]) -> list[str]:
    """The packages dpkg does not report as installed."""
    wanted = list(packages)
    if shutil.which("dpkg-query") is None:
        return wanted
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *wanted],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")
    }
    return [name for name in wanted if name not in installed]


def ensure_packages(packages: Iterable[str]) -> None:
    """Install what is missing with apt-get (as root); otherwise say what to install."""
    wanted = missing(packages)
    if not wanted:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PackagesUnavailableError(
            "missing Debian packages: " + " ".join(wanted) + " (install them with apt-get; "
            "the test runner does it by itself when it runs as root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = missing(wanted)
        if not wanted:
            return
        update = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        install = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *wanted],
            capture_output=True,
            text=True,
            env=env,
        )
        if install.returncode != 0:
            raise PackagesUnavailableError(
                f"apt-get could not install {' '.join(wanted)} (update exit "
                f"{update.returncode}): {install.stderr.strip()[-500:]}"
            )
