"""Builders for image, deployment and update tests: packages, uploads, groups and devices."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from device_helpers import (
    EmulatedDevice,
    challenge,
    claim,
    claim_item,
    make_device,
    make_evidence,
    post_evidence,
    register_manufacturer,
    register_release,
)
from fastapi import FastAPI
from helpers import create_product, create_tenant

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.device.packaging import package_image
from opensphere.formats.image_package import ImageType, PackageSigner
from opensphere.service.fast_lane import server_config
from support.device_os import sdk_test_signer
from support.service import free_port

APP_COMPONENT = uuid.UUID("4e2b5f4c-1d3a-4c6e-9f7b-2a8d0c1e3f5a")


def app_package(
    signer: PackageSigner | None = None,
    *,
    component_id: uuid.UUID = APP_COMPONENT,
    image_type: ImageType = ImageType.Applications,
    body: bytes = b"app body",
    security_version: int = 1,
) -> bytes:
    """A fresh image (new image ID), test-signed unless another signer is given."""
    return package_image(
        image_type=image_type,
        component_id=component_id,
        name="Thermostat",
        body=body,
        signer=signer or sdk_test_signer(),
        version="1.0.0",
        security_version=security_version,
        build_time=1_790_000_000,
    )


def upload(api: Api, tenant_id: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return api.client.post(
        f"/v1/tenants/{tenant_id}/images",
        content=data,
        headers={**(headers or api.operator), "Content-Type": "application/octet-stream"},
    )


def uploaded(api: Api, tenant_id: str, **options: Any) -> dict[str, Any]:
    response = upload(api, tenant_id, app_package(**options))
    assert response.status_code == 201, response.text
    return dict(response.json())


def deploy(api: Api, tenant_id: str, group_id: str, image_ids: list[str], **options: Any) -> Any:
    return api.client.post(
        f"/v1/tenants/{tenant_id}/device-groups/{group_id}/deployments",
        json={"image_ids": image_ids, **options},
        headers=api.operator,
    )


@dataclass
class Tenancy:
    """A tenant with a product and its default groups, and a fleet whose devices it claims."""

    api: Api
    clock: FixedClock
    folder: Path
    tenant_id: str
    product_id: str
    groups: dict[str, dict[str, Any]]
    fleet: Fleet

    def group(self, name: str = "Field Test") -> str:
        return str(self.groups[name]["id"])

    def device(self, group: str = "Field Test") -> EmulatedDevice:
        """A device claimed into `group`."""
        device = make_device(self.folder / uuid.uuid4().hex, self.fleet, self.clock.now())
        item = claim_item(device, self.tenant_id, self.clock.now())
        response = claim(self.api, self.tenant_id, [item], device_group_id=self.group(group))
        assert response.status_code == 201, response.text
        return device

    def credential(self, device: EmulatedDevice) -> dict[str, str]:
        """Attest `device` and return the headers its device endpoints take."""
        nonce = challenge(self.api, device.device_id)
        response = post_evidence(self.api, make_evidence(device, nonce, self.clock.now()))
        assert response.status_code == 200, response.text
        return {"Authorization": f"Device {response.json()['credential']}"}


def tenancy(api: Api, clock: FixedClock, folder: Path, fleet: Fleet) -> Tenancy:
    """A new tenant; the fleet's manufacturer and OS release are registered once."""
    tenant = create_tenant(api)
    product = create_product(api, tenant["id"], api.operator)
    groups = api.client.get(
        f"/v1/tenants/{tenant['id']}/device-groups",
        params={"product_id": product["id"]},
        headers=api.operator,
    ).json()["items"]
    known = api.client.get("/v1/manufacturer-cas", headers=api.operator).json()["items"]
    if not known:
        register_manufacturer(api, fleet.ca_cert)
        register_release(api, fleet)
    return Tenancy(
        api=api,
        clock=clock,
        folder=folder,
        tenant_id=tenant["id"],
        product_id=product["id"],
        groups={group["name"]: group for group in groups},
        fleet=fleet,
    )


def group_role(api: Api, tenant_id: str, group_id: str) -> dict[str, dict[str, Any]]:
    """The group's published targets (name → custom), read from the repository state."""
    state = api.client.get(f"/v1/tenants/{tenant_id}/tuf/state", headers=api.operator)
    assert state.status_code == 200, state.text
    role = state.json()["delegated"].get(f"group-{group_id}")
    if role is None:
        return {}
    signed = json.loads(base64.b64decode(role))["signed"]
    return {
        path.rsplit("/", 1)[1]: target.get("custom", {})
        for path, target in signed["targets"].items()
        if not path.endswith("manifest.json")
    }


def report(api: Api, headers: dict[str, str], sequence: int, state: str, **body: Any) -> Any:
    return api.client.post(
        "/v1/device/update-status",
        json={"sequence": sequence, "state": state, **body},
        headers=headers,
    )


@contextmanager
def on_loopback(app: Any, **options: Any) -> Iterator[str]:
    """Serve an in-process app on a loopback port, for clients that need HTTP: the service's
    app as `sphere server` does (with its fast lane), a test's wrapper around it as it is."""
    port = free_port()
    options = {
        "host": "127.0.0.1",
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        **options,
    }
    config = (
        server_config(app, **options)
        if isinstance(app, FastAPI)
        else uvicorn.Config(app, **options)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
