"""A throwaway PostgreSQL server for the tests: installed if missing (as root), on loopback.

Usable as a library (`PostgresServer`) and from the test runner:
    python tests/support/pgserver.py start DIR   -> prints the database URL
    python tests/support/pgserver.py stop DIR
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailableError(RuntimeError):
    pass


def _is_root() -> bool:
    return os.geteuid() == 0


def find_bin_dir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_installed() -> Path:
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    if not _is_root() or shutil.which("apt-get") is None:
        raise PostgresUnavailableError(
            "PostgreSQL is not installed: install the Debian package 'postgresql' "
            "(the test runner does it by itself when it runs as root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError("installed 'postgresql' but found no initdb")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    base_dir: Path
    port: int = 0

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        if _is_root():
            args = ["runuser", "-u", "postgres", "--", *args]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )

    def start(self) -> str:
        bin_dir = ensure_installed()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(self.base_dir, "postgres", "postgres")
        self.port = _free_port()
        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        options = (
            f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.base_dir / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        (self.base_dir / "url").write_text(self.url)
        return self.url

    def stop(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is not None and self.data_dir.exists():
            with contextlib.suppress(PostgresUnavailableError):
                self._run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                )
        for _ in range(50):
            if not (self.data_dir / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"start", "stop"}:
        print("usage: pgserver.py start|stop DIR", file=sys.stderr)
        return 2
    server = PostgresServer(Path(argv[2]))
    if argv[1] == "start":
        print(server.start())
    else:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
