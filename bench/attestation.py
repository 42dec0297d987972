"""Attestation throughput: the in-process cost floor against full attestations over HTTP.

(a) floor: verify one evidence and build and sign one device certificate, on one core,
    with the same functions the service calls;
(b) full attestations per second (challenge + evidence + storage) against a real
    `sphere server` (uvicorn, SQLite in a temp folder) pinned to one core, with the load
    generator (which also signs the devices' evidence) pinned to the other: 8 keep-alive
    connections, each request sent in one write, enough to keep the server busy (it prints
    the share of the round the server was busy).

The devices are emulated devices of one fleet, booted once by their real secure boot: their
evidence carries the key store and the three boot stages, the fuses of those stages, and a
`cnf` key, exactly as the device agent sends it; the fleet's reference values are registered.

The two are measured in alternating rounds (a, b, a, b, …: `BENCH_ROUNDS` rounds of
`BENCH_SECONDS` each), so that a change in the machine's speed (other jobs, a busy
hypervisor) falls on both; each round is printed, then the medians and, as the last line, the
ratio of the medians b/a. It also prints the CPU time each side spent per attestation (the
floor's process time; the server process's user + system time from /proc over the round).
Run: .venv/bin/python bench/attestation.py
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import re
import socket
import statistics
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
DURATION = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DEVICES = 32
CONNECTIONS = 8
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


class Floor:
    """(a): verify evidence + issue a certificate, with the functions the service calls."""

    def __init__(self, device: BenchDevice) -> None:
        self.now = dt.datetime.now(dt.UTC)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = IssuingCa.of(root_key, build_root_ca(root_key, now=self.now))
        key = ec.generate_private_key(ec.SECP256R1())
        plan = plan_rotation([], self.now)
        assert plan is not None
        self.issuer = IssuingCa.of(
            key,
            build_tenant_ca(key.public_key(), root=root, tenant_id=uuid.uuid4(), plan=plan),
        )
        self.samples = [device.evidence(os.urandom(32)) for _ in range(500)]

    def per_second(self) -> tuple[float, float]:
        """As many as fit in DURATION: the rate and the CPU seconds per operation."""
        done = 0
        started = time.perf_counter()
        cpu_started = time.process_time()
        while time.perf_counter() - started < DURATION:
            evidence = self.samples[done % len(self.samples)]
            claims = verify_device_evidence(evidence, now=int(time.time()))
            assert claims.confirmation_key is not None
            to_pem(
                issue_device_certificate(
                    claims.device_id, claims.confirmation_key, issuer=self.issuer, now=self.now
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


class _Connection:
    """A device's keep-alive HTTP/1.1 connection, lean enough not to hold the server back.

    Each request goes out in one write, as a device's HTTP stack sends a small request; an
    answer is read by its Content-Length. (http.client writes the headers and the body
    apart and spends more time per request than the server's own HTTP handling.)
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, path: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        match = re.search(rb"(?im)^content-length: *(\d+)\r?$", head)
        if match is None:
            raise SystemExit(f"no Content-Length in the answer: {head[:200]!r}")
        length = int(match.group(1))
        while len(self.buffer) < length:
            self._receive()
        answer, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(head.split(b" ", 2)[1]), answer

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise SystemExit("the service closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _attest_loop(port: int, devices: list[BenchDevice], stop: float, counts: list[int]) -> None:
    connection = _Connection(port)
    done = 0
    index = 0
    try:
        while time.perf_counter() < stop:
            device = devices[index % len(devices)]
            index += 1
            status, body = connection.post(
                "/v1/device/attestation/challenge",
                "application/json",
                json.dumps({"device_id": device.device_id}).encode(),
            )
            if status != 200:
                raise SystemExit(f"challenge failed: {status} {body[:200]!r}")
            nonce_text = json.loads(body)["nonce"]
            nonce = base64.urlsafe_b64decode(nonce_text + "=" * (-len(nonce_text) % 4))
            status, body = connection.post(
                "/v1/device/attestation/evidence", "application/eat+cwt", device.evidence(nonce)
            )
            if status != 200:
                raise SystemExit(f"evidence failed: {status} {body[:200]!r}")
            done += 1
    finally:
        connection.close()
    counts.append(done)


class Service:
    """(b): a real server on its own core, the fleet enrolled, loaded from the other core."""

    def __init__(self, folder: Path, fleet: Fleet, devices: list[BenchDevice]) -> None:
        data_dir = folder / "data"
        self.port = 18000 + os.getpid() % 10000
        self.devices = devices
        self.server = _start_server(data_dir, self.port)
        _enrol(
            f"http://127.0.0.1:{self.port}",
            (data_dir / "operator-token").read_text().strip(),
            fleet,
            devices,
        )
        _attest_loop(self.port, devices, time.perf_counter() + 1.0, [])  # warm-up

    def per_second(self) -> tuple[float, float]:
        """Attestations for DURATION: the rate and the server's CPU seconds per attestation."""
        counts: list[int] = []
        cpu_started = _cpu_seconds(self.server.pid)
        started = time.perf_counter()
        stop = started + DURATION
        threads = [
            threading.Thread(
                target=_attest_loop, args=(self.port, self.devices[i::CONNECTIONS], stop, counts)
            )
            for i in range(CONNECTIONS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(self.server.pid) - cpu_started
        return sum(counts) / elapsed, cpu / sum(counts)

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=15)


def main() -> None:
    warnings.simplefilter("ignore")
    floors: list[tuple[float, float]] = []
    services: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="opensphere-bench-") as folder:
        root = Path(folder)
        fleet = Fleet.create(root / "fleet", now=dt.datetime.now(dt.UTC))
        devices = [BenchDevice(root / f"device-{i}", fleet) for i in range(DEVICES)]
        floor = Floor(devices[0])
        os.sched_setaffinity(0, {CLIENT_CORE})
        service = Service(root, fleet, devices)
        try:
            for number in range(1, ROUNDS + 1):
                os.sched_setaffinity(0, {SERVER_CORE})
                floors.append(floor.per_second())
                os.sched_setaffinity(0, {CLIENT_CORE})
                services.append(service.per_second())
                print(
                    f"round {number}: floor {floors[-1][0]:5.0f} /s ({floors[-1][1] * 1e3:.2f} ms),"
                    f" service {services[-1][0]:5.0f} /s ({services[-1][1] * 1e3:.2f} ms)"
                )
        finally:
            service.stop()
    floor_rate = statistics.median(rate for rate, _ in floors)
    floor_cpu = statistics.median(cpu for _, cpu in floors)
    full = statistics.median(rate for rate, _ in services)
    full_cpu = statistics.median(cpu for _, cpu in services)
    print(f"(a) in-process floor, one core: {floor_rate:8.0f} verify+certificate per s (median)")
    print(f"(b) over HTTP, server on one core: {full:8.0f} attestations per s (median)")
    print(
        f"CPU time per attestation: floor {floor_cpu * 1e3:.2f} ms, service "
        f"{full_cpu * 1e3:.2f} ms (ratio {floor_cpu / full_cpu:.2f});"
        f" server busy {full * full_cpu:.0%} of the time"
    )
    print(f"ratio b/a = {full / floor_rate:.2f}")


if __name__ == "__main__":
    main()
