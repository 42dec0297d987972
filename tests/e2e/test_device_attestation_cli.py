"""Manufacture → register the OS → claim → boot and attest, all through the `sphere` CLI.

Against a real `sphere server`; the devices boot their real, signed OS release, and the
operator registers that release's reference values from the fleet folder.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from support.service import SPHERE, running_service

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]


def test_manufacture_claim_attest_through_the_cli(tmp_path: Path) -> None:
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

    def refused(*args: str) -> str:
        result = subprocess.run(
            [SPHERE, *args], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 1, f"sphere {args}: {result.stdout}"
        return result.stderr

    with running_service(tmp_path / "data") as service:
        sphere("login", "--url", service.url, "--token-file", str(service.operator_token_file))
        tenant = as_json("tenant", "create", "Contoso")
        ca_dir = tmp_path / "manufacturer-ca"
        sphere("manufacturer", "ca", "create", "--out", str(ca_dir), "--name", "Contoso Mfg CA")
        sphere(
            "manufacturer", "ca", "register", str(ca_dir / "manufacturer-ca.pem"), "--name", "Mfg"
        )
        made = as_json(
            "device",
            "manufacture",
            "--ca",
            str(ca_dir),
            "--out",
            str(tmp_path / "devices"),
            "--count",
            "2",
        )
        assert len(made) == 2
        reference = as_json("device-emulator", "reference-values", "--fleet", str(ca_dir))
        assert [m["stage"] for m in reference["measurements"]] == [
            "trusted-keystore",
            "bootloader",
            "security-monitor",
            "os",
        ]
        release_file = tmp_path / "release.json"
        release_file.write_text(json.dumps(reference))
        from_file = as_json("os-release", "register", "--file", str(release_file))
        assert from_file["measurements"] == reference["measurements"]
        assert as_json("os-release", "delete", reference["version"])["id"] == from_file["id"]
        registered = as_json(
            "os-release", "register", "--fleet", str(ca_dir), "--description", "initial"
        )
        assert (registered["version"], registered["description"]) == (
            reference["version"],
            "initial",
        )
        assert [r["id"] for r in as_json("os-release", "list")] == [registered["id"]]
        minimums = as_json("security-version", "set", "os=1", "security-monitor=1")
        assert minimums == {"os": 1, "security-monitor": 1}
        assert as_json("security-version", "show") == minimums

        as_json("product", "create", "--name", "Kettle")
        claimed = as_json("device", "claim", str(tmp_path / "devices"), "-g", "Kettle/Production")
        assert {d["device_id"] for d in claimed} == {d["device_id"] for d in made}
        device, fallback = made
        attested = sphere("device-emulator", "attest", device["folder"], "--url", service.url)
        assert "attested" in attested
        shown = as_json("device", "show", device["device_id"])
        assert shown["last_attestation_result"] == "Passed"
        assert shown["os_version"] == registered["version"]
        assert shown["certificate_expires_at"] is not None
        again = sphere(
            "device-emulator", "attest", device["folder"], "--url", service.url, "--if-due"
        )
        assert "still valid" in again

        slots = Path(fallback["folder"]) / "slots"
        _flip_a_byte(slots / "a" / "os.imagepackage")
        sphere("device-emulator", "attest", fallback["folder"], "--url", service.url)
        assert as_json("device", "show", fallback["device_id"])["last_attestation_result"] == (
            "Passed"
        )
        _flip_a_byte(slots / "b" / "os.imagepackage")
        unbootable = refused("device-emulator", "attest", fallback["folder"], "--url", service.url)
        assert "boot failed" in unbootable
        assert "no OS slot verified" in unbootable

        anchor_file = tmp_path / "tenant-ca.pem"
        sphere("ca-certificate", "download", "-f", str(anchor_file))
        listed = as_json("ca-certificate", "list")
        assert [ca["status"] for ca in listed] == ["Active"]
        chain_file = tmp_path / "chain.p7b"
        sphere("ca-certificate", "download-chain", "-f", str(chain_file))
        proof_file = tmp_path / "proof.cer"
        sphere(
            "ca-certificate", "download-proof", "-f", str(proof_file), "--verification-code", "C0DE"
        )
        anchor = x509.load_pem_x509_certificate(anchor_file.read_bytes())
        daa = Path(device["folder"]) / "daa"
        certificate = x509.load_pem_x509_certificate((daa / "certificate.pem").read_bytes())
        certificate.verify_directly_issued_by(anchor)
        x509.load_der_x509_certificate(proof_file.read_bytes()).verify_directly_issued_by(anchor)
        disabled = as_json("device", "update", device["device_id"], "--disable")
        assert disabled["enabled"] is False
        stderr = refused("device-emulator", "attest", device["folder"], "--url", service.url)
        assert "attestation_refused" in stderr
        assert tenant["name"] == "Contoso"


def _flip_a_byte(path: Path) -> None:
    """Damage a signed image in the body, as a bad flash write or an attacker would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
