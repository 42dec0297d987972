"""The CA rules: rotation plan, statuses over a CA's life, certificate profiles."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opensphere.api.schemas import CaCertificateStatus
from opensphere.formats.device_id import device_id_from_public_key
from opensphere.service.ca.core import (
    ACTIVATION_DELAY,
    SUCCESSOR_LEAD,
    TENANT_CA_VALIDITY,
    CaRecord,
    IssuingCa,
    PlannedCa,
    active_ca,
    build_root_ca,
    build_tenant_anchor,
    build_tenant_ca,
    ca_status,
    issue_device_certificate,
    issue_proof_certificate,
    next_change,
    plan_rotation,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _record(plan: PlannedCa, revoked_at: dt.datetime | None = None) -> CaRecord:
    return CaRecord(plan.generation, plan.not_before, plan.not_after, plan.active_from, revoked_at)


def _live(cas: list[CaRecord], now: dt.datetime) -> list[CaRecord]:
    plan = plan_rotation(cas, now)
    return cas if plan is None else [*cas, _record(plan)]


def test_a_new_tenant_gets_a_two_year_ca_active_at_once() -> None:
    plan = plan_rotation([], T0)
    assert plan == PlannedCa(1, T0, T0 + TENANT_CA_VALIDITY, T0)


def test_rotation_timeline_over_two_generations() -> None:
    first = _record(plan_rotation([], T0))  # type: ignore[arg-type]
    cas = [first]
    assert plan_rotation(cas, T0 + TENANT_CA_VALIDITY - SUCCESSOR_LEAD - DAY) is None
    due = T0 + TENANT_CA_VALIDITY - SUCCESSOR_LEAD
    successor_plan = plan_rotation(cas, due)
    assert successor_plan is not None
    assert successor_plan.generation == 2
    assert successor_plan.active_from == due + ACTIVATION_DELAY
    cas = [first, _record(successor_plan)]
    assert plan_rotation(cas, due + DAY) is None
    during = due + DAY
    assert [ca_status(ca, cas, during) for ca in cas] == [
        CaCertificateStatus.ACTIVE,
        CaCertificateStatus.INACTIVE,
    ]
    after = due + ACTIVATION_DELAY
    assert active_ca(cas, after) is cas[1]
    assert [ca_status(ca, cas, after) for ca in cas] == [
        CaCertificateStatus.INACTIVE,
        CaCertificateStatus.ACTIVE,
    ]
    assert cas[0].trusted_at(after), "both are trusted during the rollover"
    expired = T0 + TENANT_CA_VALIDITY
    assert ca_status(cas[0], cas, expired) is CaCertificateStatus.EXPIRED
    assert next_change(cas, during) == due + ACTIVATION_DELAY


def test_revoking_the_active_ca_plans_a_replacement_active_at_once() -> None:
    first = _record(plan_rotation([], T0), revoked_at=T0 + DAY)  # type: ignore[arg-type]
    now = T0 + 2 * DAY
    assert ca_status(first, [first], now) is CaCertificateStatus.REVOKED
    plan = plan_rotation([first], now)
    assert plan == PlannedCa(2, now, now + TENANT_CA_VALIDITY, now)


def test_an_expired_tenant_gets_a_new_ca_at_once() -> None:
    first = _record(plan_rotation([], T0))  # type: ignore[arg-type]
    later = T0 + TENANT_CA_VALIDITY + DAY
    assert _live([first], later)[-1].active_from == later


@pytest.fixture(scope="module")
def tenant_ca() -> IssuingCa:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = IssuingCa.of(root_key, build_root_ca(root_key, now=T0))
    key = ec.generate_private_key(ec.SECP256R1())
    plan = plan_rotation([], T0)
    assert plan is not None
    chained = build_tenant_ca(key.public_key(), root=root, tenant_id=uuid.uuid4(), plan=plan)
    chained.verify_directly_issued_by(root.certificate)
    anchor = build_tenant_anchor(key, chained)
    anchor.verify_directly_issued_by(anchor)
    assert anchor.subject == chained.subject
    return IssuingCa.of(key, chained)


def test_device_certificate_profile(tenant_ca: IssuingCa) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    device_id = device_id_from_public_key(device_key.public_key())
    now = T0 + DAY
    certificate = issue_device_certificate(
        device_id, device_key.public_key(), issuer=tenant_ca, now=now
    )
    certificate.verify_directly_issued_by(tenant_ca.certificate)
    (cn,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == device_id
    assert len(device_id) == 128
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == dt.timedelta(
        hours=24
    )
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_device_certificate_never_outlives_its_ca(tenant_ca: IssuingCa) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    late = tenant_ca.certificate.not_valid_after_utc - dt.timedelta(hours=2)
    certificate = issue_device_certificate(
        device_id_from_public_key(key.public_key()), key.public_key(), issuer=tenant_ca, now=late
    )
    assert certificate.not_valid_after_utc == tenant_ca.certificate.not_valid_after_utc


def test_proof_certificate_names_the_verification_code(tenant_ca: IssuingCa) -> None:
    proof = issue_proof_certificate("ABC123", issuer=tenant_ca, now=T0 + DAY)
    proof.verify_directly_issued_by(tenant_ca.certificate)
    (cn,) = proof.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "ABC123"
