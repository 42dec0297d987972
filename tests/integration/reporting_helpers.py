"""A claimed device with a device credential, for the failure-reporting tests.

The credential is minted with the service's own credential key (what a passing
attestation hands out), so these tests need no OS release or boot.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from helpers import create_product, create_tenant

from conftest import Api
from opensphere.factory import create_manufacturer_ca, load_idevid, manufacture_device
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.rot import EmulatedRootOfTrust


@dataclass
class ReportingDevice:
    device_id: str
    tenant_id: str
    group_id: str
    product_id: str
    credential: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Device {self.credential}"}


def reporting_devices(
    api: Api, folder: Path, now: dt.datetime, *, count: int = 1, crash_dumps: bool = False
) -> list[ReportingDevice]:
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator)
    group = api.client.get(
        f"/v1/tenants/{tenant['id']}/device-groups",
        params={"product_id": product["id"], "name": "Field Test"},
        headers=api.operator,
    ).json()["items"][0]
    if crash_dumps:
        api.client.patch(
            f"/v1/tenants/{tenant['id']}/device-groups/{group['id']}",
            json={"allow_crash_dumps": True},
            headers=api.operator,
        )
    ca_key, ca_cert = create_manufacturer_ca("Reporting CA", now=now, validity_days=30)
    api.client.post(
        "/v1/manufacturer-cas",
        json={
            "name": f"CA {uuid.uuid4().hex[:6]}",
            "certificate": ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        },
        headers=api.operator,
    )
    devices = []
    for index in range(count):
        device_folder = folder / f"device-{index}"
        device_id = manufacture_device(device_folder, ca_key, ca_cert, now=now)
        rot = EmulatedRootOfTrust.open(device_folder)
        statement = ClaimStatement(device_id, uuid.UUID(tenant["id"]), int(now.timestamp()))
        claimed = api.client.post(
            f"/v1/tenants/{tenant['id']}/devices/claim",
            json={
                "devices": [
                    {
                        "claim_statement": base64.urlsafe_b64encode(
                            encode_claim_statement(statement, rot.sign)
                        ).decode(),
                        "idevid": load_idevid(device_folder)
                        .public_bytes(serialization.Encoding.PEM)
                        .decode(),
                    }
                ],
                "device_group_id": group["id"],
            },
            headers=api.operator,
        )
        assert claimed.status_code == 201, claimed.text
        credential = api.client.app.state.credentials.issue(
            device_id=device_id,
            tenant_id=uuid.UUID(tenant["id"]),
            expires_at=now + dt.timedelta(hours=24),
        )
        devices.append(
            ReportingDevice(device_id, tenant["id"], group["id"], product["id"], credential)
        )
    return devices
