"""Builders for device tests: a trusted manufacturer, emulated devices, claims and evidence."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import Api
from opensphere.factory import create_manufacturer_ca, load_idevid, manufacture_device
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.formats.evidence import (
    EvidenceClaims,
    ManufacturingState,
    Measurement,
    SecurityState,
    encode_evidence,
    replay_register,
)
from opensphere.rot import EmulatedRootOfTrust

OS_VERSION = "26.01"
STAGES = ("bootloader", "security-monitor", "os")


def stand_in_digest(stage: str, version: str = OS_VERSION) -> bytes:
    return hashlib.sha256(f"stand-in {stage} {version}".encode()).digest()


def good_measurements(version: str = OS_VERSION) -> tuple[Measurement, ...]:
    return tuple(Measurement(stage, stand_in_digest(stage, version)) for stage in STAGES)


@dataclass
class Manufacturer:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def new_manufacturer(now: dt.datetime, name: str = "Contoso Devices CA") -> Manufacturer:
    return Manufacturer(*create_manufacturer_ca(name, now=now, validity_days=3650))


def register_manufacturer(api: Api, manufacturer: Manufacturer) -> dict[str, Any]:
    response = api.client.post(
        "/v1/manufacturer-cas",
        json={"name": f"M {uuid.uuid4().hex[:8]}", "certificate": manufacturer.pem},
        headers=api.operator,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@dataclass
class EmulatedDevice:
    folder: Path
    rot: EmulatedRootOfTrust

    @property
    def device_id(self) -> str:
        return self.rot.device_id

    @property
    def idevid_pem(self) -> str:
        return load_idevid(self.folder).public_bytes(serialization.Encoding.PEM).decode()


def make_device(folder: Path, manufacturer: Manufacturer, now: dt.datetime) -> EmulatedDevice:
    manufacture_device(folder, manufacturer.key, manufacturer.certificate, now=now)
    return EmulatedDevice(folder, EmulatedRootOfTrust.open(folder))


def claim_item(device: EmulatedDevice, tenant_id: str, now: dt.datetime) -> dict[str, str]:
    statement = ClaimStatement(
        device_id=device.rot.device_id,
        tenant_id=uuid.UUID(tenant_id),
        issued_at=int(now.timestamp()),
    )
    signed = encode_claim_statement(statement, device.rot.sign)
    return {
        "claim_statement": base64.urlsafe_b64encode(signed).decode(),
        "idevid": device.idevid_pem,
    }


def claim(
    api: Api,
    tenant_id: str,
    items: list[dict[str, str]],
    headers: dict[str, str] | None = None,
    device_group_id: str | None = None,
) -> Any:
    body: dict[str, Any] = {"devices": items}
    if device_group_id is not None:
        body["device_group_id"] = device_group_id
    return api.client.post(
        f"/v1/tenants/{tenant_id}/devices/claim", json=body, headers=headers or api.operator
    )


def register_release(
    api: Api, version: str = OS_VERSION, measurements: tuple[Measurement, ...] | None = None
) -> dict[str, Any]:
    response = api.client.post(
        "/v1/os-releases",
        json={
            "version": version,
            "measurements": [
                {"stage": m.stage, "digest": m.digest.hex()}
                for m in (measurements or good_measurements(version))
            ],
        },
        headers=api.operator,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def challenge(api: Api, device_id: str) -> bytes:
    response = api.client.post("/v1/device/attestation/challenge", json={"device_id": device_id})
    assert response.status_code == 200, response.text
    encoded = response.json()["nonce"]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def make_evidence(
    device: EmulatedDevice,
    nonce: bytes,
    now: dt.datetime,
    *,
    os_version: str = OS_VERSION,
    measurements: tuple[Measurement, ...] | None = None,
    boot_register: bytes | None = None,
    security_versions: Mapping[str, int] | None = None,
    confirmation_key: ec.EllipticCurvePublicKey | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    measured = good_measurements(os_version) if measurements is None else measurements
    claims = EvidenceClaims(
        device_id=device.rot.device_id,
        nonce=nonce,
        measurements=measured,
        boot_register=replay_register(measured) if boot_register is None else boot_register,
        os_version=os_version,
        security_state=SecurityState.SECURE,
        manufacturing_state=ManufacturingState.DEVICE_COMPLETE,
        security_versions=dict(security_versions or {"os": 3}),
        issued_at=int(now.timestamp()),
        confirmation_key=confirmation_key,
    )
    return encode_evidence(claims, sign or device.rot.sign)


def post_evidence(api: Api, evidence: bytes) -> Any:
    return api.client.post(
        "/v1/device/attestation/evidence",
        content=evidence,
        headers={"Content-Type": "application/eat+cwt"},
    )
