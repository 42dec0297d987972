"""The permission check as a pure function: role ranks, tenant scope, operator."""

from __future__ import annotations

import uuid

import pytest

from opensphere.api.schemas import Role
from opensphere.service.auth.permissions import Principal, check_role, require_operator
from opensphere.service.errors import NotFoundError, PermissionDeniedError

TENANT = uuid.uuid4()
OTHER = uuid.uuid4()


def principal(*, operator: bool = False, scope: uuid.UUID | None = None) -> Principal:
    return Principal(
        user_id=uuid.uuid4(),
        user_name="u",
        is_operator=operator,
        token_id=uuid.uuid4(),
        token_tenant_id=scope,
    )


@pytest.mark.parametrize(
    ("held", "required", "allowed"),
    [
        (Role.READER, Role.READER, True),
        (Role.READER, Role.CONTRIBUTOR, False),
        (Role.CONTRIBUTOR, Role.CONTRIBUTOR, True),
        (Role.CONTRIBUTOR, Role.ADMINISTRATOR, False),
        (Role.ADMINISTRATOR, Role.ADMINISTRATOR, True),
        (Role.ADMINISTRATOR, Role.READER, True),
    ],
)
def test_role_ranks(held: Role, required: Role, allowed: bool) -> None:
    if allowed:
        check_role(principal(), TENANT, held, required)
    else:
        with pytest.raises(PermissionDeniedError, match=f"needs the {required.value} role"):
            check_role(principal(), TENANT, held, required)


def test_no_role_looks_like_no_tenant() -> None:
    with pytest.raises(NotFoundError) as caught:
        check_role(principal(), TENANT, None, Role.READER)
    assert caught.value.code == "tenant_not_found"


def test_operator_may_everything_unless_scoped_elsewhere() -> None:
    check_role(principal(operator=True), TENANT, None, Role.ADMINISTRATOR)
    with pytest.raises(NotFoundError):
        check_role(principal(operator=True, scope=OTHER), TENANT, None, Role.READER)


def test_scoped_token_is_refused_outside_its_tenant_even_with_a_role() -> None:
    with pytest.raises(NotFoundError):
        check_role(principal(scope=OTHER), TENANT, Role.ADMINISTRATOR, Role.READER)
    check_role(principal(scope=TENANT), TENANT, Role.READER, Role.READER)


def test_require_operator() -> None:
    require_operator(principal(operator=True))
    with pytest.raises(PermissionDeniedError):
        require_operator(principal())
    with pytest.raises(PermissionDeniedError):
        require_operator(principal(operator=True, scope=TENANT))
