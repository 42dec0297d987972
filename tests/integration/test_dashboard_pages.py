"""The dashboard in-process: signing in and out, access control, and no 500 on odd input.

The browser tests (tests/e2e/test_dashboard.py) show the pages work for a person; these
check the rules on both storage engines: the token is checked as the API checks it, a
Reader sees everything, a foreign tenant looks absent, and a cross-site POST is refused.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from device_helpers import new_fleet
from fastapi.testclient import TestClient
from helpers import token_for
from update_helpers import Tenancy, deploy, report, tenancy, uploaded

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet
from opensphere.formats.error_events import EventCategory, WireEvent, encode_batch

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

COOKIE = "opensphere_dashboard"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


@dataclass
class World:
    """A tenant with two attested devices, a deployment they reported on, and a crash."""

    tenancy: Tenancy
    reader_token: str
    installed: str
    failed: str
    deployment_id: str

    @property
    def tenant(self) -> str:
        return self.tenancy.tenant_id

    @property
    def base(self) -> str:
        return f"/dashboard/tenants/{self.tenant}"


@pytest.fixture
def world(api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet) -> World:
    place = tenancy(api, clock, tmp_path, fleet)
    first, second = place.device(), place.device()
    first_headers, second_headers = place.credential(first), place.credential(second)
    image = uploaded(api, place.tenant_id)
    deployment = deploy(api, place.tenant_id, place.group(), [image["image_id"]], min_reports=5)
    assert deployment.status_code == 201, deployment.text
    deployment_id = deployment.json()["id"]
    installed = report(
        api,
        first_headers,
        1,
        "installed",
        deployment_id=deployment_id,
        installed_images=[image["image_id"]],
    )
    assert installed.status_code == 200, installed.text
    failed = report(
        api, second_headers, 1, "failed", deployment_id=deployment_id, reason="disk full"
    )
    assert failed.status_code == 200, failed.text
    now = int(clock.now().timestamp())
    crash = WireEvent(
        id=uuid.uuid4(),
        category=EventCategory.APP_CRASH,
        component_id=uuid.UUID(image["component_id"]),
        signal_status=11,
        count=3,
        first_seen=now - 120,
        last_seen=now - 60,
    )
    uploaded_events = api.client.post(
        "/v1/device/error-reports",
        content=encode_batch(first.device_id, [crash], sent_at=now),
        headers={**first_headers, "Content-Type": "application/json"},
    )
    assert uploaded_events.status_code == 200, uploaded_events.text
    reader = f"reader-{uuid.uuid4().hex[:8]}@example.com"
    assigned = api.client.put(
        f"/v1/tenants/{place.tenant_id}/roles/{reader}",
        json={"role": "Reader"},
        headers=api.operator,
    )
    assert assigned.status_code == 200, assigned.text
    return World(
        tenancy=place,
        reader_token=token_for(api, reader, place.tenant_id),
        installed=first.device_id,
        failed=second.device_id,
        deployment_id=deployment_id,
    )


def sign_in(client: TestClient, token: str, **headers: str) -> httpx.Response:
    return client.post(
        "/dashboard/sign-in",
        data={"token": token, "next": "/dashboard/"},
        headers=headers,
        follow_redirects=False,
    )


def test_pages_send_a_stranger_to_sign_in_and_a_bad_token_gets_a_clear_message(
    api: Api, world: World
) -> None:
    page = api.client.get(world.base, follow_redirects=False)
    assert page.status_code == 303
    assert (
        page.headers["location"]
        == f"/dashboard/sign-in?next=%2Fdashboard%2Ftenants%2F{world.tenant}"
    )
    form = api.client.get(page.headers["location"])
    assert form.status_code == 200
    assert '<label for="token">API token</label>' in form.text
    for token, message in (
        ("not-a-token", "the API token is malformed"),
        (f"osk_{uuid.uuid4().hex}_{'A' * 43}", "the API token is not valid"),
        ("   ", "Paste an API token to sign in."),
    ):
        refused = sign_in(api.client, token)
        assert refused.status_code in (400, 401), refused.text
        assert message in refused.text
        assert 'role="alert"' in refused.text
        assert COOKIE not in refused.headers.get("set-cookie", "")
    assert COOKIE not in api.client.cookies


def test_a_reader_signs_in_and_sees_every_page_with_real_content(api: Api, world: World) -> None:
    answer = sign_in(api.client, world.reader_token)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Path=/dashboard", "SameSite=strict"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower(), "plain http on loopback: no Secure flag"
    home = api.client.get("/dashboard/", follow_redirects=False)
    assert home.headers["location"] == world.base, "one tenant: straight to it"

    overview = api.client.get(world.base)
    assert overview.status_code == 200
    assert "default-src 'none'" in overview.headers["content-security-policy"]
    assert re.search(r"<dt>Devices</dt><dd><a [^>]*>2</a></dd>", overview.text)
    assert 'aria-label="Devices by last attestation"' in overview.text
    assert "<title>Passed, last 24 hours: 2</title>" in overview.text
    assert "<title>failed: 1</title>" in overview.text

    devices = api.client.get(f"{world.base}/devices")
    assert world.installed in devices.text
    assert world.failed in devices.text

    device = api.client.get(f"{world.base}/devices/{world.installed}")
    assert device.status_code == 200
    assert f'<code class="wrap" id="device-id">{world.installed}</code>' in device.text
    assert "Thermostat" in device.text, "the installed image by name"
    assert "AppCrash" in device.text, "the device's recent events"

    group = api.client.get(f"{world.base}/device-groups/{world.tenancy.group()}")
    assert group.status_code == 200
    assert f"/deployments/{world.deployment_id}" in group.text
    assert "1 of 2 devices in the group" in group.text
    deployment = api.client.get(
        f"{world.base}/device-groups/{world.tenancy.group()}/deployments/{world.deployment_id}"
    )
    assert "<title>installed: 1</title>" in deployment.text
    assert "<title>failed: 1</title>" in deployment.text
    assert "disk full" in deployment.text
    assert world.failed in deployment.text

    errors = api.client.get(f"{world.base}/errors")
    assert 'aria-label="Error events per day, last 14 days"' in errors.text
    assert "AppCrash" in errors.text
    assert "signal 11" in errors.text
    problem = re.search(rf"{world.base}/problems/([0-9a-f-]{{36}})", errors.text)
    assert problem is not None
    shown = api.client.get(problem.group(0))
    assert shown.status_code == 200
    assert "Devices affected</dt><dd>1</dd>" in shown.text

    ca = api.client.get(f"{world.base}/ca-certificates")
    assert "Active" in ca.text
    assert re.search(r"<td>7[23]\d</td>", ca.text), "about 730 days left"

    audit = api.client.get(f"{world.base}/audit", params={"action": "deployment.create"})
    assert "deployment.create" in audit.text
    assert "device.claim" not in audit.text


def test_a_foreign_tenant_and_its_objects_look_absent(
    api: Api, world: World, clock: FixedClock, tmp_path: Path, fleet: Fleet
) -> None:
    other = tenancy(api, clock, tmp_path / "other", fleet)
    theirs = other.device()
    sign_in(api.client, world.reader_token)
    for path in (
        f"/dashboard/tenants/{other.tenant_id}",
        f"/dashboard/tenants/{other.tenant_id}/devices",
        f"/dashboard/tenants/{other.tenant_id}/audit",
        f"{world.base}/devices/{theirs.device_id}",
        f"{world.base}/device-groups/{other.group()}",
        f"{world.base}/device-groups/{other.group()}/deployments/{world.deployment_id}",
    ):
        answer = api.client.get(path)
        assert answer.status_code == 404, path
        assert "<h1>Not found</h1>" in answer.text
        assert theirs.device_id not in answer.text


def test_odd_query_parameters_and_paths_never_cause_a_server_error(api: Api, world: World) -> None:
    sign_in(api.client, world.reader_token)
    group = world.tenancy.group()
    for path, params, status in (
        (f"{world.base}/devices", {"after": "garbage"}, 400),
        (f"{world.base}/devices", {"after": "x" * 5000}, 400),
        (f"{world.base}/devices", {"group": "not-a-guid"}, 400),
        (f"{world.base}/devices", {"group": str(uuid.uuid4())}, 200),
        (f"{world.base}/audit", {"action": "'; DROP TABLE audit_events; --"}, 400),
        (f"{world.base}/audit", {"after": "eyJ2IjoyfQ"}, 400),
        (f"{world.base}/errors", {"after": "%00"}, 400),
        (f"{world.base}/device-groups", {"after": "\u202e"}, 400),
        (f"{world.base}/device-groups/{group}", {"after": "[]"}, 400),
        ("/dashboard/tenants/not-a-guid", {}, 404),
        (f"{world.base}/devices/{'g' * 128}", {}, 404),
        (f"{world.base}/devices/{world.installed.upper()}", {}, 404),
        (f"{world.base}/device-groups/{group}/deployments/1", {}, 404),
        (f"{world.base}/problems/{uuid.uuid4()}", {}, 404),
        ("/dashboard/sign-in", {"next": "https://evil.example/"}, 303),
    ):
        answer = api.client.get(path, params=params, follow_redirects=False)
        assert answer.status_code == status, (path, params, answer.text[:300])
        if status == 303:
            assert answer.headers["location"] == "/dashboard/", "never off the dashboard"
        else:
            assert answer.headers["content-type"].startswith("text/html")


def test_cross_site_posts_are_refused_and_next_stays_on_the_dashboard(
    api: Api, world: World
) -> None:
    forged = sign_in(api.client, world.reader_token, origin="https://evil.example")
    assert forged.status_code == 403
    assert "another site" in forged.text
    assert COOKIE not in api.client.cookies
    answer = api.client.post(
        "/dashboard/sign-in",
        data={"token": world.reader_token, "next": "//evil.example/x"},
        headers={"origin": "http://testserver"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/"
    refused = api.client.post(
        "/dashboard/sign-out", headers={"referer": "https://evil.example/page"}
    )
    assert refused.status_code == 403
    assert api.client.get(world.base).status_code == 200, "still signed in"


def test_sign_out_and_revocation_end_the_session(api: Api, world: World) -> None:
    sign_in(api.client, world.reader_token)
    assert api.client.get(world.base).status_code == 200
    out = api.client.post("/dashboard/sign-out", follow_redirects=False)
    assert out.status_code == 303
    assert f'{COOKIE}=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    assert "You are signed out." in api.client.get(out.headers["location"]).text
    assert api.client.get(world.base, follow_redirects=False).status_code == 303

    sign_in(api.client, world.reader_token)
    assert api.client.get(world.base).status_code == 200
    token_id = uuid.UUID(hex=world.reader_token.split("_")[1])
    revoked = api.client.post(f"/v1/tokens/{token_id}/revoke", headers=api.operator)
    assert revoked.status_code == 200, revoked.text
    after = api.client.get(world.base, follow_redirects=False)
    assert after.status_code == 303, "a revoked token signs its sessions out at once"
    assert after.headers["location"].startswith("/dashboard/sign-in")


def test_an_operator_with_several_tenants_picks_one(
    api: Api, world: World, clock: FixedClock, tmp_path: Path, fleet: Fleet
) -> None:
    other = tenancy(api, clock, tmp_path / "other", fleet)
    sign_in(api.client, api.operator_token)
    home = api.client.get("/dashboard/", follow_redirects=False)
    assert home.headers["location"] == "/dashboard/tenants"
    picker = api.client.get("/dashboard/tenants")
    assert f'href="/dashboard/tenants/{world.tenant}"' in picker.text
    assert f'href="/dashboard/tenants/{other.tenant_id}"' in picker.text
    overview = api.client.get(f"/dashboard/tenants/{other.tenant_id}")
    assert "Switch tenant" in overview.text
