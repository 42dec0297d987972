"""A device kept running by `sphere agent run` takes a deployment when asked with `check-now`.

Everything through the `sphere` CLI against a real `sphere server`: manufacture, claim, pack
and upload an app, deploy it, run the agent in the background, deploy a second version, force
a check, and read the per-device update status and the group's counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.service import SPHERE, running_service

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TEST_KEY = ROOT / "samples" / "keys" / "test-signing-key.pem"


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_agent_run_in_the_background_takes_a_deployment_on_check_now(tmp_path: Path) -> None:
    env = {**os.environ, "OPENSPHERE_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "250"}
    env.pop("OPENSPHERE_PROFILE", None)

    def sphere(*args: str) -> str:
        result = subprocess.run(
            [SPHERE, *args], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"sphere {args}: {result.stderr}"
        return result.stdout

    def as_json(*args: str) -> Any:
        return json.loads(sphere(*args, "-o", "json"))

    with running_service(tmp_path / "data") as service:
        sphere("login", "--url", service.url, "--token-file", str(service.operator_token_file))
        as_json("tenant", "create", "Contoso")
        ca_dir = tmp_path / "ca"
        sphere("manufacturer", "ca", "create", "--out", str(ca_dir), "--name", "Contoso Mfg CA")
        sphere("manufacturer", "ca", "register", str(ca_dir / "manufacturer-ca.pem"), "-n", "M")
        [device] = as_json(
            "device", "manufacture", "--ca", str(ca_dir), "--out", str(tmp_path / "devices")
        )
        sphere("os-release", "register", "--fleet", str(ca_dir))
        as_json("product", "create", "--name", "Kettle")
        as_json("device", "claim", str(tmp_path / "devices"), "-g", "Kettle/Field Test")

        def app_image(version: str) -> str:
            package = tmp_path / f"thermostat-{version}.imagepackage"
            sphere(
                "image-package",
                "pack-application",
                str(ROOT / "samples" / "thermostat"),
                "--out",
                str(package),
                "--key",
                str(TEST_KEY),
                "--version",
                version,
            )
            return str(as_json("image", "add", str(package))["image_id"])

        first = app_image("1.0.0")
        as_json("device-group", "deployment", "create", "-g", "Kettle/Field Test", "-i", first)

        folder = device["folder"]
        log = (tmp_path / "agent.log").open("wb")
        agent = subprocess.Popen(
            [
                SPHERE,
                "agent",
                "run",
                folder,
                "--url",
                service.url,
                "--check-every",
                "1h",
                "--no-apps",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def update_status() -> dict[str, Any] | None:
                status = as_json("device", "show", device["device_id"]).get("update_status")
                return status if status and status["state"] == "installed" else None

            installed = _wait_for(update_status, "the first deployment to install")
            assert first in installed["installed_images"]
            _wait_for(lambda: (Path(folder) / "agent.pid").exists(), "the agent's pid file")

            second = app_image("2.0.0")
            as_json("device-group", "deployment", "create", "-g", "Kettle/Field Test", "-i", second)
            assert "check for updates now" in sphere("agent", "check-now", folder)
            updated = _wait_for(
                lambda: (s := update_status()) and second in s["installed_images"] and s,
                "the second deployment to install after check-now",
            )
            assert first not in updated["installed_images"]
            local = as_json("agent", "status", folder)
            assert local["last_update_state"] == "installed"
            assert local["agent_running"] is True
            assert len(local["installed_apps"]) == 1
            group = as_json("device-group", "show", "Kettle/Field Test")
            assert group["deployment"]["status_counts"] == {"installed": 1}

            def app_update_events() -> list[dict[str, Any]]:
                report = json.loads(sphere("tenant", "download-error-report", "--format", "json"))
                rows = report if isinstance(report, list) else report["items"]
                return [row for row in rows if row["event_category"] == "AppUpdate"]

            # The update rebooted the device, and reports go out after every boot.
            assert _wait_for(app_update_events, "the AppUpdate events in the error report")
        finally:
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=30)
            log.close()
        assert code == 0, (tmp_path / "agent.log").read_text()
        assert not (Path(folder) / "agent.pid").exists()
        stopped = subprocess.run(
            [SPHERE, "agent", "check-now", folder], env=env, capture_output=True, text=True
        )
        assert stopped.returncode == 1
        assert "no agent is running" in stopped.stderr
