"""Attestation throughput: the in-process cost floor against full attestations over HTTP.

(a) floor: verify one evidence and build and sign one device certificate, on one core,
    with the same functions the service calls;
(b) full attestations per second (challenge + evidence + storage) against a real
    `sphere server` (uvicorn, SQLite in a temp folder) pinned to one core, with the load
    generator (which also signs the devices' evidence) pinned to the other.

The devices are emulated devices of one fleet, booted once by their real secure boot: their
evidence carries the key store and the three boot stages, the fuses of those stages, and a
`cnf` key, exactly as the device agent sends it; the fleet's reference values are registered.

Prints both and, as its last line, the ratio b/a. On a machine shared with other jobs the two
rates are taken at different moments under different load, so it also prints the CPU time each
side spent per attestation (the floor's process time; the server process's user + system time
from /proc over the same window), whose ratio the other jobs barely move.
Run: .venv/bin/python bench/attestation.py
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.client import Client
from opensphere.device.agent import boot_evidence
from opensphere.device.boot import BootResult, boot_device
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.flash import DeviceFlash
from opensphere.factory import load_idevid
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.rot import EmulatedRootOfTrust
from opensphere.service.appraisal import verify_device_evidence
from opensphere.service.ca.core import (
    IssuingCa,
    build_root_ca,
    build_tenant_ca,
    issue_device_certificate,
    plan_rotation,
    to_pem,
)

SERVER_CORE = 0
CLIENT_CORE = 1
DURATION = float(os.environ.get("BENCH_SECONDS", "8"))
DEVICES = 32
CONNECTIONS = 4
SPHERE = str(Path(sys.executable).with_name("sphere"))


class BenchDevice:
    """An emulated device of the fleet, booted once; it signs evidence about that boot."""

    def __init__(self, folder: Path, fleet: Fleet) -> None:
        now = dt.datetime.now(dt.UTC)
        create_emulated_device(folder, fleet, now=now)
        self.folder = folder
        self.rot = EmulatedRootOfTrust.open(folder)
        self.device_id = self.rot.device_id
        self.boot: BootResult = boot_device(DeviceFlash(folder), self.rot, now=int(now.timestamp()))
        self.client_key = ec.generate_private_key(ec.SECP256R1()).public_key()

    def evidence(self, nonce: bytes) -> bytes:
        return boot_evidence(
            self.rot,
            self.boot,
            nonce=nonce,
            issued_at=int(time.time()),
            confirmation_key=self.client_key,
        )


def floor_per_second(device: BenchDevice) -> tuple[float, float]:
    """(a): verify evidence + issue a certificate, as many times as fit in DURATION / 2.

    Returns the rate and the CPU seconds per operation.
    """
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = IssuingCa.of(root_key, build_root_ca(root_key, now=now))
    key = ec.generate_private_key(ec.SECP256R1())
    plan = plan_rotation([], now)
    assert plan is not None
    issuer = IssuingCa.of(
        key, build_tenant_ca(key.public_key(), root=root, tenant_id=uuid.uuid4(), plan=plan)
    )
    samples = [device.evidence(os.urandom(32)) for _ in range(500)]
    done = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    while time.perf_counter() - started < DURATION / 2:
        claims = verify_device_evidence(samples[done % len(samples)], now=int(time.time()))
        assert claims.confirmation_key is not None
        to_pem(
            issue_device_certificate(
                claims.device_id, claims.confirmation_key, issuer=issuer, now=now
            )
        )
        done += 1
    return done / (time.perf_counter() - started), (time.process_time() - cpu_started) / done


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(SERVER_CORE),
            SPHERE,
            "server",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the service did not start")
        time.sleep(0.1)


def _enrol(url: str, token: str, fleet: Fleet, devices: list[BenchDevice]) -> None:
    with Client(url, token) as client:
        client.register_manufacturer_ca(
            "Bench", fleet.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        )
        client.register_os_release(fleet.reference_values(description="bench fleet"))
        tenant = client.create_tenant(f"Bench {uuid.uuid4().hex[:6]}")
        claims = []
        for device in devices:
            statement = ClaimStatement(device.device_id, tenant.id, int(time.time()))
            claims.append(
                schemas.DeviceClaim(
                    claim_statement=base64.urlsafe_b64encode(
                        encode_claim_statement(statement, device.rot.sign)
                    ).decode(),
                    idevid=load_idevid(device.folder)
                    .public_bytes(serialization.Encoding.PEM)
                    .decode(),
                )
            )
        client.claim_devices(tenant.id, claims)


def _attest_loop(port: int, devices: list[BenchDevice], stop: float, counts: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    done = 0
    index = 0
    while time.perf_counter() < stop:
        device = devices[index % len(devices)]
        index += 1
        connection.request(
            "POST",
            "/v1/device/attestation/challenge",
            body=json.dumps({"device_id": device.device_id}),
            headers={"Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"challenge failed: {answer.status} {body[:200]!r}")
        nonce_text = json.loads(body)["nonce"]
        nonce = base64.urlsafe_b64decode(nonce_text + "=" * (-len(nonce_text) % 4))
        connection.request(
            "POST",
            "/v1/device/attestation/evidence",
            body=device.evidence(nonce),
            headers={"Content-Type": "application/eat+cwt"},
        )
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"evidence failed: {answer.status} {body[:200]!r}")
        done += 1
    counts.append(done)


def http_per_second(fleet: Fleet, devices: list[BenchDevice]) -> tuple[float, float]:
    """(b): full attestations per second against a real server on its own core.

    Returns the rate and the server's CPU seconds per attestation.
    """
    with tempfile.TemporaryDirectory(prefix="opensphere-bench-") as folder:
        data_dir = Path(folder) / "data"
        port = 18000 + os.getpid() % 10000
        server = _start_server(data_dir, port)
        try:
            url = f"http://127.0.0.1:{port}"
            _enrol(url, (data_dir / "operator-token").read_text().strip(), fleet, devices)
            warm = time.perf_counter() + 1.0
            _attest_loop(port, devices, warm, [])
            counts: list[int] = []
            cpu_started = _cpu_seconds(server.pid)
            started = time.perf_counter()
            stop = started + DURATION / 2
            threads = [
                threading.Thread(
                    target=_attest_loop, args=(port, devices[i::CONNECTIONS], stop, counts)
                )
                for i in range(CONNECTIONS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds(server.pid) - cpu_started
            return sum(counts) / elapsed, cpu / sum(counts)
        finally:
            server.terminate()
            server.wait(timeout=15)


def main() -> None:
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="opensphere-bench-fleet-") as folder:
        root = Path(folder)
        fleet = Fleet.create(root / "fleet", now=dt.datetime.now(dt.UTC))
        devices = [BenchDevice(root / f"device-{i}", fleet) for i in range(DEVICES)]
        os.sched_setaffinity(0, {SERVER_CORE})
        floor, floor_cpu = floor_per_second(devices[0])
        print(f"(a) in-process floor, one core: {floor:8.0f} verify+certificate per s")
        os.sched_setaffinity(0, {CLIENT_CORE})
        full, full_cpu = http_per_second(fleet, devices)
    print(f"(b) over HTTP, server on one core: {full:8.0f} attestations per s")
    print(
        f"CPU time per attestation: floor {floor_cpu * 1e3:.2f} ms, service "
        f"{full_cpu * 1e3:.2f} ms (ratio {floor_cpu / full_cpu:.2f})"
    )
    print(f"ratio b/a = {full / floor:.2f}")


if __name__ == "__main__":
    main()
