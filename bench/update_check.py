"""Update checks that find nothing new: the service against nginx serving the same metadata.

A device's regular update check is almost always a no-change check: it asks for
`timestamp.json` and learns that nothing was published. This measures, in one run:

(a) nginx (Debian's package; installed with apt-get if missing) serving the tenant's repository
    exported as plain files (`sphere tuf export`'s `export_static`), one worker process;
(b) a real `sphere server` (uvicorn with the service's fast lane, SQLite in a temporary folder)
    answering the same check at
    `/v1/device/tuf/{tenant}/metadata/timestamp.json`, with the device credential, so each
    check also verifies the credential and that the device is still enabled.

Both servers are pinned to core 0 and loaded one at a time, in alternating rounds (b, a, b,
a, …) so that a change in the machine's other load falls on both; the load generator (raw
keep-alive sockets, prebuilt requests, `If-None-Match` with the ETag from a first answer, so
both answer 304) is pinned to core 1. Prints each round, both medians and, as its last line,
the ratio of the medians b/a.

Run: .venv/bin/python bench/update_check.py (BENCH_SECONDS per round, BENCH_ROUNDS,
BENCH_CONNECTIONS to change).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
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

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.cli.tuf import export_repository
from opensphere.client import Client
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.packaging import package_image
from opensphere.device.policy import BOOT_STAGES
from opensphere.factory import load_idevid
from opensphere.formats.claim import ClaimStatement, encode_claim_statement
from opensphere.formats.evidence import (
    EvidenceClaims,
    ManufacturingState,
    Measurement,
    SecurityState,
    encode_evidence,
    replay_register,
)
from opensphere.formats.image_package import ImageType, KeySigner
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning

SERVER_CORE = 0
CLIENT_CORE = 1
DURATION = float(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
SPHERE = str(Path(sys.executable).with_name("sphere"))
NGINX_CONF = """worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    client_body_temp_path {folder}/tmp; proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp; uwsgi_temp_path {folder}/tmp; scgi_temp_path {folder}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /metadata/timestamp.json {{ add_header Cache-Control "max-age=60"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )
    if found is None:
        print("nginx is missing: installing Debian's package", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True, env=env)
        subprocess.run(["service", "nginx", "stop"], check=False, capture_output=True)
        found = "/usr/sbin/nginx"
    return found


def check_loop(port: int, request: bytes, seconds: float, connections: int) -> float:
    """No-change checks per second over `connections` keep-alive sockets, all answered 304."""
    counts = [0] * connections
    stop = time.monotonic() + seconds

    def run(index: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while time.monotonic() < stop:
                sock.sendall(request)
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise RuntimeError("the server closed the connection")
                    answer += chunk
                if not answer.startswith(b"HTTP/1.1 304"):
                    raise RuntimeError(f"expected 304, got {answer[:80]!r}")
                counts[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def check_request(port: int, path: str, etag: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nIf-None-Match: {etag}\r\n{extra}\r\n"
    ).encode()


def enroll(client: Client, folder: Path, base_url: str) -> tuple[uuid.UUID, str]:
    """A tenant with a deployment and one attested device; (tenant ID, device credential)."""
    now = dt.datetime.now(dt.UTC)
    fleet = Fleet.create(folder / "fleet", now=now - dt.timedelta(days=1))
    client.register_manufacturer_ca("Bench fleet", fleet_ca_pem(fleet))
    client.register_os_release(fleet.reference_values())
    tenant = client.create_tenant(f"Bench {uuid.uuid4().hex[:6]}")
    client.create_product(tenant.id, schemas.ProductCreate(name="Thermostat"))
    group = next(g for g in client.device_groups(tenant.id) if g.name == "Field Test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
        create_emulated_device(folder / "device", fleet, now=now)
        rot = EmulatedRootOfTrust.open(folder / "device")
    statement = ClaimStatement(
        device_id=rot.device_id, tenant_id=tenant.id, issued_at=int(now.timestamp())
    )
    idevid = load_idevid(folder / "device").public_bytes(serialization.Encoding.PEM).decode()
    client.claim_devices(
        tenant.id,
        [
            schemas.DeviceClaim(
                claim_statement=base64.urlsafe_b64encode(
                    encode_claim_statement(statement, rot.sign)
                ).decode(),
                idevid=idevid,
            )
        ],
        group.id,
    )
    image = package_image(
        image_type=ImageType.Applications,
        component_id=uuid.uuid4(),
        name="Bench app",
        body=os.urandom(200_000),
        signer=test_signer(),
        version="1.0.0",
        security_version=1,
        build_time=int(now.timestamp()),
    )
    uploaded, _ = client.upload_image(tenant.id, [image], len(image))
    client.create_deployment(
        tenant.id, group.id, schemas.DeploymentCreate(image_ids=[uploaded.image_id])
    )
    nonce_text = client.attestation_challenge(rot.device_id).nonce
    nonce = base64.urlsafe_b64decode(nonce_text + "=" * (-len(nonce_text) % 4))
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
        issued_at=int(now.timestamp()),
    )
    grant = client.submit_evidence(encode_evidence(claims, rot.sign))
    client.device_trust(grant.credential)  # creates the group's role on first ask
    return tenant.id, grant.credential


def fleet_ca_pem(fleet: Fleet) -> str:
    return fleet.ca_cert.public_bytes(serialization.Encoding.PEM).decode()


def test_signer() -> KeySigner:
    """The published SDK test key: uploads are test-signed, the service production-signs."""
    path = Path(__file__).resolve().parents[1] / "samples" / "keys" / "test-signing-key.pem"
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return KeySigner(key)


def main() -> None:
    os.sched_setaffinity(0, {CLIENT_CORE})
    with tempfile.TemporaryDirectory(prefix="opensphere-bench-") as temp:
        folder = Path(temp)
        folder.chmod(0o755)  # nginx's worker runs as another user and reads the export
        port = free_port()
        data_dir = folder / "data"
        log = (folder / "service.log").open("wb")
        service = subprocess.Popen(
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
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        nginx: subprocess.Popen[bytes] | None = None
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_for(f"{base_url}/healthz", service)
            token = (data_dir / "operator-token").read_text().strip()
            with Client(base_url, token) as client:
                tenant_id, credential = enroll(client, folder, base_url)
                written = export_repository(client, tenant_id, folder / "static")
            print(f"exported {len(written)} files for nginx")

            service_path = f"/v1/device/tuf/{tenant_id}/metadata/timestamp.json"
            auth = {"Authorization": f"Device {credential}"}
            etag = httpx.get(base_url + service_path, headers=auth).headers["etag"]
            service_request = check_request(
                port, service_path, etag, f"Authorization: Device {credential}\r\n"
            )
            check_loop(port, service_request, 1.0, CONNECTIONS)  # warm up

            nginx_port = free_port()
            (folder / "tmp").mkdir()
            conf = folder / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(folder=folder, port=nginx_port, root=folder / "static")
            )
            nginx = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    str(SERVER_CORE),
                    nginx_binary(),
                    "-c",
                    str(conf),
                    "-p",
                    str(folder),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            static_url = f"http://127.0.0.1:{nginx_port}/metadata/timestamp.json"
            wait_for(static_url, nginx)
            first = httpx.get(static_url)
            if first.status_code != 200:
                raise RuntimeError(f"nginx answered {first.status_code}: {first.text[:200]}")
            static_etag = first.headers["etag"]
            nginx_request = check_request(nginx_port, "/metadata/timestamp.json", static_etag)
            check_loop(nginx_port, nginx_request, 1.0, CONNECTIONS)
            service_rates: list[float] = []
            nginx_rates: list[float] = []
            for round_number in range(1, ROUNDS + 1):
                service_rates.append(check_loop(port, service_request, DURATION, CONNECTIONS))
                nginx_rates.append(check_loop(nginx_port, nginx_request, DURATION, CONNECTIONS))
                print(
                    f"round {round_number}: service {service_rates[-1]:,.0f} /s, "
                    f"nginx {nginx_rates[-1]:,.0f} /s"
                )
            service_rate = statistics.median(service_rates)
            nginx_rate = statistics.median(nginx_rates)
        finally:
            for process in (service, nginx):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=15)
            log.close()
    print(
        f"(a) nginx, static export, 1 worker on core {SERVER_CORE}: "
        f"{nginx_rate:,.0f} checks/s (median of {ROUNDS})"
    )
    print(
        f"(b) sphere server, device credential, core {SERVER_CORE}: "
        f"{service_rate:,.0f} checks/s (median of {ROUNDS})"
    )
    print(f"ratio b/a: {service_rate / nginx_rate:.2f}")


if __name__ == "__main__":
    main()
