"""A throwaway `sphere server` for one simulation: SQLite in a temporary folder, loopback only.

The simulator acts as the operator (manufacturer CA, OS releases, OS image signers, the
Retail feed), which changes the whole service; so unless it is given the URL of a service
kept for that purpose, it starts its own and throws it away at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT = 60.0


class BackendError(Exception):
    """The throwaway service did not start."""


@dataclass(frozen=True)
class Backend:
    url: str
    token: str


@contextmanager
def throwaway_service() -> Iterator[Backend]:
    """Start `sphere server` on a free loopback port; stop it and delete its data at the end."""
    with tempfile.TemporaryDirectory(prefix="opensphere-sim-service-") as folder:
        data_dir = Path(folder) / "data"
        port = _free_port()
        # SQLite in the temporary folder, whatever database the caller's environment names.
        environment = {k: v for k, v in os.environ.items() if k != "OPENSPHERE_DATABASE_URL"}
        sphere = str(Path(sys.executable).with_name("sphere"))
        with (Path(folder) / "service.log").open("wb") as log:
            server = subprocess.Popen(
                [sphere, "server", "--data-dir", str(data_dir), "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_until_up(url, server)
                token = (data_dir / "operator-token").read_text().strip()
                yield Backend(url=url, token=token)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BackendError(f"sphere server exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise BackendError(f"sphere server did not answer at {url} within {START_TIMEOUT:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
