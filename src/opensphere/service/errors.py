"""The service's exception hierarchy: each carries a stable code and a message a user can act on.

HTTP status codes are chosen at the boundary (`problems.py`), not here.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    default_code = "service_error"

    def __init__(
        self, detail: str, *, code: str | None = None, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.errors = errors


class AuthenticationError(ServiceError):
    """No credential, or one that is malformed, unknown, expired or revoked."""

    default_code = "authentication_required"


class PermissionDeniedError(ServiceError):
    """The caller is known and may see the tenant, but their role does not allow this."""

    default_code = "forbidden"


class NotFoundError(ServiceError):
    """The object does not exist, or belongs to a tenant the caller may not see."""

    default_code = "not_found"


class ConflictError(ServiceError):
    """The request clashes with the current state (a taken name, the last administrator)."""

    default_code = "conflict"


class InvalidRequestError(ServiceError):
    """The request is well-formed JSON but asks for something that cannot be done."""

    default_code = "invalid_request"


class PayloadTooLargeError(ServiceError):
    """The request body is over the size limit; nothing of it was kept."""

    default_code = "payload_too_large"


class DeviceRefusedError(ServiceError):
    """A device endpoint refused the device; the same answer whatever the reason.

    The reason goes to the service log under the request id: telling an attacker which
    check failed would help them.
    """

    default_code = "device_refused"
