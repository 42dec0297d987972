"""FastAPI dependencies: the session, the caller, and the request context built from them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from opensphere.service.auth.permissions import Principal
from opensphere.service.auth.tokens import parse_token
from opensphere.service.context import RequestContext
from opensphere.service.errors import AuthenticationError
from opensphere.service.storage.models import ApiToken, User

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="osk_<id>_<secret>",
    description="An API token from 'sphere token create' (or the operator token).",
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def db_session(request: Request) -> Iterator[Session]:
    storage = request.app.state.storage
    session = storage.read_session() if request.method in _READ_METHODS else storage.write_session()
    try:
        yield session
    finally:
        session.close()


def request_context(
    request: Request,
    session: Annotated[Session, Depends(db_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> RequestContext:
    now = request.app.state.clock.now()
    if credentials is None:
        raise AuthenticationError(
            "sign in: send 'Authorization: Bearer <token>' (see 'sphere login')",
            code="authentication_required",
        )
    presented = parse_token(credentials.credentials)
    token = session.get(ApiToken, presented.token_id)
    if token is None or not presented.matches(token.secret_hash):
        raise AuthenticationError("the API token is not valid", code="invalid_token")
    if token.revoked_at is not None:
        raise AuthenticationError(
            "the API token was revoked; create a new one", code="token_revoked"
        )
    if token.expires_at <= now:
        raise AuthenticationError(
            f"the API token expired at {token.expires_at.isoformat()}; create a new one",
            code="token_expired",
        )
    user = session.get(User, token.user_id)
    assert user is not None
    context = RequestContext(
        session=session,
        principal=Principal(
            user_id=user.id,
            user_name=user.name,
            is_operator=user.is_operator,
            token_id=token.id,
            token_tenant_id=token.tenant_id,
        ),
        request_id=request.state.request_id,
        now=now,
        state=request.state,
    )
    request.state.context = context
    return context


Context = Annotated[RequestContext, Depends(request_context)]
# For handlers that authenticate later (after streaming a body): the header, no session yet.
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
