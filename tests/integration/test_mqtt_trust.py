"""Third-party cloud trust, proven: a real Mosquitto broker trusts one tenant's CA.

The broker (Debian's mosquitto, installed here if missing, on a free loopback port)
requires client certificates chaining to the tenant CA the service hands out for relying
parties, and takes the certificate's CN (the device ID) as the MQTT user name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from device_helpers import (
    EmulatedDevice,
    challenge,
    claim,
    claim_item,
    make_device,
    make_evidence,
    new_fleet,
    post_evidence,
    register_manufacturer,
    register_release,
)
from helpers import create_tenant

from conftest import Api, FixedClock

pytestmark = [
    pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning"),
    pytest.mark.parametrize("engine_name", ["sqlite"]),
    pytest.mark.slow,
]
CONNECT_TIMEOUT = 5.0


def _mosquitto() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if found is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "mosquitto"], check=True, capture_output=True
        )
        found = shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    assert found is not None, "mosquitto could not be installed"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_pem(path: Path, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    parts = []
    for item in items:
        if isinstance(item, x509.Certificate):
            parts.append(item.public_bytes(serialization.Encoding.PEM))
        else:
            parts.append(
                item.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    path.write_bytes(b"".join(parts))
    return path


def _broker_identity(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, so devices can check the broker."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test broker CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _write_pem(folder / "broker-ca.pem", ca),
        _write_pem(folder / "broker.pem", server),
        _write_pem(folder / "broker.key", key),
    )


@dataclass
class Broker:
    port: int
    ca_file: Path
    log: Path


@contextlib.contextmanager
def running_broker(folder: Path, tenant_anchor: bytes) -> Iterator[Broker]:
    broker_ca, certfile, keyfile = _broker_identity(folder)
    cafile = folder / "tenant-ca.pem"
    cafile.write_bytes(tenant_anchor)
    port = _free_port()
    log = folder / "mosquitto.log"
    config = folder / "mosquitto.conf"
    config.write_text(
        f"""user root
persistence false
log_dest file {log}
log_type all
listener {port} 127.0.0.1
cafile {cafile}
certfile {certfile}
keyfile {keyfile}
require_certificate true
use_identity_as_username true
allow_anonymous false
"""
    )
    process = subprocess.Popen(
        [_mosquitto(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
        yield Broker(port=port, ca_file=broker_ca, log=log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def publish(broker: Broker, certfile: Path, keyfile: Path, client_id: str) -> bool:
    """Connect with a client certificate and publish at QoS 1; True if the broker acknowledged."""
    connected = threading.Event()
    accepted: list[bool] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        accepted.append(not getattr(reason, "is_failure", True))
        connected.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_connect = on_connect
    client.tls_set(ca_certs=str(broker.ca_file), certfile=str(certfile), keyfile=str(keyfile))
    try:
        client.connect("127.0.0.1", broker.port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT) or not accepted[0]:
            return False
        message = client.publish("fleet/telemetry", b'{"temperature": 21.5}', qos=1)
        message.wait_for_publish(CONNECT_TIMEOUT)
        return message.is_published()
    except (OSError, RuntimeError, ValueError):
        return False
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class Attested:
    device: EmulatedDevice
    certfile: Path
    keyfile: Path


def attest(api: Api, clock: FixedClock, device: EmulatedDevice, folder: Path) -> Attested:
    key = ec.generate_private_key(ec.SECP256R1())
    nonce = challenge(api, device.device_id)
    evidence = make_evidence(device, nonce, clock.now(), confirmation_key=key.public_key())
    response = post_evidence(api, evidence)
    assert response.status_code == 200, response.text
    grant = response.json()
    folder.mkdir(parents=True, exist_ok=True)
    certfile = folder / "device.pem"
    certfile.write_text(grant["certificate"] + "".join(grant["chain"]))
    return Attested(device, certfile, _write_pem(folder / "device.key", key))


def _anchor(api: Api, tenant_id: str) -> bytes:
    cas = api.client.get(f"/v1/tenants/{tenant_id}/ca-certificates", headers=api.operator)
    ca_id = cas.json()["items"][0]["id"]
    return api.client.get(
        f"/v1/tenants/{tenant_id}/ca-certificates/{ca_id}/certificate", headers=api.operator
    ).content


def test_broker_trusts_fresh_devices_of_its_tenant_only(
    api: Api, clock: FixedClock, tmp_path: Path
) -> None:
    maker = new_fleet(tmp_path / "fleet")
    register_manufacturer(api, maker.ca_cert)
    register_release(api, maker)
    tenant = create_tenant(api)
    other = create_tenant(api)
    fresh, stale, foreign = (
        make_device(tmp_path / name, maker, clock.now() - dt.timedelta(days=3))
        for name in ("fresh", "stale", "foreign")
    )
    claim(api, tenant["id"], [claim_item(d, tenant["id"], clock.now()) for d in (fresh, stale)])
    claim(api, other["id"], [claim_item(foreign, other["id"], clock.now())])
    real_now = clock.now()
    clock.current = real_now - dt.timedelta(hours=25)
    expired = attest(api, clock, stale, tmp_path / "certs-stale")
    clock.current = real_now
    good = attest(api, clock, fresh, tmp_path / "certs-fresh")
    outsider = attest(api, clock, foreign, tmp_path / "certs-foreign")
    with running_broker(tmp_path, _anchor(api, tenant["id"])) as broker:
        assert publish(broker, good.certfile, good.keyfile, "fresh")
        assert f"u'{fresh.device_id}'" in broker.log.read_text()
        assert not publish(broker, expired.certfile, expired.keyfile, "expired")
        assert not publish(broker, outsider.certfile, outsider.keyfile, "foreign")
        api.client.patch(
            f"/v1/tenants/{tenant['id']}/devices/{stale.device_id}",
            json={"enabled": False},
            headers=api.operator,
        )
        evidence = make_evidence(stale, challenge(api, stale.device_id), clock.now())
        assert post_evidence(api, evidence).status_code == 403  # no next certificate
        assert not publish(broker, expired.certfile, expired.keyfile, "disabled")
