"""The service side of a simulation, all through `Client`: what the operator and the tenant do.

Set-up: the fleet's manufacturer CA and OS release reference values (operator), a tenant with
a product and its default groups, the devices claimed into "Field Test". During the run the
fleet events of the plan: an app uploaded (test-signed, production-signed by the service) and
deployed to the group, an OS release added to the Retail feed.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.device.emulator import Fleet, release_reference_values
from opensphere.device.packaging import package_application
from opensphere.formats.image_package import KeySigner
from opensphere.sim.invariants import DeployedApp

GROUP: Final = "Field Test"
APP_COMPONENT: Final = uuid.UUID("5e1a7c00-0000-4000-8000-00000000f1ee")
CLAIM_BATCH: Final = 1000  # the claim endpoint's limit
OS_SECURITY_VERSION: Final = 2


@dataclass(frozen=True)
class SimWorld:
    client: Client
    fleet: Fleet
    tenant_id: uuid.UUID
    group_id: uuid.UUID
    app_folder: Path
    app_signer: KeySigner

    def claim(self, claims: Sequence[schemas.DeviceClaim]) -> None:
        """Claim the devices into the group, a thousand a request."""
        for start in range(0, len(claims), CLAIM_BATCH):
            batch = list(claims[start : start + CLAIM_BATCH])
            self.client.claim_devices(self.tenant_id, batch, device_group_id=self.group_id)

    def deploy_app(self, *, day: int, version: str, rollout_percentage: int) -> DeployedApp:
        """Build the app at `version`, upload it and make it the group's deployment.

        The failure threshold is 100 %: a simulated power cut is no reason to halt, and a halted
        deployment would leave devices the checks expect to reach.
        """
        package = package_application(
            self.app_folder,
            signer=self.app_signer,
            version=version,
            security_version=1,
            build_time=int(dt.datetime.now(dt.UTC).timestamp()),
        )
        image, _ = self.client.upload_image(self.tenant_id, [package], len(package))
        deployment = self.client.create_deployment(
            self.tenant_id,
            self.group_id,
            schemas.DeploymentCreate(
                image_ids=[image.image_id],
                rollout_percentage=rollout_percentage,
                failure_threshold=100,
            ),
        )
        return DeployedApp(day, deployment.id, image.image_id, rollout_percentage)

    def publish_os(self, *, version: str) -> None:
        """A new OS release from the fleet's OS vendor, registered and put on the Retail feed."""
        signer = self.fleet.os_signer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.client.set_os_image_signers(
            schemas.OsImageSigners(
                keys=[
                    schemas.OsImageSignerKey(name="Simulated OS vendor", public_key=signer.decode())
                ]
            )
        )
        images = self.fleet.build_os_release(
            version=version,
            security_version=OS_SECURITY_VERSION,
            build_time=int(dt.datetime.now(dt.UTC).timestamp()),
        )
        release = self.client.register_os_release(
            release_reference_values(self.fleet.keystore(), images, description="simulated")
        )
        for image in images:
            self.client.add_os_image(release.id, image)
        self.client.publish_os_release(release.id, schemas.OsFeed.RETAIL)


def set_up(client: Client, fleet: Fleet, *, work: Path, app_signer: KeySigner) -> SimWorld:
    """Register the fleet with the operator, create the tenant, product and groups."""
    tag = uuid.uuid4().hex[:8]
    client.register_manufacturer_ca(
        f"Simulated fleet {tag}", fleet.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    client.register_os_release(fleet.reference_values(description="simulated fleet"))
    tenant = client.create_tenant(f"Simulation {tag}")
    product = client.create_product(tenant.id, schemas.ProductCreate(name="Simulated thermostat"))
    group = next(client.device_groups(tenant.id, product_id=product.id, name=GROUP))
    return SimWorld(
        client=client,
        fleet=fleet,
        tenant_id=tenant.id,
        group_id=group.id,
        app_folder=_app_folder(work / "app"),
        app_signer=app_signer,
    )


def _app_folder(folder: Path) -> Path:
    """A minimal app; with `run_apps=False` it is verified and measured at boot, never run."""
    (folder / "bin").mkdir(parents=True)
    entry = folder / "bin" / "app"
    entry.write_text("#!/bin/sh\nexit 0\n")
    entry.chmod(0o755)
    manifest = {
        "SchemaVersion": 1,
        "Name": "SimulatedThermostat",
        "ComponentId": str(APP_COMPONENT),
        "EntryPoint": "/bin/app",
        "CmdArgs": [],
        "ApplicationType": "Default",
        "Capabilities": {},
    }
    (folder / "app_manifest.json").write_text(json.dumps(manifest))
    return folder
