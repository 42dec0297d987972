"""`./run demo`: the main job on the embedded default, every step through the real CLI.

Starts the service on SQLite in ./demo-data, then walks through what an
operator and a tenant's administrator do first, printing each command and its
answer, and leaves the service running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SPHERE = str(Path(sys.executable).with_name("sphere"))


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def _wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited with status {server.returncode}; see above")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the service did not answer at {url} within {timeout:.0f} s")


class Walkthrough:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.step = 0

    def say(self, text: str) -> None:
        self.step += 1
        print(f"\n\033[1m[{self.step}] {text}\033[0m", flush=True)

    def sphere(self, *args: str, stdin: str | None = None) -> str:
        print(f"$ sphere {shlex.join(args)}", flush=True)
        result = subprocess.run(
            [SPHERE, *args], env=self.env, input=stdin, capture_output=True, text=True, check=False
        )
        sys.stdout.write(result.stdout)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            raise SystemExit(f"'sphere {args[0]}' failed with status {result.returncode}")
        return result.stdout


def run(data_dir: Path, port: int, *, stay: bool) -> int:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    port = _free_port(port)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OPENSPHERE_CONFIG_DIR": str(data_dir / "cli"), "COLUMNS": "120"}
    env.pop("OPENSPHERE_PROFILE", None)
    log = (data_dir / "service.log").open("wb")
    print(f"Starting the OpenSphere service on {url} (SQLite in {data_dir}) …", flush=True)
    server = subprocess.Popen(
        [SPHERE, "server", "--data-dir", str(data_dir / "service"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_until_up(url, server)
        demo = Walkthrough(env)
        token_file = data_dir / "service" / "operator-token"
        demo.say("The operator signs in with the token the service wrote at first start")
        demo.sphere("login", "--url", url, "--token-file", str(token_file))
        demo.say("The operator creates a tenant and names its first Administrator")
        demo.sphere("tenant", "create", "Contoso", "--admin", "alice@contoso.example")
        demo.say("The operator issues Alice a token limited to her tenant")
        token = demo.sphere(
            "token",
            "create",
            "--name",
            "alice laptop",
            "--for-user",
            "alice@contoso.example",
            "--output",
            "json",
        )
        alice_token = json.loads(token)["token"]
        (data_dir / "alice-token").write_text(alice_token)
        os.chmod(data_dir / "alice-token", 0o600)
        demo.say("Alice signs in; her only tenant is selected for her")
        demo.sphere(
            "login",
            "--url",
            url,
            "--token-file",
            str(data_dir / "alice-token"),
            "--profile",
            "alice",
        )
        demo.sphere("show-user")
        demo.say("Alice adds Bob as Contributor and Carol as Reader")
        demo.sphere("role", "add", "--user", "bob@contoso.example", "--role", "Contributor")
        demo.sphere("role", "add", "--user", "carol@contoso.example", "--role", "Reader")
        demo.sphere("role", "list")
        demo.say("Alice creates a product: it comes with the five default device groups")
        demo.sphere(
            "product", "create", "--name", "Thermostat", "--description", "Smart thermostat"
        )
        demo.sphere("device-group", "list", "--product", "Thermostat")
        demo.say("Alice adds a device group for a pilot site, with crash dumps allowed")
        demo.sphere(
            "device-group",
            "create",
            "--product",
            "Thermostat",
            "--name",
            "Pilot Site",
            "--update-policy",
            "UpdateAll",
            "--allow-crash-dumps-collection",
        )
        demo.say("Alice stops all updates to Pilot Site for now")
        demo.sphere(
            "device-group", "update", "Thermostat/Pilot Site", "--update-policy", "NoUpdates"
        )
        demo.say("Every change is in the tenant's audit log")
        demo.sphere("audit", "list")
        print(f"\nThe service is running at {url} (API: {url}/docs, {url}/openapi.json).")
        print(f"CLI profiles: {data_dir / 'cli'}; service log: {data_dir / 'service.log'}.")
        if not stay:
            return 0
        print("Press Ctrl-C to stop it.", flush=True)
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        print("\nStopping the service.")
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--exit", action="store_true", help="stop the service after the walkthrough"
    )
    options = parser.parse_args()
    sys.exit(run(options.data_dir.resolve(), options.port, stay=not options.exit))


if __name__ == "__main__":
    main()
