"""The dashboard in a real browser (Debian's headless Chromium) against a real `sphere server`.

The fleet is seeded as a user would: the `sphere` CLI manufactures, claims and attests
emulated devices, uploads an app and deploys it; the devices then report their update
state and error events with their own credentials. The browser signs in, opens every
page, follows a deployment from its group, and signs out; a screenshot of each page lands
in test-artifacts/dashboard/. Every request the pages make must stay on the service.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.formats.error_events import EventCategory, WireEvent, encode_batch
from support.debian import ensure_packages
from support.service import SPHERE, RunningService, running_service

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READER = "reader@contoso.example"


@dataclass
class Fleet:
    """What the seeding made, for the tests to look for on the pages."""

    service: RunningService
    tenant_id: str
    foreign_tenant_id: str
    group_id: str
    deployment_id: str
    installed: str
    failed: str
    never_attested: str
    reader_token: str
    requests: list[str] = field(default_factory=list)

    @property
    def operator_token(self) -> str:
        return self.service.operator_token_file.read_text().strip()

    @property
    def base(self) -> str:
        return f"{self.service.url}/dashboard/tenants/{self.tenant_id}"


@dataclass
class Cli:
    """`sphere` with its own configuration folder, as one user at one terminal."""

    env: dict[str, str]

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [SPHERE, *args], env=self.env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"sphere {args}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))


def _report(
    client: Client, device: dict[str, str], deployment: str, image: str, *, ok: bool
) -> None:
    """The device reports on the deployment and uploads crashes, as its attestation allows."""
    credential = (Path(device["folder"]) / "daa" / "credential").read_text().strip()
    client.report_update_status(
        credential,
        schemas.UpdateStatusReport(
            sequence=1,
            deployment_id=uuid.UUID(deployment),
            state=schemas.UpdateState.INSTALLED if ok else schemas.UpdateState.FAILED,
            reason=None if ok else "image verification failed",
            installed_images=[uuid.UUID(image)] if ok else [],
        ),
    )
    now = dt.datetime.now(dt.UTC)
    events = [
        WireEvent(
            id=uuid.uuid4(),
            category=EventCategory.APP_CRASH,
            signal_status=11,
            count=days + 1,
            first_seen=int((now - dt.timedelta(days=days, minutes=5)).timestamp()),
            last_seen=int((now - dt.timedelta(days=days)).timestamp()),
        )
        for days in range(4)
    ]
    batch = encode_batch(device["device_id"], events, sent_at=int(now.timestamp()))
    answer = client.upload_error_events(credential, batch)
    assert len(answer.stored) == len(events)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("dashboard")
    env = {**os.environ, "OPENSPHERE_CONFIG_DIR": str(work / "config"), "COLUMNS": "250"}
    env.pop("OPENSPHERE_PROFILE", None)
    sphere = Cli(env)
    with running_service(work / "data") as service:
        sphere.run("login", "--url", service.url, "--token-file", str(service.operator_token_file))
        tenant = sphere.json("tenant", "create", "Contoso")
        ca = work / "manufacturer-ca"
        sphere.run("manufacturer", "ca", "create", "--out", str(ca), "--name", "Contoso Mfg CA")
        sphere.run(
            "manufacturer", "ca", "register", str(ca / "manufacturer-ca.pem"), "--name", "Mfg"
        )
        made = sphere.json(
            "device", "manufacture", "--ca", str(ca), "--out", str(work / "devices"), "-n", "3"
        )
        sphere.run("os-release", "register", "--fleet", str(ca))
        sphere.run("product", "create", "--name", "Thermostat")
        sphere.run("device", "claim", str(work / "devices"), "-g", "Thermostat/Field Test")
        installed, failed, never = made
        for device in (installed, failed):
            sphere.run("device-emulator", "attest", device["folder"], "--url", service.url)
        package = work / "thermostat.imagepackage"
        samples = ROOT / "samples"
        sphere.run(
            "image-package", "pack-application", str(samples / "thermostat"),
            "--key", str(samples / "keys" / "test-signing-key.pem"), "--out", str(package),
        )  # fmt: skip
        image = sphere.json("image", "add", str(package))
        deployment = sphere.json(
            "device-group", "deployment", "create",
            "--device-group", "Thermostat/Field Test", "--images", image["image_id"],
        )  # fmt: skip
        with Client(service.url, service.operator_token_file.read_text().strip()) as client:
            _report(client, installed, deployment["id"], image["image_id"], ok=True)
            _report(client, failed, deployment["id"], image["image_id"], ok=False)
            tenant_id = uuid.UUID(tenant["id"])
            client.assign_role(tenant_id, READER, schemas.Role.READER)
            reader = client.create_token(
                schemas.TokenCreate(name="dashboard", user=READER, tenant_id=tenant_id)
            )
            foreign = client.create_tenant("Fabrikam")
        yield Fleet(
            service=service,
            tenant_id=tenant["id"],
            foreign_tenant_id=str(foreign.id),
            group_id=deployment["device_group_id"],
            deployment_id=deployment["id"],
            installed=installed["device_id"],
            failed=failed["device_id"],
            never_attested=never["device_id"],
            reader_token=reader.token,
        )


@pytest.fixture(scope="module")
def browser(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One headless Debian Chromium (never a downloaded one) with a fresh profile."""
    ensure_packages(["chromium"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 768},
        )
        context.on("request", lambda request: fleet.requests.append(request.url))
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # 401 and 404 answers are expected here; anything else (a CSP violation) is not
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", console)
    yield page
    page.close()
    assert errors == [], "the pages log no errors (e.g. Content-Security-Policy violations)"


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, fleet: Fleet, token: str) -> None:
    page.goto(f"{fleet.service.url}/dashboard/")
    expect(page.get_by_role("heading", name="Sign in to the OpenSphere dashboard")).to_be_visible()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_a_bad_token_gets_a_clear_message_not_an_error_page(page: Page, fleet: Fleet) -> None:
    sign_in(page, fleet, "osk_not-a-token")
    expect(page.get_by_role("alert")).to_contain_text("the API token is malformed")
    shot(page, "01-sign-in-refused")
    unknown = f"osk_{uuid.uuid4().hex}_{'A' * 43}"
    page.get_by_label("API token").fill(unknown)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("the API token is not valid")


def test_the_operator_opens_every_page(page: Page, fleet: Fleet) -> None:
    sign_in(page, fleet, fleet.operator_token)
    expect(page.get_by_role("heading", name="Choose a tenant")).to_be_visible()
    shot(page, "02-tenant-picker")
    page.get_by_role("link", name="Contoso").click()

    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    totals = page.get_by_label("Fleet totals")
    expect(totals).to_contain_text(re.compile(r"Devices\s*3\s*Enabled\s*3"))
    expect(totals).to_contain_text(re.compile(r"Attested in the last 24 hours\s*2"))
    expect(totals).to_contain_text(re.compile(r"Failed updates\s*1"))
    for title in (
        "Devices by last attestation",
        "Devices by OS version",
        "Devices by update state",
    ):
        expect(page.get_by_role("img", name=title)).to_be_visible()
    expect(page.locator("#chart-devices-by-last-attestation-desc")).to_contain_text(
        "Never attested: 1"
    )
    shot(page, "03-overview")

    page.get_by_role("link", name="Devices", exact=True).click()
    for device_id in (fleet.installed, fleet.failed, fleet.never_attested):
        expect(page.get_by_role("link", name=f"Device {device_id[:16]}")).to_be_visible()
    shot(page, "04-devices")
    page.get_by_role("link", name=f"Device {fleet.installed[:16]}").click()
    expect(page.locator("#device-id")).to_have_text(fleet.installed)
    expect(page.get_by_role("table", name="Installed images")).to_contain_text("Thermostat")
    expect(page.get_by_text("AppCrash").first).to_be_visible()
    shot(page, "05-device")

    page.get_by_role("link", name="Errors and problems").click()
    chart = page.get_by_role("img", name="Error events per day, last 14 days")
    expect(chart).to_be_visible()
    expect(page.locator("#chart-error-events-per-day-last-14-days-desc")).to_contain_text(
        "20 events in all"
    )
    shot(page, "06-errors")
    page.get_by_role("link", name="AppCrash").first.click()
    expect(page.get_by_role("heading", name="Problem: AppCrash (signal 11)")).to_be_visible()
    expect(
        page.get_by_role("img", name="Events of this problem per day, last 14 days")
    ).to_be_visible()
    shot(page, "07-problem")

    page.get_by_role("link", name="CA certificates").click()
    expect(
        page.get_by_role("table", name="Tenant CA generations and their expiry")
    ).to_contain_text("Active")
    shot(page, "08-ca-certificates")

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").fill("deployment.create")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    shot(page, "09-audit")
    assert all(url.startswith(fleet.service.url) for url in fleet.requests), "no CDN, no other site"


def test_follow_a_deployment_from_its_group(page: Page, fleet: Fleet) -> None:
    page.goto(f"{fleet.base}/device-groups")
    page.get_by_role("link", name="Thermostat/Field Test", exact=True).click()
    expect(page.get_by_role("heading", name="Device group Thermostat/Field Test")).to_be_visible()
    expect(page.get_by_role("img", name="Rollout progress by update state")).to_be_visible()
    expect(page.get_by_text("1 of 3 devices in the group")).to_be_visible()
    shot(page, "10-device-group")
    page.get_by_role("link", name=f"Deployment {fleet.deployment_id}").click()
    expect(page).to_have_url(
        f"{fleet.base}/device-groups/{fleet.group_id}/deployments/{fleet.deployment_id}"
    )
    description = page.locator("#chart-rollout-progress-by-update-state-desc")
    expect(description).to_contain_text("installed: 1")
    expect(description).to_contain_text("failed: 1")
    expect(description).to_contain_text("not reported yet: 1")
    failures = page.get_by_role("table", name="The latest 1 failure reports")
    expect(failures).to_contain_text("image verification failed")
    shot(page, "11-deployment")


def test_a_reader_sees_the_fleet_but_a_foreign_tenant_is_not_found(
    page: Page, fleet: Fleet, browser: BrowserContext
) -> None:
    browser.clear_cookies()
    sign_in(page, fleet, fleet.reader_token)
    expect(page).to_have_url(fleet.base)
    expect(page.get_by_text("Tenant Contoso · Reader")).to_be_visible()
    answer = page.goto(f"{fleet.service.url}/dashboard/tenants/{fleet.foreign_tenant_id}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("does not exist or you have no role in it")
    shot(page, "12-foreign-tenant")


def test_sign_out_ends_the_session(page: Page, fleet: Fleet) -> None:
    page.goto(fleet.base)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(fleet.base)
    expect(page.get_by_role("heading", name="Sign in to the OpenSphere dashboard")).to_be_visible()
    shot(page, "13-signed-out")
