"""TPM devices against a real swtpm: genuine-TPM claiming, quote appraisal, and each attack.

One swtpm per module (manufactured once, with its own EK CA); each test power-cycles it,
so PCRs start empty, and uses a new host folder, so it is a new device (AK salt).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from device_helpers import AppTransport
from helpers import assert_problem, create_tenant, member

from conftest import Api, FixedClock
from opensphere.client import Client
from opensphere.device.tpm_host import TpmHost
from opensphere.formats.evidence import Measurement
from opensphere.formats.tpm_evidence import (
    TPM_EVIDENCE_CONTENT_TYPE,
    encode_tpm_evidence,
    verify_tpm_envelope,
)
from opensphere.rot.tpm import TpmError
from support.debian import ensure_packages
from support.swtpm import TPM_PACKAGES, ManufacturedTpm, Swtpm, manufacture

OS_VERSION = "26.07-tpm"
OS_DIGEST = hashlib.sha256(b"the OS image").digest()


@pytest.fixture(scope="module")
def manufactured(tmp_path_factory: pytest.TempPathFactory) -> ManufacturedTpm:
    ensure_packages(TPM_PACKAGES)
    return manufacture(tmp_path_factory.mktemp("tpm"))


@pytest.fixture(scope="module")
def swtpm(manufactured: ManufacturedTpm) -> Iterator[Swtpm]:
    with Swtpm(manufactured.state) as running:
        yield running


@dataclass
class World:
    api: Api
    clock: FixedClock
    tenant_id: str
    client: Client
    swtpm: Swtpm
    folder: Path
    boot_id: bytes = b"boot-1"

    def open_host(self, name: str = "host") -> TpmHost:
        return TpmHost(self.folder / name, tcti=self.swtpm.tcti, boot_id=lambda: self.boot_id)

    def nonce(self, device_id: str) -> bytes:
        response = self.api.client.post(
            "/v1/device/attestation/challenge", json={"device_id": device_id}
        )
        assert response.status_code == 200, response.text
        encoded = response.json()["nonce"]
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))

    def post(self, evidence: bytes) -> Any:
        return self.api.client.post(
            "/v1/device/attestation/evidence",
            content=evidence,
            headers={"Content-Type": TPM_EVIDENCE_CONTENT_TYPE},
        )


@pytest.fixture
def world(
    api: Api, clock: FixedClock, swtpm: Swtpm, manufactured: ManufacturedTpm, tmp_path: Path
) -> Iterator[World]:
    swtpm.power_cycle()
    response = api.client.post(
        "/v1/tpm-manufacturer-cas",
        json={"name": "swtpm-localca", "certificate": manufactured.ca_certificate.read_text()},
        headers=api.operator,
    )
    assert response.status_code == 201, response.text
    response = api.client.post(
        "/v1/os-releases",
        json={"version": OS_VERSION, "measurements": [{"stage": "os", "digest": OS_DIGEST.hex()}]},
        headers=api.operator,
    )
    assert response.status_code == 201, response.text
    tenant = create_tenant(api)
    token = member(api, tenant["id"], "Contributor")["Authorization"].split()[1]
    with Client("http://testserver", token, transport=AppTransport(api.client)) as client:
        yield World(api, clock, tenant["id"], client, swtpm, tmp_path)


@pytest.fixture
def host(world: World) -> Iterator[TpmHost]:
    """A claimed TPM host that measured its OS."""
    with world.open_host() as opened:
        opened.claim(world.client, world.tenant_id)
        opened.measure("os", OS_DIGEST)
        yield opened


@pytest.fixture
def refusals(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="opensphere.service.attestation"):
        yield caplog


def assert_refused(response: Any, logs: pytest.LogCaptureFixture, reason: str) -> None:
    problem = assert_problem(response, 403, "attestation_refused")
    assert any(
        reason in record.getMessage() and problem["request_id"] in record.getMessage()
        for record in logs.records
    ), [record.getMessage() for record in logs.records]


def resigned(host: TpmHost, evidence: bytes, **changes: Any) -> bytes:
    """The same evidence with some claims changed, signed again by the device's own TPM."""
    claims = dataclasses.replace(verify_tpm_envelope(evidence), **changes)
    return encode_tpm_evidence(claims, host.rot.sign)


def good_evidence(world: World, host: TpmHost) -> bytes:
    return host.evidence(world.nonce(host.device_id), os_version=OS_VERSION, confirmation_key=None)


# --- the good path ---------------------------------------------------------------------


def test_tpm_host_claims_attests_and_stores_a_24_hour_certificate(
    world: World, host: TpmHost
) -> None:
    grant = host.attest(world.client, os_version=OS_VERSION)
    certificate = x509.load_pem_x509_certificate((host.daa / "certificate.pem").read_bytes())
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc <= dt.timedelta(
        hours=24, minutes=5
    )
    assert grant.device_id == host.device_id
    assert (host.daa / "credential").read_text() == grant.credential
    row = world.api.client.get(
        f"/v1/tenants/{world.tenant_id}/devices/{host.device_id}", headers=world.api.operator
    ).json()
    assert row["last_attestation_result"] == "Passed"
    assert row["os_version"] == OS_VERSION


def test_identity_is_stable_across_restarts_and_reboot_is_accepted(
    world: World, host: TpmHost
) -> None:
    host.attest(world.client, os_version=OS_VERSION)
    device_id = host.device_id
    host.close()
    world.swtpm.power_cycle()
    world.boot_id = b"boot-2"
    with world.open_host() as rebooted:
        assert rebooted.device_id == device_id
        assert [event.stage for event in rebooted.rot.event_log()] == ["boot"]
        rebooted.measure("os", OS_DIGEST)
        rebooted.attest(world.client, os_version=OS_VERSION)
    host.rot = world.open_host().rot  # the fixture closes it again


def test_unknown_os_measurement_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    host.measure("app:thermostat", hashlib.sha256(b"customer app").digest())
    host.measure("os", hashlib.sha256(b"a tampered OS").digest())
    assert_refused(world.post(good_evidence(world, host)), refusals, "unknown_measurement")


# --- genuine TPMs ------------------------------------------------------------------------


def test_ek_certificate_from_an_untrusted_ca_is_refused(world: World, tmp_path: Path) -> None:
    other = manufacture(tmp_path / "other-vendor")
    with world.open_host() as opened:
        certificate_der, ek_public = opened.rot.endorsement()
        ak_public = opened.rot.attestation_key.public_area
    listed = world.api.client.get("/v1/tpm-manufacturer-cas", headers=world.api.operator).json()
    for ca in listed["items"]:
        world.api.client.delete(f"/v1/tpm-manufacturer-cas/{ca['id']}", headers=world.api.operator)
    world.api.client.post(
        "/v1/tpm-manufacturer-cas",
        json={"name": "other-vendor", "certificate": other.ca_certificate.read_text()},
        headers=world.api.operator,
    )
    body = {
        "ek_certificate": x509.load_der_x509_certificate(certificate_der)
        .public_bytes(Encoding.PEM)
        .decode(),
        "ek_public": base64.urlsafe_b64encode(ek_public).decode(),
        "ak_public": base64.urlsafe_b64encode(ak_public).decode(),
    }
    response = world.api.client.post(
        f"/v1/tenants/{world.tenant_id}/tpm-devices/activations",
        json=body,
        headers=member(world.api, world.tenant_id, "Contributor"),
    )
    assert_problem(response, 400, "not_genuine")


def test_attestation_key_not_in_the_certified_tpm_cannot_activate(world: World) -> None:
    with world.open_host("victim") as victim, world.open_host("impostor") as impostor:
        certificate_der, ek_public = victim.rot.endorsement()
        contributor = member(world.api, world.tenant_id, "Contributor")
        challenge = world.api.client.post(
            f"/v1/tenants/{world.tenant_id}/tpm-devices/activations",
            json={
                "ek_certificate": x509.load_der_x509_certificate(certificate_der)
                .public_bytes(Encoding.PEM)
                .decode(),
                "ek_public": base64.urlsafe_b64encode(ek_public).decode(),
                "ak_public": base64.urlsafe_b64encode(
                    impostor.rot.attestation_key.public_area
                ).decode(),
            },
            headers=contributor,
        )
        assert challenge.status_code == 201, challenge.text
        sealed = challenge.json()

        def unb64(text: str) -> bytes:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

        # The victim's TPM holds the EK but its AK has another name: activation fails.
        with pytest.raises(TpmError):
            victim.rot.activate_credential(
                unb64(sealed["credential_blob"]), unb64(sealed["encrypted_secret"])
            )
        response = world.api.client.post(
            f"/v1/tenants/{world.tenant_id}/tpm-devices/claim",
            json={
                "activation_id": sealed["activation_id"],
                "secret": base64.urlsafe_b64encode(bytes(32)).decode(),
            },
            headers=contributor,
        )
        assert_problem(response, 400, "activation_failed")
        assert_problem(world.post(good_evidence(world, impostor)), 403, "attestation_refused")


# --- attacks on quotes ---------------------------------------------------------------------


def test_quote_signed_by_a_key_not_bound_to_the_ek_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    evidence = good_evidence(world, host)
    nonce = verify_tpm_envelope(evidence).nonce
    host.rot.close()
    with world.open_host("unbound") as unbound:
        quote, signature = unbound.rot.quote(nonce)
    host.rot = world.open_host().rot
    forged = resigned(host, evidence, quote=quote, quote_signature=signature)
    assert_refused(world.post(forged), refusals, "invalid_evidence")


def test_replayed_quote_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    evidence = good_evidence(world, host)
    assert world.post(evidence).status_code == 200
    assert_refused(world.post(evidence), refusals, "unknown_nonce")
    fresh = world.nonce(host.device_id)
    assert_refused(world.post(resigned(host, evidence, nonce=fresh)), refusals, "quote_nonce")


def test_quote_over_another_pcr_selection_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    evidence = good_evidence(world, host)
    claims = verify_tpm_envelope(evidence)
    quote, signature = host.rot.quote(claims.nonce, selection="sha256:15,16")
    pcrs = {**claims.pcrs, 16: bytes(32)}
    forged = resigned(host, evidence, quote=quote, quote_signature=signature, pcrs=pcrs)
    assert_refused(world.post(forged), refusals, "quote_selection_mismatch")


def test_pcr_values_that_do_not_match_the_digest_are_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    evidence = good_evidence(world, host)
    log = verify_tpm_envelope(evidence).event_log
    claimed = hashlib.sha256(bytes(32) + log[0].digest).digest()  # as if only "boot" was measured
    forged = resigned(host, evidence, pcrs={15: claimed}, event_log=log[:1])
    assert_refused(world.post(forged), refusals, "pcr_values_mismatch")


def test_event_log_that_does_not_replay_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    host.measure("debug-shell", hashlib.sha256(b"something unmeasured").digest())
    evidence = good_evidence(world, host)
    hidden = verify_tpm_envelope(evidence).event_log[:-1]  # hide the last event
    assert_refused(
        world.post(resigned(host, evidence, event_log=hidden)), refusals, "event_log_mismatch"
    )
    forged_log = [*hidden, Measurement("os", OS_DIGEST)]
    assert_refused(
        world.post(resigned(host, good_evidence(world, host), event_log=forged_log)),
        refusals,
        "event_log_mismatch",
    )


def test_tpm_clock_rewound_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    older_nonce = world.nonce(host.device_id)
    newer_nonce = world.nonce(host.device_id)
    # Quoted first, over the newer nonce: a TPM clock behind the one the service sees first.
    rewound = host.evidence(newer_nonce, os_version=OS_VERSION, confirmation_key=None)
    time.sleep(0.05)
    later = host.evidence(older_nonce, os_version=OS_VERSION, confirmation_key=None)
    assert world.post(later).status_code == 200
    assert_refused(world.post(rewound), refusals, "tpm_clock_rewound")


def test_reset_counter_changed_without_a_reboot_is_refused(
    world: World, host: TpmHost, refusals: pytest.LogCaptureFixture
) -> None:
    host.attest(world.client, os_version=OS_VERSION)
    host.close()
    world.swtpm.power_cycle()  # the TPM is reset; the host (same boot ID) keeps running
    host.rot = world.open_host().rot
    host.measure("os", OS_DIGEST)
    assert_refused(world.post(good_evidence(world, host)), refusals, "tpm_reset_without_reboot")


@pytest.mark.parametrize(
    ("field", "mangle"),
    [
        ("quote", lambda data: data[:-7]),
        ("quote", lambda data: data + b"\0"),
        # TPMS_ATTEST: magic(4) type(2) qualifiedSigner TPM2B: claim a 0xffff-byte name
        ("quote", lambda data: data[:6] + b"\xff\xff" + data[8:]),
        ("quote_signature", lambda data: data[:-1]),
        ("quote_signature", lambda data: data[:4] + b"\xff\xff" + data[6:]),
        ("quote", lambda data: b"\0" * 4 + data[4:]),
    ],
    ids=["truncated", "trailing", "oversized-size", "truncated-sig", "oversized-sig", "magic"],
)
def test_malformed_tpm_structures_are_refused(
    world: World,
    host: TpmHost,
    refusals: pytest.LogCaptureFixture,
    field: str,
    mangle: Any,
) -> None:
    evidence = good_evidence(world, host)
    original = getattr(verify_tpm_envelope(evidence), field)
    forged = resigned(host, evidence, **{field: mangle(original)})
    assert_refused(world.post(forged), refusals, "invalid_evidence")
