"""Registry at scale: the device list page, device counts and deployment creation at 1M devices.

For SQLite and for PostgreSQL, a registry of N devices (`--devices`, default 1,000,000) is
claimed through the real API, all into one device group: identities from
`opensphere.factory.bulk` (own key, IDevID, signed claim statement; made by two processes)
sent in batches of 1,000 to `POST …/devices/claim`, which verifies every one. Building takes
long, so the data folder and its state are kept in `--cache`; `--reuse` measures a registry
built before (PostgreSQL only with `--postgres-url`: a throwaway server starts afresh).

Then, against a real `sphere server` pinned to core 0 (this client on core 1), each request
`--repeat` times over one keep-alive connection:
- list: the tenant's first page (100), a deep page (continuation token from the middle of
  the registry) and the big group's first page;
- counts: `GET …/devices/counts` for the tenant and for the big group; `device-group show`;
  a deployment's update-state counts, after every device's report for it was inserted
  directly (see `report_statuses`);
- deploy: `POST …/deployments` of one app to the N-device group (each supersedes the last).

Goal: p95 < 50 ms for list and counts, < 100 ms for deployment creation. Prints a table and,
as its last line, the ratios p95/goal (below 1 meets the goal).
With `--direct` the device rows are inserted instead of claimed (the output says so): for
query figures at a size claiming cannot reach in the time at hand.
Run: .venv/bin/python bench/registry.py [--devices N] [--postgres-url URL] [--reuse] [--direct]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.device.packaging import package_image
from opensphere.factory import create_manufacturer_ca
from opensphere.factory.bulk import generate_claimable_identities
from opensphere.formats.image_package import ImageType
from opensphere.service.paging import encode_continuation
from opensphere.service.storage.db import Storage, sqlite_url
from opensphere.service.storage.models import Device, DeviceUpdateStatus
from opensphere.service.storage.types import new_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Test support and sibling benchmarks, not installed packages: found through the paths above.
from error_ingest import CLIENT_CORE, _server  # type: ignore[import-not-found]
from update_check import test_signer  # type: ignore[import-not-found]

from support.pgserver import PostgresServer  # type: ignore[import-not-found]

BATCH = 1000
_STATES = ("installed",) * 7 + ("downloading",) * 2 + ("failed",)
# RETURNING makes SQLAlchemy send multi-row INSERTs (as the service's claim does): a plain
# executemany is one statement per row, and each would run the tally trigger on its own.
_MANY_DEVICES = insert(Device).returning(Device.id)
_MANY_STATUSES = insert(DeviceUpdateStatus).returning(DeviceUpdateStatus.device_id)
GOALS_MS = {"list": 50.0, "counts": 50.0, "deploy": 100.0}


def _post(connection: http.client.HTTPConnection, path: str, token: str, body: Any) -> Any:
    connection.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    answer = connection.getresponse()
    data = answer.read()
    if answer.status not in (200, 201):
        raise SystemExit(f"POST {path} failed: {answer.status} {data[:300]!r}")
    return json.loads(data)


def build(url: str, token: str, devices: int, database_url: str, direct: bool) -> dict[str, str]:
    """A tenant whose 'Production' group holds `devices` devices claimed through the API.

    `direct` inserts the device rows instead, as claims would leave them, without making or
    verifying identities: for measuring queries at sizes claiming cannot reach in the time.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = create_manufacturer_ca("Registry bench CA", now=now, validity_days=365)
    with Client(url, token) as client:
        client.register_manufacturer_ca(
            f"Registry {uuid.uuid4().hex[:6]}",
            ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        )
        tenant = client.create_tenant(f"Registry {uuid.uuid4().hex[:6]}")
        client.create_product(tenant.id, schemas.ProductCreate(name="Thermostat"))
        group = next(g for g in client.device_groups(tenant.id) if g.name == "Production")
        image = package_image(
            image_type=ImageType.Applications,
            component_id=uuid.uuid4(),
            name="Bench app",
            body=os.urandom(20_000),
            signer=test_signer(),
            version="1.0.0",
            security_version=1,
            build_time=int(now.timestamp()),
        )
        uploaded, _ = client.upload_image(tenant.id, [image], len(image))
    started = time.monotonic()
    if direct:
        _insert_devices(database_url, tenant.id, group, ca_cert, devices)
    else:
        _claim_devices(url, token, tenant.id, group.id, (ca_key, ca_cert), devices)
    seconds = time.monotonic() - started
    how = "inserted directly" if direct else "claimed through the API"
    print(f"{how}: {devices:,} devices in {seconds:,.0f} s ({devices / seconds:,.0f}/s)")
    return {
        "tenant_id": str(tenant.id),
        "group_id": str(group.id),
        "image_id": str(uploaded.image_id),
        "devices": str(devices),
        "build_seconds": f"{seconds:.0f}",
        "how": how,
    }


def _claim_devices(
    url: str,
    token: str,
    tenant_id: uuid.UUID,
    group_id: uuid.UUID,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    devices: int,
) -> None:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=600)
    path = f"/v1/tenants/{tenant_id}/devices/claim"
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("claiming through the API", total=devices)
        for identities in generate_claimable_identities(
            *ca, tenant_id, count=devices, batch=BATCH, workers=2
        ):
            claims = [
                {
                    "claim_statement": base64.urlsafe_b64encode(item.claim_statement).decode(),
                    "idevid": item.idevid_pem.decode(),
                }
                for item in identities
            ]
            _post(connection, path, token, {"devices": claims, "device_group_id": str(group_id)})
            progress.update(task, advance=len(claims))


def _insert_devices(
    database_url: str,
    tenant_id: uuid.UUID,
    group: schemas.DeviceGroup,
    ca_cert: x509.Certificate,
    devices: int,
) -> None:
    now = dt.datetime.now(dt.UTC)
    issuer = hashlib.sha256(ca_cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    storage = Storage.connect(database_url)
    try:
        for start in range(0, devices, 20_000):
            rows = [
                {
                    "id": new_id(),
                    "device_id": os.urandom(64).hex(),
                    "tenant_id": tenant_id,
                    "product_id": group.product_id,
                    "device_group_id": group.id,
                    "enabled": True,
                    "manufacturer_ca_thumbprint": issuer,
                    "claimed_at": now,
                    "updated_at": now,
                }
                for _ in range(min(20_000, devices - start))
            ]
            with storage.engine.begin() as connection:
                connection.execute(_MANY_DEVICES, rows)
    finally:
        storage.dispose()


def report_statuses(url: str, token: str, database_url: str, state: dict[str, str]) -> None:
    """A deployment to the big group, and every device's last report for it.

    The reports are inserted straight into `device_update_status` (as a million devices'
    `POST /v1/device/update-status` would leave them: 70 % installed, 20 % downloading, 10 %
    failed): a million device credentials and requests would take longer than the rest.
    """
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    deployment = _post(
        connection,
        f"/v1/tenants/{state['tenant_id']}/device-groups/{state['group_id']}/deployments",
        token,
        {"image_ids": [state["image_id"]]},
    )
    tenant_id, deployment_id = uuid.UUID(state["tenant_id"]), uuid.UUID(deployment["id"])
    now = dt.datetime.now(dt.UTC)
    storage = Storage.connect(database_url)
    try:
        with storage.read_session() as session:
            device_ids = list(
                session.scalars(select(Device.device_id).where(Device.tenant_id == tenant_id))
            )
        for start in range(0, len(device_ids), 10_000):
            rows = [
                {
                    "device_id": device_id,
                    "tenant_id": tenant_id,
                    "deployment_id": deployment_id,
                    "state": _STATES[index % 10],
                    "reason": None,
                    "installed_images": [],
                    "os_version": None,
                    "sequence": 1,
                    "reported_at": now,
                }
                for index, device_id in enumerate(device_ids[start : start + 10_000], start)
            ]
            with storage.engine.begin() as db:
                db.execute(_MANY_STATUSES, rows)
    finally:
        storage.dispose()
    state["deployment_id"] = str(deployment_id)


def _middle_token(database_url: str, tenant_id: str, devices: int) -> str:
    """A continuation token half-way through the registry: a deep page without walking to it."""
    storage = Storage.connect(database_url)
    try:
        with storage.read_session() as session:
            middle = session.scalar(
                select(Device.id)
                .where(Device.tenant_id == uuid.UUID(tenant_id))
                .order_by(Device.id)
                .offset(devices // 2)
                .limit(1)
            )
    finally:
        storage.dispose()
    assert middle is not None
    return encode_continuation(middle)


def _timed(
    connection: http.client.HTTPConnection, method: str, path: str, token: str, body: Any, n: int
) -> list[float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payload = None if body is None else json.dumps(body)
    times = []
    for _ in range(n + 3):  # the first three warm caches and are not counted
        started = time.perf_counter()
        connection.request(method, path, body=payload, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        times.append((time.perf_counter() - started) * 1000)
        if answer.status not in (200, 201):
            raise SystemExit(f"{method} {path} failed: {answer.status} {data[:300]!r}")
    return times[3:]


def measure(
    url: str, token: str, state: dict[str, str], database_url: str, repeat: int
) -> list[tuple[str, str, float, float]]:
    """(kind, name, p50, p95) of every measurement against the running server."""
    tenant, group = state["tenant_id"], state["group_id"]
    deep = _middle_token(database_url, tenant, int(state["devices"]))
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    base = f"/v1/tenants/{tenant}"
    cases = [
        ("list", "first page of 100", "GET", f"{base}/devices", None, repeat),
        (
            "list",
            "deep page (token)",
            "GET",
            f"{base}/devices?continuation_token={deep}",
            None,
            repeat,
        ),
        (
            "list",
            "group's first page",
            "GET",
            f"{base}/devices?device_group_id={group}",
            None,
            repeat,
        ),
        ("counts", "tenant counts", "GET", f"{base}/devices/counts", None, repeat),
        (
            "counts",
            "group counts",
            "GET",
            f"{base}/devices/counts?device_group_id={group}",
            None,
            repeat,
        ),
        ("counts", "device-group show", "GET", f"{base}/device-groups/{group}", None, repeat),
        (
            "counts",
            "update-state counts",
            "GET",
            f"{base}/device-groups/{group}/deployments/{state['deployment_id']}",
            None,
            repeat,
        ),
        (
            "deploy",
            "create deployment",
            "POST",
            f"{base}/device-groups/{group}/deployments",
            {"image_ids": [state["image_id"]]},
            max(10, repeat // 5),
        ),
    ]
    results = []
    for kind, name, method, path, body, n in cases:
        times = _timed(connection, method, path, token, body, n)
        p95 = statistics.quantiles(times, n=20)[18]
        results.append((kind, name, statistics.median(times), p95))
    return results


def run_engine(
    engine: str, cache: Path, database_url: str | None, args: argparse.Namespace
) -> list[tuple[str, str, float, float]]:
    devices, reuse, repeat = args.devices, args.reuse, args.repeat
    folder = cache / f"{engine}-{devices}{'-direct' if args.direct else ''}"
    data_dir, state_file = folder / "data", folder / "state.json"
    if not reuse or not state_file.exists():
        if database_url is not None:
            name = make_url(database_url).database
            admin = make_url(database_url).set(database="postgres").render_as_string(False)
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.execute(f'CREATE DATABASE "{name}"')
        shutil.rmtree(folder, ignore_errors=True)
        data_dir.mkdir(parents=True)
        with _server(data_dir, 18500 + os.getpid() % 1000, database_url) as url:
            token = (data_dir / "operator-token").read_text().strip()
            state = build(url, token, devices, database_url or sqlite_url(data_dir), args.direct)
        state_file.write_text(json.dumps(state))
    state = json.loads(state_file.read_text())
    if "deployment_id" not in state:
        with _server(data_dir, 18500 + os.getpid() % 1000, database_url) as url:
            token = (data_dir / "operator-token").read_text().strip()
            report_statuses(url, token, database_url or sqlite_url(data_dir), state)
        state_file.write_text(json.dumps(state))
    print(
        f"{engine}: {state['devices']} devices {state.get('how', '')} in {state['build_seconds']} s"
    )
    os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        with _server(data_dir, 18500 + os.getpid() % 1000, database_url) as url:
            token = (data_dir / "operator-token").read_text().strip()
            return measure(url, token, state, database_url or sqlite_url(data_dir), repeat)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description="the registry benchmark (see the module docstring)"
    )
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200, help="requests per measurement")
    parser.add_argument("--postgres-url", help="a PostgreSQL server to use (else a throwaway)")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "opensphere-registry"
    )
    parser.add_argument("--reuse", action="store_true", help="measure the registry built before")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="insert the device rows instead of claiming them (labelled so in the output)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results: dict[str, list[tuple[str, str, float, float]]] = {}
    database = f"opensphere_registry_{args.devices}{'_direct' if args.direct else ''}"
    for engine in args.engines.split(","):
        if engine == "sqlite":
            results[engine] = run_engine(engine, args.cache, None, args)
        elif args.postgres_url:
            url = make_url(args.postgres_url).set(database=database).render_as_string(False)
            results[engine] = run_engine(engine, args.cache, url, args)
        else:
            server = PostgresServer(Path(tempfile.mkdtemp(prefix="opensphere-bench-pg-")))
            try:
                url = make_url(server.start()).set(database=database).render_as_string(False)
                args.reuse = False  # a throwaway server holds no registry from before
                results[engine] = run_engine(engine, args.cache, url, args)
            finally:
                server.stop()
    print(
        f"\n{'engine':11}{'devices':>10}  {'measurement':22}{'p50 ms':>9}{'p95 ms':>9}{'goal':>7}"
    )
    ratios = []
    for engine, rows in results.items():
        worst: dict[str, float] = {}
        for kind, name, p50, p95 in rows:
            goal = GOALS_MS[kind]
            mark = "ok" if p95 < goal else "MISSED"
            print(
                f"{engine:11}{args.devices:>10,}  {name:22}{p50:9.1f}{p95:9.1f}{goal:7.0f}  {mark}"
            )
            worst[kind] = max(worst.get(kind, 0.0), p95 / goal)
        ratios.append(f"{engine} " + " ".join(f"{k} {v:.2f}" for k, v in worst.items()))
    print(f"ratio worst p95/goal: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
