"""The one place where the service is wired together."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, Response

from opensphere.api.schemas import Problem
from opensphere.service import (
    attestation,
    audit,
    device_auth,
    devices,
    manufacturers,
    os_releases,
    products,
    tenants,
    tokens,
)
from opensphere.service.ca import routes as ca_routes
from opensphere.service.ca.authority import CertificateAuthority
from opensphere.service.clock import Clock, SystemClock
from opensphere.service.errors import ServiceError
from opensphere.service.keystore import KeyStore
from opensphere.service.problems import install_problem_handlers, service_error_response
from opensphere.service.storage.db import Storage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (400, "The request cannot be carried out as asked"),
        (401, "No valid API token"),
        (403, "Your role does not allow this"),
        (404, "No such object, or not in a tenant you may see"),
        (409, "Clashes with the current state"),
        (422, "The request is malformed"),
    )
}


class RequestIdMiddleware:
    """Every request gets an id (the caller's X-Request-ID if sane), echoed in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_RE.fullmatch(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


Endpoint = Callable[[Request], Awaitable[Response]]


class HotPathMiddleware:
    """Serves the device hot paths (attestation) straight from an exact-match table.

    FastAPI still declares these routes, so they are in the OpenAPI document, but a
    request for one skips the router's matching over every route and the dependency
    solver, which cost more than the handler's own work besides its crypto.
    """

    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response: Response = await endpoint(request)
        except ServiceError as exc:
            response = await service_error_response(request, exc)
        await response(scope, receive, send)


def create_app(*, storage: Storage, keys: KeyStore, clock: Clock | None = None) -> FastAPI:
    app = FastAPI(
        title="OpenSphere security service",
        version="1",
        description="Tenants, roles, audit, products, device groups, devices, attestation and "
        "certificates of an OpenSphere fleet.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.storage = storage
    app.state.clock = clock or SystemClock()
    app.state.ca = CertificateAuthority(storage=storage, keys=keys)
    app.state.references = attestation.ReferenceCache()
    app.state.nonce_sweeper = attestation.NonceSweeper()
    app.state.credential_key = keys.load_or_create(device_auth.CREDENTIAL_KEY_ID)
    app.state.credential_public_key = app.state.credential_key.public_key()
    install_problem_handlers(app)
    for module in (
        tenants,
        tokens,
        audit,
        products,
        manufacturers,
        devices,
        os_releases,
        ca_routes,
        attestation,
        device_auth,
    ):
        app.include_router(module.router, responses=PROBLEM_RESPONSES)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    app.add_middleware(
        HotPathMiddleware,
        routes={
            ("POST", "/v1/device/attestation/challenge"): attestation.challenge,
            ("POST", "/v1/device/attestation/evidence"): attestation.evidence,
        },
    )
    app.add_middleware(RequestIdMiddleware)
    return app
