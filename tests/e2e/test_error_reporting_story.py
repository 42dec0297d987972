"""Failure reporting end to end: a real service killed (SIGKILL) during batch uploads.

After each kill the service restarts on the same data; the device's retries must
leave every event stored exactly once.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from opensphere.api import schemas
from opensphere.client import Client, ClientError
from opensphere.device.reporting.queue import EventQueue, Occurrence
from opensphere.device.reporting.uploader import upload_events
from opensphere.factory import create_manufacturer_ca, load_idevid, manufacture_device
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.formats.error_events import EventCategory
from opensphere.rot import EmulatedRootOfTrust
from opensphere.service.device_auth import CREDENTIAL_KEY_ID, DeviceCredentials
from opensphere.service.keystore import FileKeyStore
from support.service import free_port, running_service

pytestmark = pytest.mark.xdist_group("e2e")

EVENTS = 600
KILLS = 3


def _claimed_device(url: str, token: str, folder: Path) -> tuple[str, uuid.UUID]:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = create_manufacturer_ca("Story CA", now=now, validity_days=30)
    device_id = manufacture_device(folder, ca_key, ca_cert, now=now)
    rot = EmulatedRootOfTrust.open(folder)
    with Client(url, token) as client:
        client.register_manufacturer_ca(
            "Story", ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        )
        tenant = client.create_tenant("Story Tenant")
        statement = ClaimStatement(device_id, tenant.id, int(now.timestamp()))
        client.claim_devices(
            tenant.id,
            [
                schemas.DeviceClaim(
                    claim_statement=base64.urlsafe_b64encode(
                        encode_claim_statement(statement, rot.sign)
                    ).decode(),
                    idevid=load_idevid(folder).public_bytes(serialization.Encoding.PEM).decode(),
                )
            ],
        )
    return device_id, tenant.id


def test_service_killed_during_uploads_stores_every_event_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "service"
    port = free_port()
    queue = EventQueue(tmp_path / "device" / "events" / "queue.json", capacity=EVENTS + 10)
    recorded = 0
    for i in range(EVENTS):
        queue.record(
            Occurrence(EventCategory.APP_CRASH, uuid.uuid4(), signal_status=i % 7 + 1),
            now=int(time.time()),
        )
        recorded += 1
    with running_service(data, port=port) as service:
        token = service.operator_token_file.read_text().strip()
        device_id, tenant_id = _claimed_device(service.url, token, tmp_path / "device")
    credential = DeviceCredentials.from_key(
        FileKeyStore(data / "keys").load(CREDENTIAL_KEY_ID)
    ).issue(
        device_id=device_id,
        tenant_id=tenant_id,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    rng = random.Random(7)
    kills = 0
    while kills < KILLS:
        with running_service(data, port=port) as service:

            def upload() -> None:
                try:
                    with Client(service.url, timeout=5) as client:
                        upload_events(
                            queue,
                            device_id=device_id,
                            client=client,
                            credential=credential,
                            now=int(time.time()),
                            batch_size=50,
                        )
                except (ClientError, OSError):
                    return  # the service died under it: the next round retries

            uploader = threading.Thread(target=upload)
            uploader.start()
            time.sleep(rng.uniform(0.05, 0.4))
            service.process.send_signal(signal.SIGKILL)
            service.process.wait()
            uploader.join(timeout=30)
            kills += 1
            if not queue.pending():
                break
    with running_service(data, port=port) as service, Client(service.url, timeout=30) as client:
        upload_events(
            queue, device_id=device_id, client=client, credential=credential, now=int(time.time())
        )
        assert queue.pending() == []
        token = service.operator_token_file.read_text().strip()
        with Client(service.url, token) as user:
            rows = list(user.error_report(tenant_id, device_id=device_id))
    assert kills >= 1
    assert len(rows) == EVENTS
    assert len({row.event_id for row in rows}) == EVENTS
    assert sum(row.event_count for row in rows) == recorded
