"""The one place where the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from opensphere.api.schemas import Problem
from opensphere.service import (
    attestation,
    audit,
    capabilities,
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
from opensphere.service.error_reports import routes as error_report_routes
from opensphere.service.error_reports.retention import apply_retention
from opensphere.service.errors import ServiceError
from opensphere.service.keystore import KeyStore
from opensphere.service.problems import install_problem_handlers, service_error_response
from opensphere.service.storage.db import Storage
from opensphere.service.updates import deployments, feeds, images, serving, status, tuf_admin
from opensphere.service.updates.blobs import BlobStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
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
    """Serves the device hot paths (attestation, update checks) straight from a table.

    FastAPI still declares these routes, so they are in the OpenAPI document, but a
    request for one skips the router's matching over every route and the dependency
    solver, which cost more than the handler's own work besides its crypto. `routes`
    match the exact path; `prefixes` a path start (the handler parses the rest).
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: dict[tuple[str, str], Endpoint],
        prefixes: dict[tuple[str, str], Endpoint] | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.prefixes = prefixes or {}

    def _endpoint(self, scope: Scope) -> Endpoint | None:
        if scope["type"] != "http":
            return None
        method, path = scope["method"], scope["path"]
        endpoint = self.routes.get((method, path))
        if endpoint is not None:
            return endpoint
        for (prefix_method, prefix), handler in self.prefixes.items():
            if method == prefix_method and path.startswith(prefix):
                return handler
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoint(scope)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response: Response = await endpoint(request)
        except ServiceError as exc:
            response = await service_error_response(request, exc)
        await response(scope, receive, send)


def _retention_lifespan(
    every: dt.timedelta | None,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Runs the retention job every `every` (first after one interval) while the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def loop(interval: float) -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await run_in_threadpool(
                        apply_retention, app.state.storage, now=app.state.clock.now()
                    )
                except Exception:
                    log.exception("the retention job failed; it runs again in %s", every)

        task = None if every is None else asyncio.create_task(loop(every.total_seconds()))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    return lifespan


def create_app(
    *,
    storage: Storage,
    keys: KeyStore,
    blobs: BlobStore,
    clock: Clock | None = None,
    retention_every: dt.timedelta | None = None,
) -> FastAPI:
    app = FastAPI(
        lifespan=_retention_lifespan(retention_every),
        title="OpenSphere security service",
        version="1",
        description="Tenants, roles, audit, products, device groups, devices, attestation and "
        "certificates of an OpenSphere fleet.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.storage = storage
    app.state.keys = keys
    app.state.blobs = blobs
    app.state.tuf = serving.TufCache()
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
        images,
        deployments,
        status,
        serving,
        feeds,
        tuf_admin,
    ):
        app.include_router(module.router, responses=PROBLEM_RESPONSES)
    app.include_router(capabilities.router, responses=PROBLEM_RESPONSES)
    app.include_router(error_report_routes.router, responses=PROBLEM_RESPONSES)
    app.include_router(error_report_routes.device_router, responses=PROBLEM_RESPONSES)

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
        prefixes={("GET", serving.TUF_PREFIX): serving.serve_tuf},
    )
    app.add_middleware(RequestIdMiddleware)
    return app
