"""The one place where the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
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
    tpm,
)
from opensphere.service.ca import routes as ca_routes
from opensphere.service.ca.authority import CertificateAuthority
from opensphere.service.clock import Clock, SystemClock
from opensphere.service.dashboard import install as install_dashboard
from opensphere.service.error_reports import routes as error_report_routes
from opensphere.service.error_reports.retention import apply_retention
from opensphere.service.errors import ServiceError
from opensphere.service.hot_statements import HotTransactions
from opensphere.service.keystore import KeyStore
from opensphere.service.nonces import Nonces
from opensphere.service.problems import (
    install_problem_handlers,
    service_error_response,
    unexpected_error_response,
)
from opensphere.service.request_ids import request_id_from
from opensphere.service.storage.db import Storage
from opensphere.service.updates import deployments, feeds, images, serving, status, tuf_admin
from opensphere.service.updates.blobs import BlobStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
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


def assign_request_id(scope: Scope) -> str:
    """The caller's X-Request-ID if sane, else a new one; kept in the scope's state."""
    request_id = request_id_from(scope["headers"])
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


class RequestIdMiddleware:
    """Every request gets an id (the caller's X-Request-ID if sane), echoed in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = assign_request_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


Endpoint = Callable[[Request], Awaitable[Response]]


class ServiceApp(FastAPI):
    """FastAPI with `front` endpoints that answer before its whole middleware stack.

    The device hot paths (update checks, attestation, error-event upload) are the fleet's
    most frequent requests; FastAPI's own layers around them (telemetry check, error,
    body-limit and request-id middlewares, the router's matching over every route, the
    dependency solver) cost more than their own work besides the crypto. A front endpoint is
    matched by method and exact path (`exact`) or path prefix (`prefixed`, the handler parses
    the rest), gets the request id here, and whatever it raises still becomes a problem
    document: a `ServiceError` its own, anything else a logged 500. FastAPI still declares
    these routes for the OpenAPI document.
    """

    def __init__(
        self,
        *,
        exact: dict[tuple[str, str], Endpoint],
        prefixed: dict[tuple[str, str], Endpoint],
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.exact = exact
        self.prefixed = prefixed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            endpoint = self.exact.get((method, path))
            if endpoint is None:
                for (front_method, prefix), candidate in self.prefixed.items():
                    if method == front_method and path.startswith(prefix):
                        endpoint = candidate
                        break
            if endpoint is not None:
                await self._answer(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _answer(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        request_id = assign_request_id(scope)
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except ServiceError as exc:
            response = await service_error_response(request, exc)
        except Exception as exc:
            response = await unexpected_error_response(request, exc)
        response.raw_headers.append((b"x-request-id", request_id.encode()))
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
            app.state.hot.close()

    return lifespan


def create_app(
    *,
    storage: Storage,
    keys: KeyStore,
    blobs: BlobStore,
    clock: Clock | None = None,
    retention_every: dt.timedelta | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    credential_key = keys.load_or_create(device_auth.CREDENTIAL_KEY_ID)
    credentials = device_auth.DeviceCredentials.from_key(credential_key)
    tuf = serving.TufServer(
        storage=storage,
        keys=keys,
        blobs=blobs,
        clock=clock,
        credentials=credentials,
    )
    app = ServiceApp(
        exact={
            ("POST", "/v1/device/attestation/challenge"): attestation.challenge,
            ("POST", "/v1/device/attestation/evidence"): attestation.evidence,
            ("POST", "/v1/device/error-reports"): error_report_routes.upload_error_events,
        },
        prefixed={("GET", serving.TUF_PREFIX): tuf.serve},
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
    app.state.tuf = tuf
    app.state.clock = clock
    app.state.ca = CertificateAuthority(storage=storage, keys=keys)
    app.state.references = attestation.ReferenceCache()
    app.state.hot = HotTransactions(storage.engine)
    app.state.attestation = attestation.AttestationService(
        storage=storage,
        hot=app.state.hot,
        authority=app.state.ca,
        clock=clock,
        nonces=Nonces.derive(credential_key),
        credentials=credentials,
        references=app.state.references,
    )
    app.state.credentials = credentials
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
        tpm,
    ):
        app.include_router(module.router, responses=PROBLEM_RESPONSES)
    app.include_router(capabilities.router, responses=PROBLEM_RESPONSES)
    app.include_router(error_report_routes.router, responses=PROBLEM_RESPONSES)
    app.include_router(error_report_routes.device_router, responses=PROBLEM_RESPONSES)
    install_dashboard(app)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    app.add_middleware(RequestIdMiddleware)
    return app
