"""Typed HTTP client for the security service, used by the CLI, device agents and the simulator.

It speaks only the wire protocol (`opensphere.api`); it never imports the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from opensphere.api import schemas

ModelT = TypeVar("ModelT", bound=BaseModel)
DEFAULT_TIMEOUT = 30.0


class ClientError(Exception):
    """The service could not be asked, or it said no."""


class ServiceUnreachableError(ClientError):
    pass


class ApiError(ClientError):
    """The service answered with problem details."""

    def __init__(self, status: int, code: str, detail: str, request_id: str | None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id

    def __str__(self) -> str:
        suffix = f"; request {self.request_id}" if self.request_id else ""
        return f"{self.detail} ({self.code}, HTTP {self.status}{suffix})"


class Client:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, json=json, params=clean)
        except httpx.TransportError as exc:
            raise ServiceUnreachableError(
                f"cannot reach the service at {self.base_url}: {exc}"
            ) from exc
        if response.is_success:
            return response.json() if response.content else None
        raise _api_error(response)

    def raw(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request whose successful answer is returned as is (bytes, non-JSON bodies)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, json=json, content=content, params=clean, headers=headers
            )
        except httpx.TransportError as exc:
            raise ServiceUnreachableError(
                f"cannot reach the service at {self.base_url}: {exc}"
            ) from exc
        if response.is_success:
            return response
        raise _api_error(response)

    def _get(self, model: type[ModelT], path: str, **params: Any) -> ModelT:
        return model.model_validate(self.request("GET", path, params=params))

    def _send(self, model: type[ModelT], method: str, path: str, body: Any = None) -> ModelT:
        return model.model_validate(self.request(method, path, json=body))

    def _page(self, model: type[ModelT], path: str, **params: Any) -> schemas.Page[ModelT]:
        return schemas.Page[model].model_validate(  # type: ignore[valid-type]
            self.request("GET", path, params=params)
        )

    def iterate(
        self, model: type[ModelT], path: str, *, limit: int | None = None, **params: Any
    ) -> Iterator[ModelT]:
        """Every item of a list, page after page, up to `limit` items."""
        token: str | None = None
        seen = 0
        while True:
            page = self._page(model, path, continuation_token=token, **params)
            for item in page.items:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            token = page.continuation_token
            if token is None:
                return

    # --- users, tokens --------------------------------------------------------------

    def me(self) -> schemas.Me:
        return self._get(schemas.Me, "/v1/me")

    def create_token(self, body: schemas.TokenCreate) -> schemas.CreatedToken:
        return self._send(schemas.CreatedToken, "POST", "/v1/tokens", body.model_dump(mode="json"))

    def tokens(self) -> Iterator[schemas.Token]:
        return self.iterate(schemas.Token, "/v1/tokens")

    def tenant_tokens(self, tenant_id: uuid.UUID) -> Iterator[schemas.Token]:
        return self.iterate(schemas.Token, f"/v1/tenants/{tenant_id}/tokens")

    def revoke_token(self, token_id: uuid.UUID) -> schemas.Token:
        return self._send(schemas.Token, "POST", f"/v1/tokens/{token_id}/revoke")

    # --- tenants, roles, audit ------------------------------------------------------

    def create_tenant(self, name: str, administrator: str | None = None) -> schemas.Tenant:
        body = schemas.TenantCreate(name=name, administrator=administrator)
        return self._send(schemas.Tenant, "POST", "/v1/tenants", body.model_dump(mode="json"))

    def tenants(self) -> Iterator[schemas.Tenant]:
        return self.iterate(schemas.Tenant, "/v1/tenants")

    def tenant(self, tenant_id: uuid.UUID) -> schemas.Tenant:
        return self._get(schemas.Tenant, f"/v1/tenants/{tenant_id}")

    def rename_tenant(self, tenant_id: uuid.UUID, name: str) -> schemas.Tenant:
        return self._send(schemas.Tenant, "PATCH", f"/v1/tenants/{tenant_id}", {"name": name})

    def roles(self, tenant_id: uuid.UUID) -> Iterator[schemas.RoleAssignment]:
        return self.iterate(schemas.RoleAssignment, f"/v1/tenants/{tenant_id}/roles")

    def assign_role(
        self, tenant_id: uuid.UUID, user: str, role: schemas.Role
    ) -> schemas.RoleAssignment:
        return self._send(
            schemas.RoleAssignment,
            "PUT",
            f"/v1/tenants/{tenant_id}/roles/{user}",
            {"role": role.value},
        )

    def remove_role(self, tenant_id: uuid.UUID, user: str) -> schemas.RoleAssignment:
        return self._send(schemas.RoleAssignment, "DELETE", f"/v1/tenants/{tenant_id}/roles/{user}")

    def audit(
        self, tenant_id: uuid.UUID | None, *, limit: int | None = None, **filters: Any
    ) -> Iterator[schemas.AuditEvent]:
        path = "/v1/audit" if tenant_id is None else f"/v1/tenants/{tenant_id}/audit"
        return self.iterate(schemas.AuditEvent, path, limit=limit, **filters)

    # --- products, device groups ----------------------------------------------------

    def create_product(self, tenant_id: uuid.UUID, body: schemas.ProductCreate) -> schemas.Product:
        return self._send(
            schemas.Product,
            "POST",
            f"/v1/tenants/{tenant_id}/products",
            body.model_dump(mode="json"),
        )

    def products(self, tenant_id: uuid.UUID, name: str | None = None) -> Iterator[schemas.Product]:
        return self.iterate(schemas.Product, f"/v1/tenants/{tenant_id}/products", name=name)

    def product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> schemas.Product:
        return self._get(schemas.Product, f"/v1/tenants/{tenant_id}/products/{product_id}")

    def update_product(
        self, tenant_id: uuid.UUID, product_id: uuid.UUID, body: schemas.ProductUpdate
    ) -> schemas.Product:
        return self._send(
            schemas.Product,
            "PATCH",
            f"/v1/tenants/{tenant_id}/products/{product_id}",
            body.model_dump(mode="json", exclude_none=True),
        )

    def delete_product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> schemas.Product:
        return self._send(
            schemas.Product, "DELETE", f"/v1/tenants/{tenant_id}/products/{product_id}"
        )

    def create_default_groups(
        self, tenant_id: uuid.UUID, product_id: uuid.UUID
    ) -> list[schemas.DeviceGroup]:
        answer = self.request(
            "POST", f"/v1/tenants/{tenant_id}/products/{product_id}/default-device-groups"
        )
        return [schemas.DeviceGroup.model_validate(item) for item in answer]

    def create_device_group(
        self, tenant_id: uuid.UUID, body: schemas.DeviceGroupCreate
    ) -> schemas.DeviceGroup:
        return self._send(
            schemas.DeviceGroup,
            "POST",
            f"/v1/tenants/{tenant_id}/device-groups",
            body.model_dump(mode="json"),
        )

    def device_groups(
        self,
        tenant_id: uuid.UUID,
        *,
        product_id: uuid.UUID | None = None,
        name: str | None = None,
    ) -> Iterator[schemas.DeviceGroup]:
        return self.iterate(
            schemas.DeviceGroup,
            f"/v1/tenants/{tenant_id}/device-groups",
            product_id=product_id,
            name=name,
        )

    def device_group(self, tenant_id: uuid.UUID, group_id: uuid.UUID) -> schemas.DeviceGroup:
        return self._get(schemas.DeviceGroup, f"/v1/tenants/{tenant_id}/device-groups/{group_id}")

    def update_device_group(
        self, tenant_id: uuid.UUID, group_id: uuid.UUID, body: schemas.DeviceGroupUpdate
    ) -> schemas.DeviceGroup:
        return self._send(
            schemas.DeviceGroup,
            "PATCH",
            f"/v1/tenants/{tenant_id}/device-groups/{group_id}",
            body.model_dump(mode="json", exclude_none=True),
        )

    def delete_device_group(self, tenant_id: uuid.UUID, group_id: uuid.UUID) -> schemas.DeviceGroup:
        return self._send(
            schemas.DeviceGroup, "DELETE", f"/v1/tenants/{tenant_id}/device-groups/{group_id}"
        )

    # --- manufacturer CAs, OS releases (operator) ------------------------------------

    def register_manufacturer_ca(self, name: str, certificate_pem: str) -> schemas.ManufacturerCa:
        body = schemas.ManufacturerCaCreate(name=name, certificate=certificate_pem)
        return self._send(
            schemas.ManufacturerCa, "POST", "/v1/manufacturer-cas", body.model_dump(mode="json")
        )

    def manufacturer_cas(self) -> Iterator[schemas.ManufacturerCa]:
        return self.iterate(schemas.ManufacturerCa, "/v1/manufacturer-cas")

    def delete_manufacturer_ca(self, ca_id: uuid.UUID) -> schemas.ManufacturerCa:
        return self._send(schemas.ManufacturerCa, "DELETE", f"/v1/manufacturer-cas/{ca_id}")

    def register_os_release(self, body: schemas.OsReleaseCreate) -> schemas.OsRelease:
        return self._send(
            schemas.OsRelease, "POST", "/v1/os-releases", body.model_dump(mode="json")
        )

    def os_releases(self) -> Iterator[schemas.OsRelease]:
        return self.iterate(schemas.OsRelease, "/v1/os-releases")

    def set_minimum_security_versions(
        self, minimums: dict[str, int]
    ) -> schemas.SecurityVersionMinimums:
        return self._send(
            schemas.SecurityVersionMinimums,
            "PUT",
            "/v1/minimum-security-versions",
            {"minimums": minimums},
        )

    # --- devices --------------------------------------------------------------------

    def claim_devices(
        self,
        tenant_id: uuid.UUID,
        claims: list[schemas.DeviceClaim],
        device_group_id: uuid.UUID | None = None,
    ) -> list[schemas.Device]:
        body = schemas.DeviceClaimRequest(devices=claims, device_group_id=device_group_id)
        answer = self.request(
            "POST", f"/v1/tenants/{tenant_id}/devices/claim", json=body.model_dump(mode="json")
        )
        return [schemas.Device.model_validate(item) for item in answer]

    def devices(
        self,
        tenant_id: uuid.UUID,
        *,
        device_group_id: uuid.UUID | None = None,
        enabled: bool | None = None,
    ) -> Iterator[schemas.Device]:
        return self.iterate(
            schemas.Device,
            f"/v1/tenants/{tenant_id}/devices",
            device_group_id=device_group_id,
            enabled=enabled,
        )

    def device(self, tenant_id: uuid.UUID, device_id: str) -> schemas.Device:
        return self._get(schemas.Device, f"/v1/tenants/{tenant_id}/devices/{device_id}")

    def update_device(
        self, tenant_id: uuid.UUID, device_id: str, body: schemas.DeviceUpdate
    ) -> schemas.Device:
        return self._send(
            schemas.Device,
            "PATCH",
            f"/v1/tenants/{tenant_id}/devices/{device_id}",
            body.model_dump(mode="json", exclude_none=True),
        )

    # --- tenant CA certificates -----------------------------------------------------

    def ca_certificates(self, tenant_id: uuid.UUID) -> Iterator[schemas.CaCertificate]:
        return self.iterate(schemas.CaCertificate, f"/v1/tenants/{tenant_id}/ca-certificates")

    def download_ca_certificate(
        self, tenant_id: uuid.UUID, ca_id: uuid.UUID, output: schemas.CertificateFormat
    ) -> bytes:
        path = f"/v1/tenants/{tenant_id}/ca-certificates/{ca_id}/certificate"
        return self.raw("GET", path, params={"format": output.value}).content

    def download_ca_chain(
        self, tenant_id: uuid.UUID, ca_id: uuid.UUID, output: schemas.CertificateFormat
    ) -> bytes:
        path = f"/v1/tenants/{tenant_id}/ca-certificates/{ca_id}/chain"
        return self.raw("GET", path, params={"format": output.value}).content

    def download_proof(
        self,
        tenant_id: uuid.UUID,
        ca_id: uuid.UUID,
        verification_code: str,
        output: schemas.CertificateFormat,
    ) -> bytes:
        path = f"/v1/tenants/{tenant_id}/ca-certificates/{ca_id}/proof"
        body = schemas.ProofRequest(verification_code=verification_code)
        return self.raw(
            "POST", path, json=body.model_dump(mode="json"), params={"format": output.value}
        ).content

    # --- device endpoints (no user token: the device proves itself) -----------------

    def attestation_challenge(self, device_id: str) -> schemas.Challenge:
        body = schemas.ChallengeRequest(device_id=device_id)
        return self._send(
            schemas.Challenge,
            "POST",
            "/v1/device/attestation/challenge",
            body.model_dump(mode="json"),
        )

    def submit_evidence(self, evidence: bytes) -> schemas.AttestationGrant:
        response = self.raw(
            "POST",
            "/v1/device/attestation/evidence",
            content=evidence,
            headers={"Content-Type": "application/eat+cwt"},
        )
        return schemas.AttestationGrant.model_validate_json(response.content)

    def device_self(self, credential: str) -> schemas.DeviceIdentity:
        response = self.raw(
            "GET", "/v1/device/me", headers={"Authorization": f"Device {credential}"}
        )
        return schemas.DeviceIdentity.model_validate_json(response.content)


def _api_error(response: httpx.Response) -> ApiError:
    try:
        problem = schemas.Problem.model_validate(response.json())
    except ValueError:
        return ApiError(
            response.status_code,
            "unexpected_response",
            f"the service answered HTTP {response.status_code} without problem details",
            response.headers.get("x-request-id"),
        )
    return ApiError(problem.status, problem.code, problem.detail, problem.request_id)
