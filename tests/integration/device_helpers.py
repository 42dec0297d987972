"""Builders for device tests: a trusted manufacturer's fleet, its devices, claims and evidence.

Devices are real emulated devices of a fleet (flash, signed OS release in both slots), and
the known-good measurements are the fleet's reference values, the ones its devices measure
when they boot. Make one fleet per test module: creating one signs its OS release.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from conftest import Api
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.policy import BOOT_STAGES
from opensphere.factory import create_manufacturer_ca, load_idevid
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

FLEET_AGE = dt.timedelta(days=7)


def new_fleet(folder: Path) -> Fleet:
    """A fleet whose CA is a week old, so tests may manufacture devices in the recent past."""
    return Fleet.create(folder, now=dt.datetime.now(dt.UTC) - FLEET_AGE)


def new_ca_certificate(now: dt.datetime, name: str = "Contoso Devices CA") -> x509.Certificate:
    """A manufacturer CA certificate alone, for tests that only register one."""
    return create_manufacturer_ca(name, now=now, validity_days=3650)[1]


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def register_manufacturer(api: Api, certificate: x509.Certificate) -> dict[str, Any]:
    response = api.client.post(
        "/v1/manufacturer-cas",
        json={"name": f"M {uuid.uuid4().hex[:8]}", "certificate": pem(certificate)},
        headers=api.operator,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def reference_measurements(fleet: Fleet) -> tuple[Measurement, ...]:
    """What every device of the fleet measures when it boots the fleet's release."""
    return tuple(
        Measurement(m.stage, bytes.fromhex(m.digest)) for m in fleet.reference_values().measurements
    )


def fleet_security_versions(version: int = 1) -> dict[str, int]:
    """The fuses a device reports, one per boot stage, all at ``version``."""
    return {stage.name: version for stage in BOOT_STAGES}


@dataclass
class EmulatedDevice:
    folder: Path
    rot: EmulatedRootOfTrust
    fleet: Fleet

    @property
    def device_id(self) -> str:
        return self.rot.device_id

    @property
    def idevid_pem(self) -> str:
        return pem(load_idevid(self.folder))


def make_device(folder: Path, fleet: Fleet, now: dt.datetime) -> EmulatedDevice:
    create_emulated_device(folder, fleet, now=now)
    return EmulatedDevice(folder, EmulatedRootOfTrust.open(folder), fleet)


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


def register_release(api: Api, fleet: Fleet, *, version: str | None = None) -> dict[str, Any]:
    """Register the fleet's reference values, under another version if given."""
    release = fleet.reference_values()
    if version is not None:
        release = release.model_copy(update={"version": version})
    response = api.client.post(
        "/v1/os-releases", json=release.model_dump(mode="json"), headers=api.operator
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
    os_version: str | None = None,
    measurements: tuple[Measurement, ...] | None = None,
    boot_register: bytes | None = None,
    security_versions: Mapping[str, int] | None = None,
    confirmation_key: ec.EllipticCurvePublicKey | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Evidence as the device signs it after booting its fleet's release, unless overridden."""
    measured = reference_measurements(device.fleet) if measurements is None else measurements
    claims = EvidenceClaims(
        device_id=device.rot.device_id,
        nonce=nonce,
        measurements=measured,
        boot_register=replay_register(measured) if boot_register is None else boot_register,
        os_version=os_version or device.fleet.reference_values().version,
        security_state=SecurityState.SECURE,
        manufacturing_state=ManufacturingState.DEVICE_COMPLETE,
        security_versions=dict(security_versions or fleet_security_versions()),
        issued_at=int(now.timestamp()),
        confirmation_key=confirmation_key,
    )
    return encode_evidence(claims, sign or device.rot.sign)


class AppTransport(httpx.BaseTransport):
    """Hands a `Client`'s requests to the in-process app, so a device agent can talk to it."""

    def __init__(self, app_client: TestClient) -> None:
        self._app_client = app_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = self._app_client.send(request)
        return response


def post_evidence(api: Api, evidence: bytes) -> Any:
    return api.client.post(
        "/v1/device/attestation/evidence",
        content=evidence,
        headers={"Content-Type": "application/eat+cwt"},
    )


class BrokenReferences:
    """Reference values that cannot be read: the failure no device can cause."""

    def get(self, *_: object) -> None:
        raise RuntimeError("the reference store is on fire")
