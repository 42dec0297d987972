"""Simulated devices: made in bulk, each with its own clock; one shared client for all of them.

Each device is a real emulated device folder (its own root of trust, identity key, IDevID,
flash) made by `create_emulated_device`; they share only code and the `SimClient`.

Manufacturing cost: per device ~29 fsyncs (≈ 0.18 s on this machine's virtual disk, 90 % of
the time); with fsync skipped (see `powercut.DurableSteps`) ≈ 20 ms, mostly small-file
system calls and one P-256 key, IDevID and sealed state. `manufacture` spreads the devices
over worker processes, each making whole devices and signing their claim statements.

Time: the service's clock is real, each device's is simulated (`DeviceClock`, set by the
runner before each thing the device does). A certificate's expiry comes in the service's time;
`SimClient` moves it into the device's time (`issued now, valid 24 h` stays true for the
device), so a device attests again when *its* clock says the certificate is due.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import uuid
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from opensphere.api import schemas
from opensphere.client import DEFAULT_TIMEOUT, Client
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.factory import load_idevid
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.rot import EmulatedRootOfTrust
from opensphere.rot.software import EmulatedRootOfTrustWarning
from opensphere.sim.powercut import DurableSteps

CHUNK = 100


class DeviceClock:
    """A device's simulated time: moves forward only, when the runner says so."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def advance_to(self, moment: dt.datetime) -> None:
        self._now = max(self._now, moment)


class SimClient(Client):
    """The one client every simulated device shares; grants come back in the device's time."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(base_url, timeout=timeout)
        self._clocks: dict[str, DeviceClock] = {}
        self._attestations: dict[str, int] = {}
        self._lock = threading.Lock()

    def add_device(self, device_id: str, clock: DeviceClock) -> None:
        with self._lock:
            self._clocks[device_id] = clock
            self._attestations[device_id] = 0

    def attestations(self, device_id: str) -> int:
        with self._lock:
            return self._attestations.get(device_id, 0)

    def submit_evidence(
        self, evidence: bytes, content_type: str = "application/eat+cwt"
    ) -> schemas.AttestationGrant:
        grant = super().submit_evidence(evidence, content_type)
        with self._lock:
            clock = self._clocks.get(grant.device_id)
            if clock is None:
                return grant
            self._attestations[grant.device_id] += 1
        shift = clock.now() - dt.datetime.now(dt.UTC)
        return grant.model_copy(
            update={
                "certificate_expires_at": grant.certificate_expires_at + shift,
                "credential_expires_at": grant.credential_expires_at + shift,
            }
        )


@dataclass(frozen=True)
class MadeDevice:
    folder: Path
    device_id: str
    claim: schemas.DeviceClaim


def manufacture(
    fleet_folder: Path,
    folders: Sequence[Path],
    *,
    tenant_id: uuid.UUID,
    workers: int,
    skip_fsync: bool,
) -> Iterator[list[MadeDevice]]:
    """Make a device in each folder and sign its claim into the tenant, in worker processes.

    Yields the devices a chunk at a time, in order, so they can be claimed while their claim
    statements are fresh (the service accepts them for ten minutes).
    """
    chunks = [list(folders[i : i + CHUNK]) for i in range(0, len(folders), CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield _make(fleet_folder, chunk, tenant_id, skip_fsync)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_make, fleet_folder, c, tenant_id, skip_fsync) for c in chunks]
        for future in futures:
            yield future.result()


def _make(
    fleet_folder: Path, folders: list[Path], tenant_id: uuid.UUID, skip_fsync: bool
) -> list[MadeDevice]:
    fleet = Fleet.load(fleet_folder)
    now = dt.datetime.now(dt.UTC)
    made = []
    with DurableSteps(skip_fsync=skip_fsync), warnings.catch_warnings():
        warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
        for folder in folders:
            create_emulated_device(folder, fleet, now=now)
            rot = EmulatedRootOfTrust.open(folder)
            statement = ClaimStatement(rot.device_id, tenant_id, int(now.timestamp()))
            claim = schemas.DeviceClaim(
                claim_statement=base64.urlsafe_b64encode(
                    encode_claim_statement(statement, rot.sign)
                ).decode(),
                idevid=load_idevid(folder).public_bytes(serialization.Encoding.PEM).decode(),
            )
            made.append(MadeDevice(folder, rot.device_id, claim))
    return made
