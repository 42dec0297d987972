"""Attestation: challenge, evidence, appraisal, certificate; each attack refused, nothing stored."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from device_helpers import (
    EmulatedDevice,
    challenge,
    claim,
    claim_item,
    fleet_security_versions,
    make_device,
    make_evidence,
    new_fleet,
    post_evidence,
    reference_measurements,
    register_manufacturer,
    register_release,
)
from helpers import assert_problem, create_tenant, member

from conftest import Api, FixedClock
from opensphere.device.emulator import INITIAL_OS_VERSION, Fleet
from opensphere.formats.evidence import Measurement
from opensphere.formats.signatures import raw_signature_from_der

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@dataclass
class World:
    """Two devices of the vendor's fleet, claimed into one tenant."""

    api: Api
    clock: FixedClock
    tenant_id: str
    devices: list[EmulatedDevice]
    vendor: Fleet

    def device_row(self, device: EmulatedDevice) -> dict[str, Any]:
        response = self.api.client.get(
            f"/v1/tenants/{self.tenant_id}/devices/{device.device_id}", headers=self.api.operator
        )
        return dict(response.json())

    def evidence_for(self, device: EmulatedDevice, **options: Any) -> bytes:
        nonce = challenge(self.api, device.device_id)
        return make_evidence(device, nonce, self.clock.now(), **options)


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def fleet(api: Api, clock: FixedClock, tmp_path: Path, vendor: Fleet) -> World:
    register_manufacturer(api, vendor.ca_cert)
    register_release(api, vendor)
    tenant = create_tenant(api)
    devices = [make_device(tmp_path / f"d{i}", vendor, clock.now()) for i in range(2)]
    response = claim(api, tenant["id"], [claim_item(d, tenant["id"], clock.now()) for d in devices])
    assert response.status_code == 201, response.text
    return World(api, clock, tenant["id"], devices, vendor)


@pytest.fixture
def refusals(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="opensphere.service.attestation"):
        yield caplog


def assert_refused(response: Any, logs: pytest.LogCaptureFixture, reason: str) -> None:
    problem = assert_problem(response, 403, "attestation_refused")
    assert reason not in problem["detail"]
    assert any(
        reason in record.getMessage() and problem["request_id"] in record.getMessage()
        for record in logs.records
    ), [r.getMessage() for r in logs.records]


def assert_untouched(fleet: World, device: EmulatedDevice) -> None:
    row = fleet.device_row(device)
    assert row["last_attestation_at"] is None
    assert row["certificate_expires_at"] is None


def test_passing_attestation_returns_a_24h_certificate_and_a_credential(fleet: World) -> None:
    device = fleet.devices[0]
    client_key = ec.generate_private_key(ec.SECP256R1())
    evidence = fleet.evidence_for(device, confirmation_key=client_key.public_key())
    response = post_evidence(fleet.api, evidence)
    assert response.status_code == 200, response.text
    grant = response.json()
    certificate = x509.load_pem_x509_certificate(grant["certificate"].encode())
    (cn,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == device.device_id
    assert certificate.public_key() == client_key.public_key()
    now = fleet.clock.now()
    assert certificate.not_valid_before_utc == now
    assert certificate.not_valid_after_utc == now + dt.timedelta(hours=24)
    tenant_ca, root = (x509.load_pem_x509_certificate(pem.encode()) for pem in grant["chain"])
    certificate.verify_directly_issued_by(tenant_ca)
    tenant_ca.verify_directly_issued_by(root)
    assert fleet.tenant_id in tenant_ca.subject.rfc4514_string()
    row = fleet.device_row(device)
    assert row["last_attestation_result"] == "Passed"
    assert row["last_attestation_at"] is not None
    assert row["os_version"] == INITIAL_OS_VERSION
    me = fleet.api.client.get(
        "/v1/device/me", headers={"Authorization": f"Device {grant['credential']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["device_id"] == device.device_id


def test_certificate_certifies_the_identity_key_without_cnf(fleet: World) -> None:
    device = fleet.devices[0]
    grant = post_evidence(fleet.api, fleet.evidence_for(device)).json()
    certificate = x509.load_pem_x509_certificate(grant["certificate"].encode())
    assert certificate.public_key() == device.rot.public_key()


def test_forged_evidence_signed_by_another_key_is_refused(
    fleet: World, refusals: pytest.LogCaptureFixture
) -> None:
    device = fleet.devices[0]
    other = ec.generate_private_key(ec.SECP256R1())

    def forge(data: bytes) -> bytes:
        return raw_signature_from_der(other.sign(data, ec.ECDSA(hashes.SHA256())))

    response = post_evidence(fleet.api, fleet.evidence_for(device, sign=forge))
    assert_refused(response, refusals, "invalid_evidence")
    assert_untouched(fleet, device)


def test_replayed_nonce_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    device = fleet.devices[0]
    nonce = challenge(fleet.api, device.device_id)
    first = make_evidence(device, nonce, fleet.clock.now())
    assert post_evidence(fleet.api, first).status_code == 200
    before = fleet.device_row(device)
    fleet.clock.advance(dt.timedelta(seconds=5))
    replay = make_evidence(device, nonce, fleet.clock.now())
    assert_refused(post_evidence(fleet.api, replay), refusals, "unknown_nonce")
    assert_refused(post_evidence(fleet.api, first), refusals, "unknown_nonce")
    assert fleet.device_row(device) == before


def test_expired_nonce_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    device = fleet.devices[0]
    nonce = challenge(fleet.api, device.device_id)
    fleet.clock.advance(dt.timedelta(seconds=61))
    response = post_evidence(fleet.api, make_evidence(device, nonce, fleet.clock.now()))
    assert_refused(response, refusals, "expired_nonce")
    assert_untouched(fleet, device)


def test_nonce_of_another_device_is_refused(
    fleet: World, refusals: pytest.LogCaptureFixture
) -> None:
    first, second = fleet.devices
    nonce = challenge(fleet.api, first.device_id)
    response = post_evidence(fleet.api, make_evidence(second, nonce, fleet.clock.now()))
    assert_refused(response, refusals, "nonce_of_another_device")
    assert_untouched(fleet, second)
    # Presented by another device, the nonce is still its own device's, once.
    evidence = make_evidence(first, nonce, fleet.clock.now())
    assert post_evidence(fleet.api, evidence).status_code == 200
    assert_refused(post_evidence(fleet.api, evidence), refusals, "unknown_nonce")


def test_tampered_measurement_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    device = fleet.devices[0]
    good = reference_measurements(fleet.vendor)
    tampered = (*good[:-1], Measurement("os", b"\x66" * 32))
    evidence = fleet.evidence_for(device, measurements=tampered, boot_register=b"\x00" * 32)
    assert_refused(post_evidence(fleet.api, evidence), refusals, "invalid_evidence")
    assert_untouched(fleet, device)


def test_unknown_os_measurement_is_refused_and_recorded(
    fleet: World, refusals: pytest.LogCaptureFixture
) -> None:
    device = fleet.devices[0]
    patched = (*reference_measurements(fleet.vendor)[:-1], Measurement("os", b"\x66" * 32))
    evidence = fleet.evidence_for(device, measurements=patched)
    assert_refused(post_evidence(fleet.api, evidence), refusals, "unknown_measurement")
    row = fleet.device_row(device)
    assert row["last_attestation_result"] == "Failed"
    assert row["last_attestation_code"] == "unknown_measurement"
    assert row["certificate_expires_at"] is None


def test_unknown_os_version_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    device = fleet.devices[0]
    evidence = fleet.evidence_for(device, os_version="99.99")
    assert_refused(post_evidence(fleet.api, evidence), refusals, "unknown_os_version")


def test_downgraded_security_version_is_refused(
    fleet: World, refusals: pytest.LogCaptureFixture
) -> None:
    device = fleet.devices[0]
    raised = fleet.api.client.put(
        "/v1/minimum-security-versions", json={"minimums": {"os": 4}}, headers=fleet.api.operator
    )
    assert raised.status_code == 200, raised.text
    evidence = fleet.evidence_for(device, security_versions=fleet_security_versions(3))
    assert_refused(post_evidence(fleet.api, evidence), refusals, "security_version_too_low")
    assert fleet.device_row(device)["certificate_expires_at"] is None
    upgraded = fleet.evidence_for(device, security_versions=fleet_security_versions(4))
    assert post_evidence(fleet.api, upgraded).status_code == 200


def test_unclaimed_device_is_refused(
    fleet: World, refusals: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    stranger = make_device(tmp_path / "stranger", fleet.vendor, fleet.clock.now())
    own = make_evidence(stranger, challenge(fleet.api, stranger.device_id), fleet.clock.now())
    assert_refused(post_evidence(fleet.api, own), refusals, "unclaimed_device")
    borrowed = challenge(fleet.api, fleet.devices[0].device_id)
    evidence = make_evidence(stranger, borrowed, fleet.clock.now())
    assert_refused(post_evidence(fleet.api, evidence), refusals, "nonce_of_another_device")


def test_device_of_another_tenant_gets_its_own_tenants_certificate(
    fleet: World, tmp_path: Path
) -> None:
    other = create_tenant(fleet.api)
    foreign = make_device(tmp_path / "foreign", fleet.vendor, fleet.clock.now())
    claim(fleet.api, other["id"], [claim_item(foreign, other["id"], fleet.clock.now())])
    grant = post_evidence(fleet.api, fleet.evidence_for(foreign)).json()
    tenant_ca = x509.load_pem_x509_certificate(grant["chain"][0].encode())
    assert other["id"] in tenant_ca.subject.rfc4514_string()
    assert fleet.tenant_id not in tenant_ca.subject.rfc4514_string()
    admin = member(fleet.api, fleet.tenant_id, "Administrator")
    seen = fleet.api.client.get(
        f"/v1/tenants/{fleet.tenant_id}/devices/{foreign.device_id}", headers=admin
    )
    assert_problem(seen, 404, "device_not_found")


def test_disabled_device_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    device = fleet.devices[0]
    nonce = challenge(fleet.api, device.device_id)
    url = f"/v1/tenants/{fleet.tenant_id}/devices/{device.device_id}"
    fleet.api.client.patch(url, json={"enabled": False}, headers=fleet.api.operator)
    response = post_evidence(fleet.api, make_evidence(device, nonce, fleet.clock.now()))
    assert_refused(response, refusals, "device_disabled")
    assert fleet.device_row(device)["certificate_expires_at"] is None
    again = make_evidence(device, challenge(fleet.api, device.device_id), fleet.clock.now())
    assert_refused(post_evidence(fleet.api, again), refusals, "device_disabled")


def test_challenge_tells_nothing_about_the_registry(fleet: World, tmp_path: Path) -> None:
    """Claimed, disabled, unclaimed: every device ID gets a nonce, the same way."""
    disabled = fleet.devices[1]
    url = f"/v1/tenants/{fleet.tenant_id}/devices/{disabled.device_id}"
    fleet.api.client.patch(url, json={"enabled": False}, headers=fleet.api.operator)
    stranger = make_device(tmp_path / "stranger", fleet.vendor, fleet.clock.now())
    answers = [
        fleet.api.client.post(
            "/v1/device/attestation/challenge", json={"device_id": device.device_id}
        )
        for device in (fleet.devices[0], disabled, stranger)
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert [sorted(answer.json()) for answer in answers] == [["expires_at", "nonce"]] * 3


def test_disabled_device_credential_is_refused(fleet: World) -> None:
    device = fleet.devices[0]
    grant = post_evidence(fleet.api, fleet.evidence_for(device)).json()
    url = f"/v1/tenants/{fleet.tenant_id}/devices/{device.device_id}"
    fleet.api.client.patch(url, json={"enabled": False}, headers=fleet.api.operator)
    me = fleet.api.client.get(
        "/v1/device/me", headers={"Authorization": f"Device {grant['credential']}"}
    )
    assert_problem(me, 403, "device_refused")


@pytest.mark.parametrize(
    "credential",
    ["", "osd2.e30.AAAA", "osd2.not.valid.at.all", "Bearer something", "x" * 2000],
)
def test_bad_device_credentials_are_refused(fleet: World, credential: str) -> None:
    me = fleet.api.client.get("/v1/device/me", headers={"Authorization": f"Device {credential}"})
    assert_problem(me, 403, "device_refused")


def test_expired_device_credential_is_refused(fleet: World) -> None:
    grant = post_evidence(fleet.api, fleet.evidence_for(fleet.devices[0])).json()
    fleet.clock.advance(dt.timedelta(hours=24, seconds=1))
    me = fleet.api.client.get(
        "/v1/device/me", headers={"Authorization": f"Device {grant['credential']}"}
    )
    assert_problem(me, 403, "device_refused")


def test_evidence_with_a_wrong_ueid_is_refused(
    fleet: World, refusals: pytest.LogCaptureFixture
) -> None:
    device = fleet.devices[0]
    evidence = fleet.evidence_for(device)
    tagged = cbor2.loads(evidence)
    payload = cbor2.loads(tagged.value[2])
    payload[256] = b"\x01" + b"\x00" * 32
    tagged.value[2] = cbor2.dumps(payload, canonical=True)
    response = post_evidence(fleet.api, cbor2.dumps(tagged, canonical=True))
    assert_refused(response, refusals, "ueid")
    assert_untouched(fleet, device)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\x00garbage",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""])),
        b"\x9f" * 5000,
    ],
    ids=["empty", "garbage", "array", "empty-sign1", "deep-nesting"],
)
def test_malformed_cbor_is_refused(
    fleet: World, refusals: pytest.LogCaptureFixture, body: bytes
) -> None:
    assert_refused(post_evidence(fleet.api, body), refusals, "invalid_evidence")


def test_oversized_evidence_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    assert_refused(post_evidence(fleet.api, b"\x00" * (64 * 1024)), refusals, "oversized_evidence")


def test_wrong_cose_algorithm_is_refused(fleet: World, refusals: pytest.LogCaptureFixture) -> None:
    device = fleet.devices[0]
    tagged = cbor2.loads(fleet.evidence_for(device))
    protected = cbor2.loads(tagged.value[0])
    protected[1] = -35
    tagged.value[0] = cbor2.dumps(protected, canonical=True)
    response = post_evidence(fleet.api, cbor2.dumps(tagged, canonical=True))
    assert_refused(response, refusals, "algorithm")
    assert_untouched(fleet, device)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'{"device_id": "ABC"}', b"[1]", b'{"device_id": 7}', b"x" * 5000],
)
def test_bad_challenge_requests_are_refused(fleet: World, body: bytes) -> None:
    response = fleet.api.client.post(
        "/v1/device/attestation/challenge",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "invalid_request")


def test_nonces_are_single_use_across_service_processes(fleet: World, tmp_path: Path) -> None:
    """A second app on the same database and key store (another process of the same service)
    accepts the nonce the first issued, and then the first sees it as used."""
    from fastapi.testclient import TestClient

    from opensphere.service.app import create_app

    app = fleet.api.client.app
    second = create_app(
        storage=app.state.storage,  # type: ignore[attr-defined]
        keys=app.state.keys,  # type: ignore[attr-defined]
        blobs=app.state.blobs,  # type: ignore[attr-defined]
        clock=fleet.clock,
    )
    device = fleet.devices[0]
    nonce = challenge(fleet.api, device.device_id)
    evidence = make_evidence(device, nonce, fleet.clock.now())
    with TestClient(second, raise_server_exceptions=False) as other:
        answered = other.post(
            "/v1/device/attestation/evidence",
            content=evidence,
            headers={"Content-Type": "application/eat+cwt"},
        )
        assert answered.status_code == 200, answered.text
    assert_problem(post_evidence(fleet.api, evidence), 403, "attestation_refused")
