"""`./run demo`: the whole story on the embedded default, every step through the real CLI.

Starts the service on SQLite in ./demo-data; an operator creates a tenant; its administrator
creates a product; a manufacturer makes three emulated devices, which are claimed, boot
securely and attest (each run by `sphere agent run` in the background, apps included); an app
is deployed and updated; one device's app crashes and the error report shows it; a faulty
version rolls back by itself. Then it prints the dashboard URL and leaves the service and the
devices running until Ctrl-C.
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from opensphere.api import schemas
from opensphere.client import Client

SPHERE = str(Path(sys.executable).with_name("sphere"))
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


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

    def sphere(self, *args: str, quiet: bool = False) -> str:
        print(f"$ sphere {shlex.join(args)}", flush=True)
        result = subprocess.run(
            [SPHERE, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if not quiet:
            sys.stdout.write(result.stdout)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            raise SystemExit(f"'sphere {args[0]}' failed with status {result.returncode}")
        return result.stdout


class Story:
    """The whole story of one tenant's fleet, told through the CLI and real device agents."""

    def __init__(self, demo: Walkthrough, url: str, data_dir: Path) -> None:
        self.demo = demo
        self.url = url
        self.data_dir = data_dir
        self.devices: list[dict[str, Any]] = []
        self.agents: list[subprocess.Popen[bytes]] = []
        self.client: Client | None = None

    def close(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        if self.client is not None:
            self.client.close()

    def as_json(self, *args: str) -> Any:
        return json.loads(self.demo.sphere(*args, "--output", "json", quiet=True))

    def manufacture(self, count: int) -> None:
        demo = self.demo
        ca = self.data_dir / "factory"
        demo.say(f"A manufacturer makes {count} devices: identity keys, IDevIDs, a signed OS")
        demo.sphere(
            "manufacturer", "ca", "create", "--out", str(ca), "--name", "Contoso Devices CA"
        )
        self.devices = self.as_json(
            "device",
            "manufacture",
            "--ca",
            str(ca),
            "--out",
            str(self.data_dir / "devices"),
            "--count",
            str(count),
        )
        for device in self.devices:
            print(f"  {device['device_id'][:16]}…  {device['folder']}")

    def operator_setup(self) -> None:
        demo = self.demo
        ca = self.data_dir / "factory"
        token_file = self.data_dir / "service" / "operator-token"
        demo.say("The operator signs in with the token the service wrote at first start")
        demo.sphere("login", "--url", self.url, "--token-file", str(token_file))
        demo.say("The operator trusts the manufacturer and registers its OS's known-good values")
        demo.sphere(
            "manufacturer", "ca", "register", str(ca / "manufacturer-ca.pem"), "--name", "Contoso"
        )
        demo.sphere("os-release", "register", "--fleet", str(ca))
        demo.say("The operator creates a tenant, names its Administrator and issues her a token")
        demo.sphere("tenant", "create", "Contoso", "--admin", "alice@contoso.example")
        token = self.as_json(
            "token", "create", "--name", "alice laptop", "--for-user", "alice@contoso.example"
        )["token"]
        token_path = self.data_dir / "alice-token"
        token_path.write_text(token)
        os.chmod(token_path, 0o600)
        self.client = Client(self.url, token)

    def tenant_setup(self) -> None:
        demo = self.demo
        demo.say("Alice signs in and creates a product: it comes with five default device groups")
        demo.sphere(
            "login",
            "--url",
            self.url,
            "--token-file",
            str(self.data_dir / "alice-token"),
            "--profile",
            "alice",
        )
        demo.env["OPENSPHERE_PROFILE"] = "alice"
        demo.sphere(
            "product", "create", "--name", "Thermostat", "--description", "Smart thermostat"
        )
        demo.sphere("device-group", "list", "--product", "Thermostat")
        demo.say("Alice claims the devices into Field Test (each proves it holds its identity key)")
        demo.sphere(
            "device", "claim", str(self.data_dir / "devices"), "-g", "Thermostat/Field Test"
        )

    def boot_and_attest(self) -> None:
        self.demo.say(
            "The devices power on: secure boot, then each agent attests and gets a 24 h certificate"
        )
        logs = self.data_dir / "agent-logs"
        logs.mkdir()
        for number, device in enumerate(self.devices, 1):
            command = [
                SPHERE,
                "agent",
                "run",
                device["folder"],
                "--url",
                self.url,
                "--check-every",
                "1h",
                "--health-window",
                "3",
            ]
            print(f"$ {shlex.join(['sphere', *command[1:]])} &", flush=True)
            log = (logs / f"device-{number}.log").open("wb")
            self.agents.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.demo.env)
            )
        self.wait_for(
            lambda: all(d.last_attestation_result == "Passed" for d in self.fleet()),
            "every device to attest",
        )
        self.wait_for(
            lambda: all((Path(d["folder"]) / "agent.pid").exists() for d in self.devices),
            "the agents to settle",
        )
        self.demo.sphere("device", "list", "-g", "Thermostat/Field Test")

    def fleet(self) -> list[schemas.Device]:
        assert self.client is not None
        tenant = next(iter(self.client.tenants())).id
        return [self.client.device(tenant, d["device_id"]) for d in self.devices]

    def upload(self, sample: str, version: str) -> str:
        package = self.data_dir / f"{sample}-{version}.imagepackage"
        self.demo.sphere(
            "image-package",
            "pack-application",
            str(SAMPLES / sample),
            "--out",
            str(package),
            "--key",
            str(SAMPLES / "keys" / "test-signing-key.pem"),
            "--version",
            version,
        )
        image = self.as_json("image", "add", str(package))
        print(f"  uploaded and production-signed: image {image['image_id']}")
        return str(image["image_id"])

    def deploy(self, image_id: str, *options: str) -> None:
        self.demo.sphere(
            "device-group",
            "deployment",
            "create",
            "-g",
            "Thermostat/Field Test",
            "--images",
            image_id,
            *options,
        )
        for device in self.devices:
            self.demo.sphere("agent", "check-now", device["folder"])

    def wait_until_installed(self, image_id: str) -> None:
        wanted = uuid.UUID(image_id)

        def everywhere() -> bool:
            statuses = [d.update_status for d in self.fleet()]
            return all(s is not None and wanted in s.installed_images for s in statuses)

        self.wait_for(everywhere, f"every device to run image {image_id}")
        self.demo.sphere("device-group", "show", "Thermostat/Field Test")

    def wait_until_halted(self) -> None:
        """The failure rate passed the threshold: the service stops the rollout by itself."""

        def halted() -> bool:
            assert self.client is not None
            tenant = next(iter(self.client.tenants())).id
            group = next(g for g in self.client.device_groups(tenant) if g.name == "Field Test")
            deployment = self.client.device_group(tenant, group.id).deployment
            return deployment is not None and deployment.state == "Halted"

        self.wait_for(halted, "the faulty rollout to halt")
        self.demo.sphere("device-group", "show", "Thermostat/Field Test")

    def crash_one(self) -> None:
        demo = self.demo
        folder = self.devices[-1]["folder"]
        demo.say("On one device the temperature sensor breaks: the app crashes and is restarted")
        demo.sphere("app", "set-adc", "$TEMPERATURE_ADC", "0", "4095", "--device", folder)
        self.wait_for(
            lambda: _crashed(folder),
            "the app to crash",
        )
        demo.sphere("app", "show-status", "--device", folder)
        demo.say(
            "The device uploads its error events; the report and the grouped problem show the crash"
        )
        demo.sphere("device-emulator", "report", folder, "--url", self.url)
        demo.sphere("tenant", "download-error-report", "--device", self.devices[-1]["device_id"])
        demo.sphere("problem", "list")
        demo.say("A technician replaces the sensor")
        demo.sphere("app", "set-adc", "$TEMPERATURE_ADC", "0", "1200", "--device", folder)

    @staticmethod
    def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.3)
        raise SystemExit(f"gave up waiting for {what} after {timeout:.0f} s")


def _crashed(folder: str) -> bool:
    statuses = subprocess.run(
        [SPHERE, "app", "show-status", "--device", folder, "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if statuses.returncode != 0:
        return False
    return any(app["crashes"] > 0 for app in json.loads(statuses.stdout))


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
    story = Story(Walkthrough(env), url, data_dir)
    try:
        _wait_until_up(url, server)
        story.manufacture(count=3)
        story.operator_setup()
        story.tenant_setup()
        story.boot_and_attest()
        story.demo.say("Alice uploads the thermostat app 1.0.0 and deploys it to Field Test")
        v1 = story.upload("thermostat", "1.0.0")
        story.deploy(v1)
        story.wait_until_installed(v1)
        story.demo.sphere("app", "show-status", "--device", story.devices[0]["folder"])
        story.demo.say(
            "Version 2.0.0: the devices download, verify, install on trial, reboot, confirm"
        )
        v2 = story.upload("thermostat", "2.0.0")
        story.deploy(v2)
        story.wait_until_installed(v2)
        story.crash_one()
        story.demo.say(
            "A faulty 3.0.0 crashes at start: devices roll back to 2.0.0 by themselves and the "
            "service halts the rollout once half of the outcomes are failures"
        )
        v3 = story.upload("thermostat-faulty", "3.0.0")
        story.deploy(v3, "--failure-threshold", "49", "--min-reports", "2")
        story.wait_until_halted()
        story.demo.sphere("agent", "status", story.devices[0]["folder"])
        story.demo.sphere("device-group", "deployment", "list", "-g", "Thermostat/Field Test")
        print(
            f"\nThe service is running at {url}: dashboard {url}/dashboard/ (sign in with the "
            f"token in {data_dir / 'alice-token'}), API {url}/docs."
        )
        print(
            f"Device agents log to {data_dir / 'agent-logs'}; "
            f"the service to {data_dir / 'service.log'}."
        )
        if not stay:
            return 0
        print("Press Ctrl-C to stop the devices and the service.", flush=True)
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        print("\nStopping the devices and the service.")
        return 0
    finally:
        story.close()
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
