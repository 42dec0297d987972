"""Bulk claiming with generated identities: batch limit, duplicates, bad items, and counts.

A batch is all or nothing: any refused item refuses the whole batch, and the answer lists
every refusal by index. Counts (`GET …/devices/counts`) come from tallies kept by triggers.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from device_helpers import claim, pem, register_manufacturer
from helpers import assert_problem, create_product, create_tenant

from conftest import Api, FixedClock
from opensphere.factory import create_manufacturer_ca
from opensphere.factory.bulk import ClaimableIdentity, make_claimable_identity

CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


@pytest.fixture(scope="module")
def ca() -> CA:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return create_manufacturer_ca("Bulk CA", now=now, validity_days=30)


def _identities(ca: CA, tenant_id: str, now: dt.datetime, count: int) -> list[ClaimableIdentity]:
    return [make_claimable_identity(*ca, uuid.UUID(tenant_id), now=now) for _ in range(count)]


def _item(identity: ClaimableIdentity) -> dict[str, str]:
    return {
        "claim_statement": base64.urlsafe_b64encode(identity.claim_statement).decode(),
        "idevid": identity.idevid_pem.decode(),
    }


def _counts(api: Api, tenant_id: str, **query: str) -> dict[str, Any]:
    response = api.client.get(
        f"/v1/tenants/{tenant_id}/devices/counts", params=query, headers=api.operator
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _production_group(api: Api, tenant_id: str) -> str:
    create_product(api, tenant_id, api.operator)
    groups = api.client.get(f"/v1/tenants/{tenant_id}/device-groups", headers=api.operator)
    return str(next(g["id"] for g in groups.json()["items"] if g["name"] == "Production"))


def test_batches_are_claimed_and_counted(api: Api, clock: FixedClock, ca: CA) -> None:
    register_manufacturer(api, ca[1])
    tenant = create_tenant(api)
    group = _production_group(api, tenant["id"])
    first = _identities(ca, tenant["id"], clock.now(), 150)
    second = _identities(ca, tenant["id"], clock.now(), 50)
    answered = claim(api, tenant["id"], [_item(i) for i in first], device_group_id=group)
    assert answered.status_code == 201, answered.text
    assert [d["device_id"] for d in answered.json()] == [i.device_id for i in first]
    assert claim(api, tenant["id"], [_item(i) for i in second]).status_code == 201
    counts = _counts(api, tenant["id"])
    assert counts["devices"] == counts["enabled"] == 200
    assert counts["by_device_group"] == {group: 150, "none": 50}
    assert counts["by_os_version"] == {"none": 200}
    assert counts["by_attestation_result"] == {"none": 200}
    assert _counts(api, tenant["id"], device_group_id=group)["devices"] == 150
    moved = api.client.patch(
        f"/v1/tenants/{tenant['id']}/devices/{second[0].device_id}",
        json={"device_group_id": group, "enabled": False},
        headers=api.operator,
    )
    assert moved.status_code == 200, moved.text
    counts = _counts(api, tenant["id"])
    assert (counts["devices"], counts["enabled"]) == (200, 199)
    assert counts["by_device_group"] == {group: 151, "none": 49}


def test_over_the_batch_limit_is_refused_whole(api: Api, clock: FixedClock, ca: CA) -> None:
    register_manufacturer(api, ca[1])
    tenant = create_tenant(api)
    item = _item(_identities(ca, tenant["id"], clock.now(), 1)[0])
    assert_problem(claim(api, tenant["id"], [item] * 1001), 422, "validation_failed")
    assert _counts(api, tenant["id"])["devices"] == 0


def test_a_device_twice_in_a_batch_refuses_the_batch(api: Api, clock: FixedClock, ca: CA) -> None:
    register_manufacturer(api, ca[1])
    tenant = create_tenant(api)
    a, b = (_item(i) for i in _identities(ca, tenant["id"], clock.now(), 2))
    problem = assert_problem(claim(api, tenant["id"], [a, b, a]), 400, "duplicate")
    assert [(e["index"], e["code"]) for e in problem["errors"]] == [(2, "duplicate")]
    assert _counts(api, tenant["id"])["devices"] == 0


def test_a_device_claimed_in_an_earlier_batch_refuses_the_batch(
    api: Api, clock: FixedClock, ca: CA
) -> None:
    register_manufacturer(api, ca[1])
    tenant = create_tenant(api)
    old, new = _identities(ca, tenant["id"], clock.now(), 2)
    assert claim(api, tenant["id"], [_item(old)]).status_code == 201
    problem = assert_problem(
        claim(api, tenant["id"], [_item(new), _item(old)]), 400, "already_claimed"
    )
    assert [(e["index"], e["device_id"]) for e in problem["errors"]] == [(1, old.device_id)]
    assert _counts(api, tenant["id"])["devices"] == 1


def test_bad_items_are_each_listed_and_nothing_is_claimed(
    api: Api, clock: FixedClock, ca: CA
) -> None:
    register_manufacturer(api, ca[1])
    tenant, other = create_tenant(api), create_tenant(api)
    good, forged, stale, foreign = _identities(ca, tenant["id"], clock.now(), 4)
    tampered = bytearray(forged.claim_statement)
    tampered[-1] ^= 1
    forged = dataclasses.replace(forged, claim_statement=bytes(tampered))
    stale = make_claimable_identity(
        *ca, uuid.UUID(tenant["id"]), now=clock.now() - dt.timedelta(hours=1)
    )
    foreign = make_claimable_identity(*ca, uuid.UUID(other["id"]), now=clock.now())
    unknown_ca = create_manufacturer_ca("Unknown", now=clock.now(), validity_days=3)
    stranger = make_claimable_identity(*unknown_ca, uuid.UUID(tenant["id"]), now=clock.now())
    items = [_item(i) for i in (good, forged, stale, foreign, stranger)]
    malformed = [*items, {"claim_statement": "not base64!", "idevid": pem(ca[1])}]
    assert_problem(claim(api, tenant["id"], malformed), 422, "validation_failed")
    problem = assert_problem(claim(api, tenant["id"], items), 400, "claim_refused")
    assert [(e["index"], e["code"]) for e in problem["errors"]] == [
        (1, "claim_signature_invalid"),
        (2, "stale_claim_statement"),
        (3, "claim_for_another_tenant"),
        (4, "not_genuine"),
    ]
    assert _counts(api, tenant["id"])["devices"] == 0
    assert claim(api, tenant["id"], [_item(good)]).status_code == 201


def test_counts_of_an_unknown_group_are_not_found(api: Api) -> None:
    tenant = create_tenant(api)
    response = api.client.get(
        f"/v1/tenants/{tenant['id']}/devices/counts",
        params={"device_group_id": str(uuid.uuid4())},
        headers=api.operator,
    )
    assert_problem(response, 404, "device_group_not_found")
