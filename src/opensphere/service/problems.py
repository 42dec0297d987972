"""Every error leaves the service as RFC 9457 problem details with a stable `code`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from opensphere.service.errors import (
    AuthenticationError,
    ConflictError,
    DeviceRefusedError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServiceError,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://opensphere.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    DeviceRefusedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    InvalidRequestError: 400,
    PayloadTooLargeError: 413,
}
_UNEXPECTED_DETAIL = (
    "the service failed unexpectedly; the operator can find the request id in its log"
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _problem_document(
    *, status: int, code: str, detail: str, instance: str, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
        "request_id": request_id,
        **extra,
    }


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = _problem_document(
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        **extra,
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _status_for(error: ServiceError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_problem(
    exc: Exception, *, method: str, instance: str, request_id: str | None
) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Status, problem document and extra headers for a failure: a `ServiceError` as itself,
    anything else a logged 500 that tells the caller nothing but the request id."""
    if not isinstance(exc, ServiceError):
        log.error(
            "unexpected error in %s %s (request %s)", method, instance, request_id, exc_info=exc
        )
        document = _problem_document(
            status=500,
            code="internal_error",
            detail=_UNEXPECTED_DETAIL,
            instance=instance,
            request_id=request_id,
        )
        return 500, document, None
    status = _status_for(exc)
    extra = {} if exc.errors is None else {"errors": exc.errors}
    document = _problem_document(
        status=status,
        code=exc.code,
        detail=exc.detail,
        instance=instance,
        request_id=request_id,
        **extra,
    )
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    return status, document, headers


async def service_error_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    context = getattr(request.state, "context", None)
    if context is not None:
        await run_in_threadpool(context.record_failure, request.app.state.storage, exc.code)
    return _error_response(request, exc)


def _error_response(request: Request, exc: Exception) -> JSONResponse:
    status, document, headers = error_problem(
        exc,
        method=request.method,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
    )
    return JSONResponse(
        document, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "location": ".".join(str(part) for part in error.get("loc", ())),
            "message": str(error.get("msg", "invalid")),
        }
        for error in exc.errors()
    ]
    summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
    return problem_response(
        request,
        status=422,
        code="validation_failed",
        detail=f"the request is not valid: {summary}",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"there is no {request.method} {request.url.path}; see /openapi.json"
    return problem_response(
        request, status=exc.status_code, code=code, detail=detail, headers=exc.headers
    )


async def unexpected_error_response(request: Request, exc: Exception) -> JSONResponse:
    return _error_response(request, exc)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error_response)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected_error_response)
