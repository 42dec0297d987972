"""TUF root rotation to offline keys, and exporting the repository as static files."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from device_helpers import new_fleet
from helpers import assert_problem, member
from securesystemslib.signer import CryptoSigner, SSlibKey
from update_helpers import Tenancy, deploy, on_loopback, tenancy, uploaded

from conftest import Api, FixedClock
from opensphere.cli.tuf import export_repository
from opensphere.client import Client
from opensphere.device.emulator import Fleet
from opensphere.updates.client import UpdateSession, init_trust
from opensphere.updates.repository import Channel, draft_root_rotation
from support.tuf_repository import serving

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


@pytest.fixture
def world(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> Tenancy:
    return tenancy(api, clock, tmp_path, fleet)


@pytest.fixture
def base_url(api: Api) -> Iterator[str]:
    with on_loopback(api.client.app) as url:
        yield url


def new_signer() -> CryptoSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def rotate(api: Api, tenant: str, signers: list[CryptoSigner], new: list[CryptoSigner]) -> Any:
    """What `sphere tuf root rotate` does: draft root N+1, sign it here, post it."""
    current = api.client.get(f"/v1/tenants/{tenant}/tuf/root", headers=api.operator).json()
    draft = draft_root_rotation(
        current["root"].encode(),
        new_keys=[s.public_key for s in new],
        threshold=len(new),
        now=dt.datetime.now(dt.UTC),
    )
    for signer in signers:
        draft.sign(signer, append=True)
    return api.client.post(
        f"/v1/tenants/{tenant}/tuf/root",
        json={"root": draft.to_bytes().decode()},
        headers=api.operator,
    )


def test_root_rotates_to_offline_keys_and_devices_follow(world: Tenancy, base_url: str) -> None:
    api, tenant = world.api, world.tenant_id
    image = uploaded(api, tenant)
    deploy(api, tenant, world.group(), [image["image_id"]])
    headers = world.credential(world.device())
    trust = api.client.get("/v1/device/trust", headers=headers).json()
    metadata = world.folder / "device-metadata"
    init_trust(metadata, trust["tuf_root"].encode())

    first = api.client.get(f"/v1/tenants/{tenant}/tuf/root", headers=api.operator).json()
    assert (first["version"], first["service_signs_root"]) == (1, True)
    offline = new_signer()
    rotated = rotate(api, tenant, [offline], [offline])
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2
    assert rotated.json()["service_signs_root"] is False

    session = UpdateSession(
        metadata,
        base_url + trust["metadata_path"],
        target_dir=world.folder / "device-targets",
        target_base_url=base_url + trust["targets_path"],
        headers=headers,
    )
    session.refresh()
    assert (metadata / "root.json").read_bytes().count(b'"version":2') == 1
    assert len(session.channel_targets(Channel.group(uuid.UUID(world.group())))) == 1

    # Without the offline key the service cannot sign root 3 on its own.
    refused = rotate(api, tenant, [new_signer()], [new_signer()])
    assert_problem(refused, 400, "root_rejected")
    replacement = new_signer()
    assert rotate(api, tenant, [offline, replacement], [replacement]).status_code == 200
    contributor = member(api, tenant, "Contributor")
    denied = api.client.post(
        f"/v1/tenants/{tenant}/tuf/root", json={"root": "{}"}, headers=contributor
    )
    assert_problem(denied, 403, "forbidden")


def test_a_malformed_root_is_refused(world: Tenancy) -> None:
    api = world.api
    answer = api.client.post(
        f"/v1/tenants/{world.tenant_id}/tuf/root", json={"root": "{}"}, headers=api.operator
    )
    assert_problem(answer, 400, "invalid_root")


def test_the_exported_repository_serves_devices_from_static_files(
    world: Tenancy, api: Api, base_url: str, tmp_path: Path
) -> None:
    tenant = world.tenant_id
    image = uploaded(api, tenant, body=b"exported" * 100)
    deploy(api, tenant, world.group(), [image["image_id"]])
    headers = world.credential(world.device())
    trust = api.client.get("/v1/device/trust", headers=headers).json()
    with Client(base_url, api.operator_token) as client:
        written = export_repository(client, uuid.UUID(tenant), tmp_path / "static")
        assert any(p.name == "timestamp.json" for p in written)
        assert export_repository(client, uuid.UUID(tenant), tmp_path / "static") == []
    init_trust(tmp_path / "static-device", trust["tuf_root"].encode())
    with serving(tmp_path / "static") as server:
        session = UpdateSession(
            tmp_path / "static-device",
            server.metadata_url,
            target_dir=tmp_path / "static-targets",
            target_base_url=server.targets_url,
        )
        session.refresh()
        (target,) = session.channel_targets(Channel.group(uuid.UUID(world.group())))
        downloaded = session.download(target).path.read_bytes()
    stored = api.client.get(
        f"/v1/tenants/{tenant}/images/{image['image_id']}/content", headers=api.operator
    )
    assert downloaded == stored.content
