"""Tenant CA certificates: statuses, rotation over time, downloads, proof of possession, revoke."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from device_helpers import (
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
from helpers import assert_problem, create_tenant, member

from conftest import Api, FixedClock

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")
DAY = dt.timedelta(days=1)


def _cas(api: Api, tenant_id: str) -> list[dict[str, object]]:
    response = api.client.get(f"/v1/tenants/{tenant_id}/ca-certificates", headers=api.operator)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _statuses(api: Api, tenant_id: str) -> list[tuple[object, object]]:
    return [(ca["generation"], ca["status"]) for ca in _cas(api, tenant_id)]


def test_a_tenant_gets_a_two_year_ca_chained_to_the_service_root(api: Api) -> None:
    tenant = create_tenant(api)
    reader = member(api, tenant["id"], "Reader")
    listed = api.client.get(f"/v1/tenants/{tenant['id']}/ca-certificates", headers=reader).json()
    (ca,) = listed["items"]
    assert ca["status"] == "Active"
    not_before = dt.datetime.fromisoformat(ca["not_before"])
    assert dt.datetime.fromisoformat(ca["not_after"]) - not_before == dt.timedelta(days=730)
    base = f"/v1/tenants/{tenant['id']}/ca-certificates/{ca['id']}"
    pem = api.client.get(f"{base}/certificate", headers=reader)
    assert pem.headers["content-type"] == "application/x-pem-file"
    anchor = x509.load_pem_x509_certificate(pem.content)
    der = api.client.get(f"{base}/certificate", params={"format": "der"}, headers=reader)
    assert x509.load_der_x509_certificate(der.content) == anchor
    anchor.verify_directly_issued_by(anchor)
    chain = pkcs7.load_der_pkcs7_certificates(
        api.client.get(f"{base}/chain", headers=reader).content
    )
    (tenant_ca,) = [c for c in chain if c.subject != c.issuer]
    (root,) = [c for c in chain if c.subject == c.issuer]
    assert tenant_ca.subject == anchor.subject
    assert tenant_ca.public_key() == anchor.public_key()
    tenant_ca.verify_directly_issued_by(root)
    assert tenant["id"] in tenant_ca.subject.rfc4514_string()


def test_proof_of_possession_certificate(api: Api) -> None:
    tenant = create_tenant(api)
    (ca,) = _cas(api, tenant["id"])
    url = f"/v1/tenants/{tenant['id']}/ca-certificates/{ca['id']}/proof"
    reader = member(api, tenant["id"], "Reader")
    assert_problem(
        api.client.post(url, json={"verification_code": "ABC"}, headers=reader), 403, "forbidden"
    )
    proof = api.client.post(url, json={"verification_code": "5F3B9A0C"}, headers=api.operator)
    assert proof.status_code == 200, proof.text
    certificate = x509.load_der_x509_certificate(proof.content)
    (cn,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "5F3B9A0C"
    anchor = x509.load_pem_x509_certificate(
        api.client.get(
            f"/v1/tenants/{tenant['id']}/ca-certificates/{ca['id']}/certificate",
            headers=api.operator,
        ).content
    )
    certificate.verify_directly_issued_by(anchor)
    bad = api.client.post(url, json={"verification_code": "a b"}, headers=api.operator)
    assert_problem(bad, 422, "validation_failed")


def _renew_operator_token(api: Api) -> None:
    """The test outlives a token: swap in a fresh two-year one."""
    response = api.client.post(
        "/v1/tokens", json={"name": "long", "expires_in_days": 730}, headers=api.operator
    )
    api.operator_token = response.json()["token"]


def test_rotation_successor_then_activation_then_expiry(
    api: Api, clock: FixedClock, tmp_path: Path
) -> None:
    maker = new_fleet(tmp_path / "fleet")
    register_manufacturer(api, maker.ca_cert)
    tenant = create_tenant(api)
    _renew_operator_token(api)
    assert _statuses(api, tenant["id"]) == [(1, "Active")]
    clock.advance(730 * DAY - 90 * DAY)
    assert _statuses(api, tenant["id"]) == [(1, "Active"), (2, "Inactive")]
    _renew_operator_token(api)
    clock.advance(45 * DAY)
    assert _statuses(api, tenant["id"]) == [(1, "Inactive"), (2, "Active")]
    register_release(api, maker)
    device = make_device(tmp_path / "d", maker, clock.now())
    claim(api, tenant["id"], [claim_item(device, tenant["id"], clock.now())])
    nonce = challenge(api, device.device_id)
    grant = post_evidence(api, make_evidence(device, nonce, clock.now())).json()
    issuer = x509.load_pem_x509_certificate(grant["chain"][0].encode())
    (cn,) = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert str(cn.value).endswith("CA 2")
    clock.advance(45 * DAY + DAY)
    first = _cas(api, tenant["id"])[0]
    assert first["status"] == "Expired"
    expired = api.client.get(
        f"/v1/tenants/{tenant['id']}/ca-certificates/{first['id']}/certificate",
        headers=api.operator,
    )
    assert_problem(expired, 409, "ca_certificate_expired")


def test_revoking_the_active_ca_makes_a_new_one_active(api: Api) -> None:
    tenant = create_tenant(api)
    (ca,) = _cas(api, tenant["id"])
    url = f"/v1/tenants/{tenant['id']}/ca-certificates/{ca['id']}/revoke"
    contributor = member(api, tenant["id"], "Contributor")
    assert_problem(api.client.post(url, headers=contributor), 403, "forbidden")
    revoked = api.client.post(url, headers=api.operator)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "Revoked"
    assert _statuses(api, tenant["id"]) == [(1, "Revoked"), (2, "Active")]
    assert_problem(api.client.post(url, headers=api.operator), 409, "ca_certificate_not_live")


def test_other_tenants_cannot_see_a_tenants_cas(api: Api) -> None:
    tenant = create_tenant(api)
    other = create_tenant(api)
    (ca,) = _cas(api, tenant["id"])
    outsider = member(api, other["id"], "Administrator")
    response = api.client.get(
        f"/v1/tenants/{tenant['id']}/ca-certificates/{ca['id']}/certificate", headers=outsider
    )
    assert_problem(response, 404, "tenant_not_found")
    missing = api.client.get(
        f"/v1/tenants/{other['id']}/ca-certificates/{ca['id']}", headers=api.operator
    )
    assert_problem(missing, 404, "ca_certificate_not_found")
