"""A real `sphere server` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SPHERE = str(Path(sys.executable).with_name("sphere"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningService:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def operator_token_file(self) -> Path:
        return self.data_dir / "operator-token"


@contextmanager
def running_service(
    data_dir: Path,
    *,
    database_url: str | None = None,
    port: int | None = None,
    options: Sequence[str] = (),
) -> Iterator[RunningService]:
    """A server on `data_dir`; a second one on the same folder and database serves the same
    fleet (each logs to its own `service-<port>.log` next to the folder)."""
    port = port or free_port()
    command = [SPHERE, "server", "--data-dir", str(data_dir), "--port", str(port), *options]
    env = dict(os.environ)
    if database_url:
        env["OPENSPHERE_DATABASE_URL"] = database_url
    log = (data_dir.parent / f"service-{port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sphere server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sphere server did not come up within 60 s")
            time.sleep(0.1)
        yield RunningService(url=url, data_dir=data_dir, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
