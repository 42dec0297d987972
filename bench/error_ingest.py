"""Error-event ingest throughput: the real endpoint against a bare bulk insert of the same rows.

(a) events per second stored through `POST /v1/device/error-reports`, batches of 100, by a
    real `sphere server` (uvicorn) pinned to one core, the load generator pinned to the other;
(b) events per second of a bare SQLAlchemy Core executemany of equivalent rows (plus the
    problem row they reference), one commit per 100, into the same database, on one core.

Both for SQLite (in the server's data folder) and PostgreSQL (a throwaway server from
tests/support/pgserver.py; it is not pinned, so it shares the machine with both sides).
(a) and (b) run in alternating rounds (a, b, a, b, …) so that a change in the machine's
other load falls on both. Prints each round, the medians per engine and, as its last line,
the ratios of the medians a/b.
Run: .venv/bin/python bench/error_ingest.py  (BENCH_SECONDS per round, BENCH_ROUNDS)
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Table, insert

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.factory import create_manufacturer_ca, load_idevid, manufacture_device
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.formats.error_events import EventCategory, WireEvent, encode_batch
from opensphere.rot import EmulatedRootOfTrust
from opensphere.service.device_auth import CREDENTIAL_KEY_ID, DeviceCredentials
from opensphere.service.error_reports.models import ErrorEvent, Problem
from opensphere.service.keystore import FileKeyStore
from opensphere.service.storage.db import Storage, sqlite_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# Test support, not an installed package: found through the path set just above.
from support.pgserver import PostgresServer  # type: ignore[import-not-found]

SERVER_CORE = 0
CLIENT_CORE = 1
DURATION = float(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH = 100
CONNECTIONS = 2
SPHERE = str(Path(sys.executable).with_name("sphere"))
COMPONENT = uuid.uuid4()
IMAGE = uuid.uuid4()
EVENTS = cast(Table, ErrorEvent.__table__)
PROBLEMS = cast(Table, Problem.__table__)


def _events(now: int) -> list[WireEvent]:
    """A batch of new events of one problem: the steady state of a crashing fleet."""
    return [
        WireEvent(
            id=uuid.uuid4(),
            category=EventCategory.APP_CRASH,
            component_id=COMPONENT,
            image_id=IMAGE,
            signal_status=11,
            count=1,
            first_seen=now - 60,
            last_seen=now - 10,
        )
        for _ in range(BATCH)
    ]


@contextmanager
def _server(data_dir: Path, port: int, database_url: str | None) -> Iterator[str]:
    environment = dict(os.environ)
    if database_url is not None:
        environment["OPENSPHERE_DATABASE_URL"] = database_url
    command = ["taskset", "-c", str(SERVER_CORE), SPHERE, "server", "--data-dir", str(data_dir)]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the service did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=15)


def _claimed_device(url: str, token: str, folder: Path) -> tuple[str, uuid.UUID]:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = create_manufacturer_ca("Bench CA", now=now, validity_days=30)
    device_id = manufacture_device(folder, ca_key, ca_cert, now=now)
    rot = EmulatedRootOfTrust.open(folder)
    with Client(url, token) as client:
        client.register_manufacturer_ca(
            "Bench", ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        )
        tenant = client.create_tenant(f"Bench {uuid.uuid4().hex[:6]}")
        statement = ClaimStatement(device_id, tenant.id, int(now.timestamp()))
        claim = schemas.DeviceClaim(
            claim_statement=base64.urlsafe_b64encode(
                encode_claim_statement(statement, rot.sign)
            ).decode(),
            idevid=load_idevid(folder).public_bytes(serialization.Encoding.PEM).decode(),
        )
        client.claim_devices(tenant.id, [claim])
    return device_id, tenant.id


def _upload_loop(
    port: int, device_id: str, credential: str, stop: float, counts: list[int]
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Device {credential}", "Content-Type": "application/json"}
    stored = 0
    while time.perf_counter() < stop:
        now = int(time.time())
        body = encode_batch(device_id, _events(now), sent_at=now)
        connection.request("POST", "/v1/device/error-reports", body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise SystemExit(f"ingest failed: {answer.status} {data[:200]!r}")
        stored += len(json.loads(data)["stored"])
    counts.append(stored)


def ingest_per_second(port: int, device_id: str, credential: str) -> float:
    """(a): events stored per second over HTTP, after a one-second warm-up."""
    _upload_loop(port, device_id, credential, time.perf_counter() + 1.0, [])
    counts: list[int] = []
    started = time.perf_counter()
    stop = started + DURATION
    threads = [
        threading.Thread(target=_upload_loop, args=(port, device_id, credential, stop, counts))
        for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _row(event: WireEvent, *, device_id: str, tenant_id: uuid.UUID, problem_id: uuid.UUID) -> Any:
    """The row ingest would store for ``event`` (times placed without clock-skew checks)."""
    received = dt.datetime.now(dt.UTC)
    return {
        "device_id": device_id,
        "id": event.id,
        "tenant_id": tenant_id,
        "product_id": None,
        "device_group_id": None,
        "problem_id": problem_id,
        "category": event.category.value,
        "component_id": event.component_id,
        "image_id": event.image_id,
        "exit_status": event.exit_status,
        "signal_status": event.signal_status,
        "description": event.description()[:512],
        "event_count": event.count,
        "start_time": dt.datetime.fromtimestamp(event.first_seen, dt.UTC),
        "end_time": dt.datetime.fromtimestamp(event.last_seen, dt.UTC),
        "clock_skewed": False,
        "received_at": received,
    }


def bare_problem(storage: Storage, tenant_id: uuid.UUID) -> uuid.UUID:
    """The problem row the bare inserts reference."""
    now = dt.datetime.now(dt.UTC)
    problem_id = uuid.uuid4()
    with storage.engine.begin() as connection:
        connection.execute(
            insert(PROBLEMS),
            {
                "id": problem_id,
                "tenant_id": tenant_id,
                "category": EventCategory.APP_CRASH.value,
                "component_key": str(COMPONENT),
                "image_key": str(IMAGE),
                "outcome": "bare insert",  # not ingest's problem: that key is taken
                "first_seen": now,
                "last_seen": now,
                "event_count": 0,
            },
        )
    return problem_id


def bare_per_second(
    storage: Storage, device_id: str, tenant_id: uuid.UUID, problem_id: uuid.UUID
) -> float:
    """(b): the same rows by executemany, one transaction per batch, on this core."""
    stored = 0
    started = time.perf_counter()
    while time.perf_counter() - started < DURATION:
        rows = [
            _row(event, device_id=device_id, tenant_id=tenant_id, problem_id=problem_id)
            for event in _events(int(time.time()))
        ]
        with storage.engine.begin() as connection:
            connection.execute(insert(EVENTS), rows)
        stored += len(rows)
    return stored / (time.perf_counter() - started)


def measure(engine: str, data_dir: Path, database_url: str | None) -> tuple[float, float]:
    """(a) and (b) for one engine, the same database for both, in alternating rounds."""
    port = 18000 + os.getpid() % 10000
    os.sched_setaffinity(0, {CLIENT_CORE})
    with _server(data_dir, port, database_url) as url:
        token = (data_dir / "operator-token").read_text().strip()
        device_id, tenant_id = _claimed_device(url, token, data_dir.parent / "device")
        credential = DeviceCredentials.from_key(
            FileKeyStore(data_dir / "keys").load(CREDENTIAL_KEY_ID)
        ).issue(
            device_id=device_id,
            tenant_id=tenant_id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        storage = Storage.connect(database_url or sqlite_url(data_dir))
        try:
            problem_id = bare_problem(storage, tenant_id)
            ingest_rates: list[float] = []
            bare_rates: list[float] = []
            for round_number in range(1, ROUNDS + 1):
                os.sched_setaffinity(0, {CLIENT_CORE})
                ingest_rates.append(ingest_per_second(port, device_id, credential))
                os.sched_setaffinity(0, {SERVER_CORE})
                bare_rates.append(bare_per_second(storage, device_id, tenant_id, problem_id))
                print(
                    f"{engine:10} round {round_number}: ingest {ingest_rates[-1]:6.0f}, "
                    f"bare {bare_rates[-1]:6.0f} events per s"
                )
        finally:
            storage.dispose()
    ingest, bare = statistics.median(ingest_rates), statistics.median(bare_rates)
    print(f"{engine:10} (a) ingest over HTTP, server on one core: {ingest:8.0f} events per s")
    print(f"{engine:10} (b) bare executemany, one core:          {bare:8.0f} events per s")
    return ingest, bare


def main() -> None:
    warnings.simplefilter("ignore")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="opensphere-bench-") as folder:
        ingest, bare = measure("sqlite", Path(folder) / "sqlite" / "data", None)
        ratios.append(f"sqlite {ingest / bare:.2f}")
    postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="opensphere-bench-pg-")))
    try:
        database_url = postgres.start()
        with tempfile.TemporaryDirectory(prefix="opensphere-bench-") as folder:
            ingest, bare = measure("postgresql", Path(folder) / "data", database_url)
            ratios.append(f"postgresql {ingest / bare:.2f}")
    finally:
        postgres.stop()
        shutil.rmtree(postgres.base_dir, ignore_errors=True)
    print(f"ratio ingest/bare: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
