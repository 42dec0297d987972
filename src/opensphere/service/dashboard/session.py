"""Signing in to the dashboard with an API token, checked on every request exactly as the API does.

Decision: the session cookie carries the user's API token and nothing else, and every page
re-checks it with the API's own `request_context` (parse, look up by id, compare the SHA-256
of the secret, refuse revoked or expired tokens). So the service keeps no session state
beyond the token hash it already stores, a revoked token signs its dashboard sessions out at
once, and roles are whatever they are now, not at sign-in. The cookie is HttpOnly (no script
reads it), SameSite=Strict (no other site's page sends it), Secure when the request came
over https, scoped to `/dashboard` (the API reads only the Authorization header, never this
cookie), and lives at most `SESSION_LIFETIME` and never past the token's expiry.

CSRF: every page is a GET that changes nothing; the only POSTs are sign-in and sign-out.
SameSite=Strict keeps the cookie off cross-site requests, and `same_origin` refuses a POST
whose Origin (or, without one, Referer) names another host, which also stops a forged
sign-in into someone else's account. So no CSRF token is needed.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

from fastapi import Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.orm import Session

from opensphere.service.context import RequestContext
from opensphere.service.deps import request_context
from opensphere.service.errors import AuthenticationError
from opensphere.service.storage.models import ApiToken

COOKIE = "opensphere_dashboard"
COOKIE_PATH = "/dashboard"
SESSION_LIFETIME = dt.timedelta(hours=8)
HOME = "/dashboard/"


def authenticate(request: Request, session: Session, token: str) -> RequestContext:
    """The caller of `token`, checked by the API's own code; raises `AuthenticationError`."""
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
    return request_context(request, session, credentials)


def signed_in(request: Request, session: Session) -> RequestContext:
    """The caller named by the session cookie; raises `AuthenticationError` without one."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise AuthenticationError("sign in with an API token", code="authentication_required")
    return authenticate(request, session, token)


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this service (Origin, else Referer, else assumed).

    Browsers send Origin with every cross-site POST, so its absence means a same-site form
    or a non-browser client, which the SameSite cookie already covers.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True
    host = request.headers.get("host")
    return host is not None and urllib.parse.urlsplit(source).netloc == host


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a dashboard path of this service, never another site."""
    if not raw:
        return HOME
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme or parts.netloc or "\\" in raw or not parts.path.startswith(COOKIE_PATH):
        return HOME
    return raw


def start_session(
    response: Response, request: Request, context: RequestContext, token: str
) -> None:
    """Set the session cookie to `token` (already checked into `context`) until it expires."""
    row = context.session.get(ApiToken, context.principal.token_id)
    assert row is not None
    lifetime = min(SESSION_LIFETIME, row.expires_at - context.now)
    response.set_cookie(
        COOKIE,
        token.strip(),
        max_age=max(int(lifetime.total_seconds()), 1),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
