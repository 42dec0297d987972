"""Device credentials: only the service issues them, nobody alters them, they expire."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.service.device_auth import CredentialError, DeviceCredentials

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
DEVICE = "ab" * 64
TENANT = uuid.UUID("01234567-89ab-7def-8123-456789abcdef")


@pytest.fixture
def credentials() -> DeviceCredentials:
    return DeviceCredentials.from_key(ec.generate_private_key(ec.SECP256R1()))


def _issued(credentials: DeviceCredentials) -> str:
    return credentials.issue(
        device_id=DEVICE, tenant_id=TENANT, expires_at=NOW + dt.timedelta(hours=1)
    )


def test_a_credential_carries_its_device_tenant_and_expiry(credentials: DeviceCredentials) -> None:
    claims = credentials.verify(_issued(credentials), now=NOW)
    assert (claims.device_id, claims.tenant_id) == (DEVICE, TENANT)
    assert claims.expires_at == NOW + dt.timedelta(hours=1)


def test_every_process_with_the_key_store_checks_the_others_credentials() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    credential = _issued(DeviceCredentials.from_key(key))
    assert DeviceCredentials.from_key(key).verify(credential, now=NOW).device_id == DEVICE


def test_a_credential_of_another_service_is_refused(credentials: DeviceCredentials) -> None:
    other = DeviceCredentials.from_key(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(CredentialError, match="not issued by this service"):
        credentials.verify(_issued(other), now=NOW)


def test_a_credential_moved_to_another_tenant_is_refused(credentials: DeviceCredentials) -> None:
    prefix, payload, tag = _issued(credentials).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tid"] = str(uuid.uuid4())
    moved = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(CredentialError, match="not issued by this service"):
        credentials.verify(f"{prefix}.{moved}.{tag}", now=NOW)


def test_an_expired_credential_is_refused(credentials: DeviceCredentials) -> None:
    with pytest.raises(CredentialError, match="expired"):
        credentials.verify(_issued(credentials), now=NOW + dt.timedelta(hours=1))


@pytest.mark.parametrize(
    "text", ["", "osd2", "osd2.a.b.c", "osd1.e30.AAAA", "osd2.e30.!!!!", "x" * 2000]
)
def test_malformed_credentials_are_refused(credentials: DeviceCredentials, text: str) -> None:
    with pytest.raises(CredentialError):
        credentials.verify(text, now=NOW)
