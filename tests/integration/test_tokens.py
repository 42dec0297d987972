"""API tokens: shown once, stored hashed, expiry, revocation, scope."""

from __future__ import annotations

import datetime as dt
import hashlib

from helpers import assert_problem, create_tenant, member, token_for
from sqlalchemy import select

from conftest import Api, FixedClock
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import ApiToken


def test_secret_is_shown_once_and_only_its_hash_is_stored(api: Api, storage: Storage) -> None:
    created = api.client.post("/v1/tokens", json={"name": "ci"}, headers=api.operator).json()
    secret = created["token"]
    listed = api.client.get("/v1/tokens", headers=api.operator).json()["items"]
    assert all("token" not in t for t in listed)
    assert created["id"] in [t["id"] for t in listed]
    with storage.read_session() as session:
        stored = session.scalars(select(ApiToken)).all()
        blobs = b"".join(t.secret_hash for t in stored)
    assert secret.encode() not in blobs
    assert hashlib.sha256(secret.split("_", 2)[2].encode()).digest() in blobs
    assert api.client.get("/v1/me", headers=api.as_(secret)).status_code == 200


def test_expired_token_is_refused(api: Api, clock: FixedClock) -> None:
    tenant = create_tenant(api)
    api.client.put(
        f"/v1/tenants/{tenant['id']}/roles/dave@example.com",
        json={"role": "Reader"},
        headers=api.operator,
    )
    token = token_for(api, "dave@example.com", tenant["id"], days=1)
    assert api.client.get("/v1/me", headers=api.as_(token)).status_code == 200
    clock.advance(dt.timedelta(days=1, seconds=1))
    response = api.client.get("/v1/me", headers=api.as_(token))
    assert_problem(response, 401, "token_expired")
    assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_token_is_refused_at_once(api: Api) -> None:
    created = api.client.post("/v1/tokens", json={"name": "laptop"}, headers=api.operator).json()
    headers = api.as_(created["token"])
    assert api.client.get("/v1/me", headers=headers).status_code == 200
    revoked = api.client.post(f"/v1/tokens/{created['id']}/revoke", headers=headers)
    assert revoked.json()["status"] == "Revoked"
    assert_problem(api.client.get("/v1/me", headers=headers), 401, "token_revoked")


def test_missing_malformed_and_forged_tokens_are_refused(api: Api) -> None:
    assert_problem(api.client.get("/v1/me"), 401, "authentication_required")
    assert_problem(api.client.get("/v1/me", headers=api.as_("hello")), 401, "invalid_token")
    forged = api.operator_token[:-4] + "AAAA"
    assert_problem(api.client.get("/v1/me", headers=api.as_(forged)), 401, "invalid_token")
    basic = {"Authorization": "Basic b3BlcmF0b3I6eA=="}
    assert_problem(api.client.get("/v1/me", headers=basic), 401, "authentication_required")


def test_scoped_token_sees_only_its_tenant(api: Api) -> None:
    first = create_tenant(api, admin="erin@example.com")
    second = create_tenant(api)
    api.client.put(
        f"/v1/tenants/{second['id']}/roles/erin@example.com",
        json={"role": "Administrator"},
        headers=api.operator,
    )
    erin = api.as_(token_for(api, "erin@example.com", first["id"]))
    assert [t["id"] for t in api.client.get("/v1/tenants", headers=erin).json()["items"]] == [
        first["id"]
    ]
    assert_problem(
        api.client.get(f"/v1/tenants/{second['id']}", headers=erin), 404, "tenant_not_found"
    )
    escalate = api.client.post("/v1/tokens", json={"name": "wider"}, headers=erin).json()
    assert escalate["tenant_id"] == first["id"]
    other = api.client.post(
        "/v1/tokens", json={"name": "x", "tenant_id": second["id"]}, headers=erin
    )
    assert_problem(other, 403, "forbidden")


def test_administrator_issues_and_revokes_tokens_for_members_only(api: Api) -> None:
    tenant = create_tenant(api, admin="alice@example.com")
    other = create_tenant(api, admin="mallory@example.com")
    alice = api.as_(token_for(api, "alice@example.com", tenant["id"]))
    api.client.put(
        f"/v1/tenants/{tenant['id']}/roles/bob@example.com", json={"role": "Reader"}, headers=alice
    )
    issued = api.client.post(
        "/v1/tokens",
        json={"name": "bob", "user": "bob@example.com", "tenant_id": tenant["id"]},
        headers=alice,
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["tenant_id"] == tenant["id"]
    outsider = api.client.post(
        "/v1/tokens",
        json={"name": "m", "user": "mallory@example.com", "tenant_id": tenant["id"]},
        headers=alice,
    )
    assert_problem(outsider, 404, "role_not_found")
    bob = api.as_(issued.json()["token"])
    listed = api.client.get(f"/v1/tenants/{tenant['id']}/tokens", headers=alice).json()["items"]
    assert issued.json()["id"] in [t["id"] for t in listed]
    assert (
        api.client.post(f"/v1/tokens/{issued.json()['id']}/revoke", headers=alice).status_code
        == 200
    )
    assert_problem(api.client.get("/v1/me", headers=bob), 401, "token_revoked")
    mallory = api.as_(token_for(api, "mallory@example.com", other["id"]))
    alice_token_id = api.client.get("/v1/me", headers=alice).json()["token_id"]
    assert_problem(
        api.client.post(f"/v1/tokens/{alice_token_id}/revoke", headers=mallory),
        404,
        "token_not_found",
    )


def test_reader_cannot_issue_tokens_for_others(api: Api) -> None:
    tenant = create_tenant(api, admin="alice@example.com")
    reader = member(api, tenant["id"], "Reader")
    response = api.client.post(
        "/v1/tokens",
        json={"name": "x", "user": "alice@example.com", "tenant_id": tenant["id"]},
        headers=reader,
    )
    assert_problem(response, 403, "forbidden")


def test_token_expiry_bounds(api: Api) -> None:
    for days in (0, 731, -1):
        response = api.client.post(
            "/v1/tokens", json={"name": "x", "expires_in_days": days}, headers=api.operator
        )
        assert_problem(response, 422, "validation_failed")
