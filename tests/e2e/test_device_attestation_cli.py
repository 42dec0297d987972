"""Manufacture → claim → attest, all through the `sphere` CLI against a real `sphere server`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from opensphere.client import Client
from opensphere.device.agent import stand_in_reference
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

    with running_service(tmp_path / "data") as service:
        sphere("login", "--url", service.url, "--token-file", str(service.operator_token_file))
        tenant = as_json("tenant", "create", "Contoso")
        ca_dir = tmp_path / "manufacturer-ca"
        sphere("manufacturer", "ca", "create", "--out", str(ca_dir), "--name", "Contoso Mfg CA")
        sphere(
            "manufacturer", "ca", "register", str(ca_dir / "manufacturer-ca.pem"), "--name", "Mfg"
        )
        token = service.operator_token_file.read_text().strip()
        with Client(service.url, token) as client:
            client.register_os_release(stand_in_reference())
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
        as_json("product", "create", "--name", "Kettle")
        claimed = as_json("device", "claim", str(tmp_path / "devices"), "-g", "Kettle/Production")
        assert {d["device_id"] for d in claimed} == {d["device_id"] for d in made}
        device = made[0]
        attested = sphere("device-emulator", "attest", device["folder"], "--url", service.url)
        assert "attested" in attested
        shown = as_json("device", "show", device["device_id"])
        assert shown["last_attestation_result"] == "Passed"
        assert shown["certificate_expires_at"] is not None
        again = sphere(
            "device-emulator", "attest", device["folder"], "--url", service.url, "--if-due"
        )
        assert "still valid" in again
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
        refused = subprocess.run(
            [SPHERE, "device-emulator", "attest", device["folder"], "--url", service.url],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode == 1
        assert "attestation_refused" in refused.stderr
        assert tenant["name"] == "Contoso"
