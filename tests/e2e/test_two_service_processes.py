"""Two `sphere server` processes on one data folder and database serve the same fleet.

(And `sphere device bulk-claim`, which fills a registry through one of them.)

Against SQLite (the shared file, WAL, `BEGIN IMMEDIATE`) and PostgreSQL: a challenge issued
by one process is answered at the other and is good once; the same devices claimed through
both at once are each claimed exactly once, the loser refused with a problem document; the
retention job runs in both every second without errors, and old events go exactly once.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.policy import BOOT_STAGES
from opensphere.factory import load_idevid
from opensphere.factory.bulk import make_claimable_identity
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.formats.evidence import (
    EvidenceClaims,
    ManufacturingState,
    Measurement,
    SecurityState,
    encode_evidence,
    replay_register,
)
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning
from opensphere.service.error_reports.models import ErrorEvent, Problem
from opensphere.service.storage.db import Storage, sqlite_url
from support.service import SPHERE, RunningService, running_service

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

DEVICES = 3
BATCHES = 4
BATCH = 25


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite in the data folder, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield None
        return
    admin: str = request.getfixturevalue("postgres_admin_url")
    name = f"opensphere_two_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _client(service: RunningService) -> httpx.Client:
    token = service.operator_token_file.read_text().strip()
    return httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _evidence(rot: EmulatedRootOfTrust, fleet: Fleet, nonce: bytes) -> bytes:
    measured = tuple(
        Measurement(m.stage, bytes.fromhex(m.digest)) for m in fleet.reference_values().measurements
    )
    claims = EvidenceClaims(
        device_id=rot.device_id,
        nonce=nonce,
        measurements=measured,
        boot_register=replay_register(measured),
        os_version=fleet.reference_values().version,
        security_state=SecurityState.SECURE,
        manufacturing_state=ManufacturingState.DEVICE_COMPLETE,
        security_versions={stage.name: 1 for stage in BOOT_STAGES},
        issued_at=int(dt.datetime.now(dt.UTC).timestamp()),
    )
    return encode_evidence(claims, rot.sign)


def _attest_across(
    one: httpx.Client, other: httpx.Client, rot: EmulatedRootOfTrust, fleet: Fleet
) -> None:
    """Challenge at one process, evidence at the other; the same evidence again is refused."""
    answer = _ok(one.post("/v1/device/attestation/challenge", json={"device_id": rot.device_id}))
    nonce = base64.urlsafe_b64decode(answer["nonce"] + "=" * (-len(answer["nonce"]) % 4))
    evidence = _evidence(rot, fleet, nonce)
    headers = {"Content-Type": "application/eat+cwt"}
    grant = _ok(other.post("/v1/device/attestation/evidence", content=evidence, headers=headers))
    assert grant["credential"]
    for client in (one, other):
        again = client.post("/v1/device/attestation/evidence", content=evidence, headers=headers)
        assert again.status_code == 403, again.text


def _old_events(database_url: str, tenant_id: str, count: int) -> None:
    """Events received long ago, which the retention job of either process must remove."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    storage = Storage.connect(database_url)
    try:
        with storage.engine.begin() as connection:
            problem_id = uuid.uuid4()
            connection.execute(
                insert(Problem),
                {
                    "id": problem_id,
                    "tenant_id": uuid.UUID(tenant_id),
                    "category": "AppCrash",
                    "component_key": "old",
                    "image_key": "old",
                    "outcome": "old",
                    "first_seen": long_ago,
                    "last_seen": long_ago,
                    "event_count": count,
                },
            )
            connection.execute(
                insert(ErrorEvent),
                [
                    {
                        "id": uuid.uuid4(),
                        "device_id": "0" * 128,
                        "tenant_id": uuid.UUID(tenant_id),
                        "problem_id": problem_id,
                        "category": "AppCrash",
                        "description": "old",
                        "event_count": 1,
                        "start_time": long_ago,
                        "end_time": long_ago,
                        "clock_skewed": False,
                        "received_at": long_ago,
                    }
                    for _ in range(count)
                ],
            )
    finally:
        storage.dispose()


def _events_left(database_url: str) -> int:
    storage = Storage.connect(database_url)
    try:
        with storage.read_session() as session:
            return int(session.scalar(select(func.count()).select_from(ErrorEvent)) or 0)
    finally:
        storage.dispose()


def test_two_processes_share_nonces_claims_and_retention(
    tmp_path: Path, database_url: str | None
) -> None:
    data_dir = tmp_path / "data"
    options = ("--retention-every", "1")
    with ExitStack() as stack:
        first = stack.enter_context(
            running_service(data_dir, database_url=database_url, options=options)
        )
        second = stack.enter_context(
            running_service(data_dir, database_url=database_url, options=options)
        )
        a, b = stack.enter_context(_client(first)), stack.enter_context(_client(second))

        now = dt.datetime.now(dt.UTC)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            fleet = Fleet.create(tmp_path / "fleet", now=now - dt.timedelta(days=1))
            rots = []
            for index in range(DEVICES):
                create_emulated_device(tmp_path / f"device-{index}", fleet, now=now)
                rots.append(EmulatedRootOfTrust.open(tmp_path / f"device-{index}"))
        ca_pem = fleet.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        _ok(a.post("/v1/manufacturer-cas", json={"name": "Fleet", "certificate": ca_pem}))
        _ok(b.post("/v1/os-releases", json=fleet.reference_values().model_dump(mode="json")))
        tenant = _ok(a.post("/v1/tenants", json={"name": "Two processes"}))["id"]
        claims = [
            {
                "claim_statement": _b64(
                    encode_claim_statement(
                        ClaimStatement(rot.device_id, uuid.UUID(tenant), int(now.timestamp())),
                        rot.sign,
                    )
                ),
                "idevid": load_idevid(tmp_path / f"device-{index}")
                .public_bytes(serialization.Encoding.PEM)
                .decode(),
            }
            for index, rot in enumerate(rots)
        ]
        _ok(b.post(f"/v1/tenants/{tenant}/devices/claim", json={"devices": claims}))

        # Nonces: issued by one process, used at the other, each good once; both ways at once.
        with ThreadPoolExecutor(max_workers=4) as pool:
            done = [
                pool.submit(_attest_across, *((a, b) if i % 2 else (b, a)), rot, fleet)
                for i, rot in enumerate(rots)
            ]
            for future in done:
                future.result()

        # Claims: the same batches through both processes at once; each device claimed once.
        batches = [
            [
                {"claim_statement": _b64(i.claim_statement), "idevid": i.idevid_pem.decode()}
                for i in (
                    make_claimable_identity(fleet.ca_key, fleet.ca_cert, uuid.UUID(tenant), now=now)
                    for _ in range(BATCH)
                )
            ]
            for _ in range(BATCHES)
        ]
        path = f"/v1/tenants/{tenant}/devices/claim"
        with ThreadPoolExecutor(max_workers=2 * BATCHES) as pool:
            raced = [
                [pool.submit(client.post, path, json={"devices": batch}) for client in (a, b)]
                for batch in batches
            ]
        for pair in raced:
            statuses = sorted(future.result().status_code for future in pair)
            assert statuses[0] == 201, [future.result().text for future in pair]
            loser = next(future.result() for future in pair if future.result().status_code != 201)
            assert loser.headers["content-type"].startswith("application/problem+json")
            problem = loser.json()
            assert (problem["status"], problem["code"]) in (
                (400, "already_claimed"),
                (400, "claim_refused"),
                (409, "claimed_concurrently"),
            ), problem
            if problem["code"] == "claim_refused":
                assert {e["code"] for e in problem["errors"]} == {"already_claimed"}
        counts = _ok(a.get(f"/v1/tenants/{tenant}/devices/counts"))
        assert counts["devices"] == DEVICES + BATCHES * BATCH
        assert counts["by_attestation_result"] == {"Passed": DEVICES, "none": BATCHES * BATCH}
        version = fleet.reference_values().version
        assert counts["by_os_version"] == {version: DEVICES, "none": BATCHES * BATCH}
        assert _ok(b.get(f"/v1/tenants/{tenant}/devices/counts")) == counts

        # Retention: both processes run it every second; old events go, neither fails.
        url = database_url or sqlite_url(data_dir)
        _old_events(url, tenant, 50)
        deadline = time.monotonic() + 30
        while _events_left(url) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _events_left(url) == 0
        time.sleep(2.5)  # a few more runs of both jobs, with nothing left to delete
    for service in (first, second):
        log = (data_dir.parent / f"service-{urlsplit(service.url).port}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "retention job failed" not in log, log[-3000:]


def test_bulk_claim_command_claims_folderless_devices(tmp_path: Path) -> None:
    """`sphere device bulk-claim`: identities made in parallel, claimed in batches, counted."""
    env = {**os.environ, "OPENSPHERE_CONFIG_DIR": str(tmp_path / "config")}
    env.pop("OPENSPHERE_PROFILE", None)

    def sphere(*args: str) -> str:
        result = subprocess.run(
            [SPHERE, *args], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"sphere {args}: {result.stderr}"
        return result.stdout

    with running_service(tmp_path / "data") as service:
        sphere("login", "--url", service.url, "--token-file", str(service.operator_token_file))
        tenant = json.loads(sphere("tenant", "create", "Bulk", "-o", "json"))
        sphere("product", "create", "--name", "Kettle")
        ca_dir = tmp_path / "ca"
        sphere("manufacturer", "ca", "create", "--out", str(ca_dir), "--name", "Bulk Mfg CA")
        sphere("manufacturer", "ca", "register", str(ca_dir / "manufacturer-ca.pem"), "--name", "M")
        out = sphere(
            "device",
            "bulk-claim",
            "--ca",
            str(ca_dir),
            "--count",
            "25",
            "--batch",
            "10",
            "--workers",
            "2",
            "-g",
            "Kettle/Production",
        )
        assert "25 devices claimed" in out
        with _client(service) as client:
            counts = _ok(client.get(f"/v1/tenants/{tenant['id']}/devices/counts"))
        assert counts["devices"] == 25
        assert list(counts["by_device_group"].values()) == [25]
