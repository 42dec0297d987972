"""Bulk identities: each one a genuine device's claim, made in parallel, in bounded batches."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.factory import create_manufacturer_ca, verify_idevid
from opensphere.factory.bulk import generate_claimable_identities, make_claimable_identity
from opensphere.formats.claim import verify_claim_statement

NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
TENANT = uuid.UUID("0192f3a4-5b6c-7d8e-9f01-23456789abcd")


@pytest.fixture(scope="module")
def ca() -> CA:
    return create_manufacturer_ca("Bulk CA", now=NOW - dt.timedelta(days=1), validity_days=30)


def test_an_identity_is_a_genuine_device_asking_to_join(ca: CA) -> None:
    identity = make_claimable_identity(*ca, TENANT, now=NOW)
    statement = verify_claim_statement(
        identity.claim_statement, now=int(NOW.timestamp()), max_age=600
    )
    assert (statement.device_id, statement.tenant_id) == (identity.device_id, TENANT)
    idevid = x509.load_pem_x509_certificate(identity.idevid_pem)
    assert verify_idevid(idevid, [ca[1]], now=NOW) == identity.device_id


def test_identities_have_their_own_keys(ca: CA) -> None:
    ids = {make_claimable_identity(*ca, TENANT, now=NOW).device_id for _ in range(5)}
    assert len(ids) == 5


def test_batches_come_whole_then_the_rest(ca: CA) -> None:
    batches = list(generate_claimable_identities(*ca, TENANT, count=5, batch=2, workers=2))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    identities = [identity for batch in batches for identity in batch]
    assert len({identity.device_id for identity in identities}) == 5
    now = dt.datetime.now(dt.UTC)
    for identity in identities:
        verify_claim_statement(identity.claim_statement, now=int(now.timestamp()), max_age=600)
        idevid = x509.load_pem_x509_certificate(identity.idevid_pem)
        assert verify_idevid(idevid, [ca[1]], now=now) == identity.device_id


def test_nothing_to_make_and_bad_sizes(ca: CA) -> None:
    assert list(generate_claimable_identities(*ca, TENANT, count=0, batch=10, workers=1)) == []
    with pytest.raises(ValueError, match="batch"):
        list(generate_claimable_identities(*ca, TENANT, count=1, batch=0))
