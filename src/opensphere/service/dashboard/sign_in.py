"""The sign-in and sign-out forms (see `session.py` for the cookie and the CSRF decision)."""

from __future__ import annotations

import urllib.parse

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from opensphere.service.bodies import read_body
from opensphere.service.dashboard.rendering import render
from opensphere.service.dashboard.session import (
    HOME,
    authenticate,
    end_session,
    safe_next,
    same_origin,
    signed_in,
    start_session,
)
from opensphere.service.errors import AuthenticationError

router = APIRouter(prefix="/dashboard", include_in_schema=False)

SIGN_IN_BODY_LIMIT = 4096


@router.get("/sign-in")
def sign_in_form(
    request: Request, next: str | None = None, signed_out: str | None = None
) -> Response:
    """The sign-in form; a caller already signed in goes straight on."""
    session = request.app.state.storage.read_session()
    try:
        signed_in(request, session)
        return RedirectResponse(safe_next(next), status_code=303)
    except AuthenticationError:
        pass
    finally:
        session.close()
    data = {"next": safe_next(next), "error": None, "signed_out": bool(signed_out)}
    return render(request, "sign_in.html", data)


def _check_sign_in(request: Request, token: str, target: str) -> Response:
    session = request.app.state.storage.read_session()
    try:
        context = authenticate(request, session, token)
        response = RedirectResponse(target, status_code=303)
        start_session(response, request, context, token)
        return response
    except AuthenticationError as exc:
        data = {"next": target, "error": exc.detail, "signed_out": False}
        return render(request, "sign_in.html", data, status=401)
    finally:
        session.close()


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the pasted API token as the API would and start a session with it."""
    if not same_origin(request):
        return _forbidden_origin(request)
    body = await read_body(request, SIGN_IN_BODY_LIMIT)
    form = urllib.parse.parse_qs((body or b"").decode("utf-8", "replace"))
    token = form.get("token", [""])[0]
    target = safe_next(form.get("next", [""])[0])
    if body is None or not token.strip():
        data = {"next": target, "error": "Paste an API token to sign in.", "signed_out": False}
        return render(request, "sign_in.html", data, status=400)
    return await run_in_threadpool(_check_sign_in, request, token, target)


@router.post("/sign-out")
def sign_out(request: Request) -> Response:
    if not same_origin(request):
        return _forbidden_origin(request)
    response = RedirectResponse("/dashboard/sign-in?signed_out=1", status_code=303)
    end_session(response, request)
    return response


def _forbidden_origin(request: Request) -> Response:
    data = {
        "next": HOME,
        "error": "This form was sent from another site; open the dashboard and try again.",
        "signed_out": False,
    }
    return render(request, "sign_in.html", data, status=403)
