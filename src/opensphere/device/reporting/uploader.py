"""Uploading the device's error events and crash dumps, at boot and at least daily.

Batches go oldest first; the device forgets an event only once the service says it
holds it (or refused it for good), so a lost answer loses nothing and a retry
duplicates nothing. Needs the device credential from attestation.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from opensphere.client import ApiError, Client
from opensphere.device.flash import EVENTS_QUEUE
from opensphere.device.reporting.dumps import pending_dumps, set_dumps_allowed
from opensphere.device.reporting.queue import EventQueue
from opensphere.formats.error_events import encode_batch

log = logging.getLogger(__name__)
DEFAULT_BATCH = 100


@dataclass
class UploadResult:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    dumps: int = 0


def upload_events(
    queue: EventQueue,
    *,
    device_id: str,
    client: Client,
    credential: str,
    now: int,
    batch_size: int = DEFAULT_BATCH,
) -> UploadResult:
    """Send every pending event; stops at the first failure, to try again later."""
    result = UploadResult()
    while True:
        batch = queue.next_batch(batch_size)
        if not batch:
            return result
        answer = client.upload_error_events(credential, encode_batch(device_id, batch, sent_at=now))
        rejected = {batch[r.index].id for r in answer.rejected if 0 <= r.index < len(batch)}
        for refusal in answer.rejected:
            log.warning("the service refused event %s: %s", refusal.id, refusal.reason)
        queue.acknowledge([*answer.stored, *answer.duplicates, *rejected])
        result.batches += 1
        result.stored += len(answer.stored)
        result.duplicates += len(answer.duplicates)
        result.rejected += len(rejected)


def upload_dumps(device_folder: Path, *, client: Client, credential: str) -> int:
    """Send the crash dumps; if the group no longer collects them, drop them and stop."""
    sent = 0
    for path in pending_dumps(device_folder):
        data = path.read_bytes()
        try:
            meta = json.loads(data)
            ids = {k: _uuid(meta.get(k)) for k in ("event_id", "component_id", "image_id")}
        except ValueError:
            path.unlink(missing_ok=True)
            continue
        try:
            client.upload_crash_dump(credential, data, **ids)
        except ApiError as exc:
            if exc.code == "crash_dumps_not_allowed":
                set_dumps_allowed(device_folder, False)
                for leftover in pending_dumps(device_folder):
                    leftover.unlink(missing_ok=True)
                return sent
            if exc.status == 413 or exc.code == "empty_crash_dump":
                path.unlink(missing_ok=True)
                continue
            raise
        path.unlink(missing_ok=True)
        sent += 1
    return sent


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def report(
    device_folder: Path,
    *,
    device_id: str,
    client: Client,
    credential: str,
    now: int,
) -> UploadResult:
    """One reporting round: learn the crash-dump opt-in, send events, then dumps."""
    config = client.reporting_config(credential)
    set_dumps_allowed(device_folder, config.allow_crash_dumps)
    result = upload_events(
        EventQueue(device_folder / EVENTS_QUEUE),
        device_id=device_id,
        client=client,
        credential=credential,
        now=now,
        batch_size=min(DEFAULT_BATCH, config.max_batch_events),
    )
    result.dumps = upload_dumps(device_folder, client=client, credential=credential)
    return result
