"""Devices fetch their group's update metadata and images with python-tuf's client, over real
HTTP on loopback, from the service's own TUF repository."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from device_helpers import EmulatedDevice, new_fleet
from helpers import assert_problem
from update_helpers import Tenancy, deploy, on_loopback, tenancy, uploaded

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.updates.client import UpdateSession, init_trust
from opensphere.updates.repository import Channel

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


class DeviceUpdater:
    """What a device agent does: fetch trust once, then check with UpdateSession."""

    def __init__(self, world: Tenancy, device: EmulatedDevice, base_url: str) -> None:
        self.headers = world.credential(device)
        trust = world.api.client.get("/v1/device/trust", headers=self.headers)
        assert trust.status_code == 200, trust.text
        self.trust = trust.json()
        self.base_url = base_url
        self.folder = device.folder / "updates"
        init_trust(self.folder / "metadata", self.trust["tuf_root"].encode())

    def session(self) -> UpdateSession:
        return UpdateSession(
            self.folder / "metadata",
            self.base_url + self.trust["metadata_path"],
            target_dir=self.folder / "targets",
            target_base_url=self.base_url + self.trust["targets_path"],
            headers=self.headers,
        )

    def offered(self) -> dict[str, int]:
        """Target name → length of what the group offers now."""
        session = self.session()
        session.refresh()
        group = Channel.group(self.trust["device_group_id"])
        return {t.path.rsplit("/", 1)[1]: t.length for t in session.channel_targets(group)}


def test_a_device_gets_exactly_its_groups_images(world: Tenancy, base_url: str) -> None:
    api, tenant = world.api, world.tenant_id
    mine = uploaded(api, tenant, body=b"mine" * 1000)
    other = uploaded(api, tenant, body=b"other group")
    assert deploy(api, tenant, world.group(), [mine["image_id"]]).status_code == 201
    assert deploy(api, tenant, world.group("Production"), [other["image_id"]]).status_code == 201
    updater = DeviceUpdater(world, world.device(), base_url)
    trust = updater.trust
    assert trust["channel_prefix"] == f"groups/{world.group()}/"
    assert trust["image_signing_keys"][0]["thumbprint"] == mine["signer_thumbprint"]
    assert trust["image_signing_keys"][0]["usages"] == ["app"]

    session = updater.session()
    session.refresh()
    targets = session.channel_targets(Channel.group(world.group()))
    assert [t.path for t in targets] == [
        f"groups/{world.group()}/app-{mine['image_id']}.imagepackage"
    ]
    assert targets[0].custom["image_id"] == mine["image_id"]
    assert targets[0].custom["rollout"]["percentage"] == 100
    downloaded = session.download(targets[0])
    data = downloaded.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == mine["sha256"]
    stored = api.client.get(
        f"/v1/tenants/{tenant}/images/{mine['image_id']}/content", headers=api.operator
    )
    assert data == stored.content


def test_a_new_deployment_is_seen_at_the_next_check(world: Tenancy, base_url: str) -> None:
    api, tenant, group = world.api, world.tenant_id, world.group()
    updater = DeviceUpdater(world, world.device(), base_url)
    assert updater.offered() == {}
    first = uploaded(api, tenant)
    deploy(api, tenant, group, [first["image_id"]])
    assert updater.offered() == {f"app-{first['image_id']}.imagepackage": first["length"]}
    second = uploaded(api, tenant, body=b"v2")
    deploy(api, tenant, group, [second["image_id"]])
    session = updater.session()
    assert session.refresh().changed
    assert updater.offered() == {f"app-{second['image_id']}.imagepackage": second["length"]}
    assert not updater.session().refresh().changed


def test_the_timestamp_is_re_signed_before_it_expires(
    world: Tenancy, clock: FixedClock, base_url: str
) -> None:
    updater = DeviceUpdater(world, world.device(), base_url)
    url = base_url + updater.trust["metadata_path"] + "timestamp.json"
    before = json.loads(httpx.get(url, headers=updater.headers).content)["signed"]
    assert updater.session().refresh().changed
    clock.advance(dt.timedelta(hours=20))
    time.sleep(1.1)  # past the per-process head cache
    after = json.loads(httpx.get(url, headers=updater.headers).content)["signed"]
    assert after["version"] > before["version"]
    expires = dt.datetime.fromisoformat(after["expires"].replace("Z", "+00:00"))
    assert expires > clock.now() + dt.timedelta(hours=12)
    assert updater.session().refresh().changed


def test_timestamp_answers_304_when_nothing_changed(world: Tenancy, base_url: str) -> None:
    updater = DeviceUpdater(world, world.device(), base_url)
    url = base_url + updater.trust["metadata_path"] + "timestamp.json"
    first = httpx.get(url, headers=updater.headers)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "private, max-age=60"
    again = httpx.get(url, headers={**updater.headers, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    root = httpx.get(
        base_url + updater.trust["metadata_path"] + "1.root.json", headers=updater.headers
    )
    assert "immutable" in root.headers["cache-control"]


def test_other_tenants_and_strangers_are_refused(
    world: Tenancy, api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet
) -> None:
    image = uploaded(api, world.tenant_id)
    deploy(api, world.tenant_id, world.group(), [image["image_id"]])
    mine = DeviceUpdater(world, world.device(), "")
    other = tenancy(api, clock, tmp_path / "other", fleet)
    stranger = other.credential(other.device())
    base = f"/v1/device/tuf/{world.tenant_id}"
    for path in ("/metadata/timestamp.json", "/metadata/1.root.json"):
        assert_problem(api.client.get(base + path, headers=stranger), 403, "device_refused")
        assert_problem(api.client.get(base + path), 403, "device_refused")
        assert api.client.get(base + path, headers=mine.headers).status_code == 200
    # Another tenant's image, asked for by its hash through one's own tenant: not there.
    theirs = f"/v1/device/tuf/{other.tenant_id}/targets/groups/x/{image['sha256']}.a.imagepackage"
    assert_problem(api.client.get(theirs, headers=stranger), 404, "not_found")
    # Disabling a device takes effect at once, even with its credential cached.
    device_id = api.client.get("/v1/device/me", headers=mine.headers).json()["device_id"]
    api.client.patch(
        f"/v1/tenants/{world.tenant_id}/devices/{device_id}",
        json={"enabled": False},
        headers=api.operator,
    )
    refused = api.client.get(base + "/metadata/timestamp.json", headers=mine.headers)
    assert_problem(refused, 403, "device_refused")
