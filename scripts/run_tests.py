"""`./run test`: install missing Debian packages, start a throwaway PostgreSQL, run the
whole suite in parallel, stop it.

Exits non-zero when a test fails, when none ran, or when PostgreSQL cannot be had.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.debian import TEST_PACKAGES, PackagesUnavailableError, ensure_packages  # noqa: E402
from support.pgserver import PostgresServer, PostgresUnavailableError  # noqa: E402

NO_TESTS_COLLECTED = 5


def main(pytest_args: list[str]) -> int:
    try:
        print("==> Debian packages the tests need: " + " ".join(TEST_PACKAGES), flush=True)
        ensure_packages(TEST_PACKAGES)
    except PackagesUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="opensphere-pg-")))
    try:
        print("==> starting a throwaway PostgreSQL on loopback", flush=True)
        url = server.start()
    except PostgresUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        workers = os.environ.get("OPENSPHERE_TEST_WORKERS", str(min(os.cpu_count() or 1, 4)))
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            workers,
            "--dist",
            "loadgroup",
            "-p",
            "no:cacheprovider",
            *pytest_args,
        ]
        print("==> " + " ".join(command[2:]), flush=True)
        env = {**os.environ, "OPENSPHERE_TEST_POSTGRES_URL": url}
        code = subprocess.call(command, cwd=ROOT, env=env)
    finally:
        server.stop()
    if code == NO_TESTS_COLLECTED:
        print("error: no test ran", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
