"""`sphere agent run --rot tpm`: a Linux host with a (software) TPM as a device, end to end.

A real swtpm with an EK certificate from its own manufacturer CA, a real `sphere server`,
and only the `sphere` CLI: the operator trusts the TPM manufacturer and the host's OS, the
host is claimed by credential activation, then one run of the agent attests with a TPM
quote, installs the group's app on trial, confirms it and uploads its events.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.service import SPHERE, running_service
from support.swtpm import Swtpm, manufacture

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OS_RELEASE = 'ID=opensphere-host\nVERSION_ID="7.1"\nPRETTY_NAME="OpenSphere test host"\n'


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    manufactured = manufacture(tmp_path / "tpm")
    with Swtpm(manufactured.state) as running:
        running.ca_certificate = manufactured.ca_certificate  # type: ignore[attr-defined]
        yield running


def test_a_tpm_host_is_claimed_attests_and_takes_its_groups_app(
    tmp_path: Path, swtpm: Swtpm
) -> None:
    env = {**os.environ, "OPENSPHERE_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "250"}
    env.pop("OPENSPHERE_PROFILE", None)
    env["OPENSPHERE_TCTI"] = swtpm.tcti

    def sphere(*args: str) -> str:
        result = subprocess.run([SPHERE, *args], env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"sphere {args}: {result.stdout}{result.stderr}"
        return result.stdout

    def as_json(*args: str) -> Any:
        return json.loads(sphere(*args, "-o", "json"))

    os_file = tmp_path / "os-release"
    os_file.write_text(OS_RELEASE)
    release = {
        "version": "7.1",
        "description": "the test host's OS",
        "measurements": [
            {"stage": "os", "digest": hashlib.sha256(os_file.read_bytes()).hexdigest()}
        ],
    }
    (tmp_path / "release.json").write_text(json.dumps(release))
    folder = tmp_path / "host"
    with running_service(tmp_path / "data") as service:
        sphere("login", "--url", service.url, "--token-file", str(service.operator_token_file))
        ca = swtpm.ca_certificate  # type: ignore[attr-defined]
        sphere("tpm-manufacturer", "register", str(ca), "--name", "swtpm test CA")
        sphere("os-release", "register", "--file", str(tmp_path / "release.json"))
        as_json("tenant", "create", "Contoso")
        as_json("product", "create", "--name", "Gateway")
        claimed = sphere("agent", "claim", str(folder), "-g", "Gateway/Field Test")
        device_id = claimed.split()[-1]
        assert len(device_id) == 128

        package = tmp_path / "thermostat.imagepackage"
        sphere(
            "image-package",
            "pack-application",
            str(ROOT / "samples" / "thermostat"),
            "--out",
            str(package),
            "--key",
            str(ROOT / "samples" / "keys" / "test-signing-key.pem"),
        )
        image_id = as_json("image", "add", str(package))["image_id"]
        as_json("device-group", "deployment", "create", "-g", "Gateway/Field Test", "-i", image_id)

        run_once = ["agent", "run", str(folder), "--url", service.url, "--rot", "tpm"]
        run_once += ["--os-file", str(os_file), "--once", "--no-apps", "--health-window", "0"]
        ran = sphere(*run_once)

        assert "update check: installed" in ran
        device = as_json("device", "show", device_id)
        assert device["last_attestation_result"] == "Passed"
        assert device["os_version"] == "7.1"
        assert device["update_status"]["state"] == "installed"
        assert image_id in device["update_status"]["installed_images"]
        assert (folder / "daa" / "certificate.pem").exists()
        status = as_json("agent", "status", str(folder))
        assert status["installed_apps"] == ["6f1a0c2e-3b5d-4e7f-9a1b-2c3d4e5f6a7b.imagepackage"]
        assert status["apps_on_trial"] == []

        # A second run in the same TPM boot measures nothing twice and attests again.
        (folder / "daa" / "state.json").unlink()
        again = sphere(*run_once)
        assert "update check: up-to-date" in again
        assert as_json("device", "show", device_id)["last_attestation_result"] == "Passed"

        # The host now runs an OS the operator never registered: it is refused.
        os_file.write_text(OS_RELEASE.replace("7.1", "7.2"))
        (folder / "daa" / "state.json").unlink()
        refused = subprocess.run([SPHERE, *run_once], env=env, capture_output=True, text=True)
        assert refused.returncode == 1
        assert "attestation_refused" in refused.stderr
        assert as_json("device", "show", device_id)["last_attestation_result"] != "Passed"
