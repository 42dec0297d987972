"""Typed HTTP client for the security service, used by the CLI, device agents and the simulator.

It speaks only the wire protocol (`opensphere.api`); it never imports the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel

from opensphere.api import error_reports, schemas

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
        content: bytes | Iterable[bytes] | None = None,
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

    def register_tpm_manufacturer_ca(
        self, name: str, certificate_pem: str
    ) -> schemas.ManufacturerCa:
        body = schemas.ManufacturerCaCreate(name=name, certificate=certificate_pem)
        return self._send(
            schemas.ManufacturerCa, "POST", "/v1/tpm-manufacturer-cas", body.model_dump(mode="json")
        )

    def tpm_manufacturer_cas(self) -> Iterator[schemas.ManufacturerCa]:
        return self.iterate(schemas.ManufacturerCa, "/v1/tpm-manufacturer-cas")

    def delete_tpm_manufacturer_ca(self, ca_id: uuid.UUID) -> schemas.ManufacturerCa:
        return self._send(schemas.ManufacturerCa, "DELETE", f"/v1/tpm-manufacturer-cas/{ca_id}")

    def start_tpm_activation(
        self, tenant_id: uuid.UUID, body: schemas.TpmActivationRequest
    ) -> schemas.TpmActivationChallenge:
        return self._send(
            schemas.TpmActivationChallenge,
            "POST",
            f"/v1/tenants/{tenant_id}/tpm-devices/activations",
            body.model_dump(mode="json"),
        )

    def claim_tpm_device(
        self, tenant_id: uuid.UUID, body: schemas.TpmClaimRequest
    ) -> schemas.Device:
        return self._send(
            schemas.Device,
            "POST",
            f"/v1/tenants/{tenant_id}/tpm-devices/claim",
            body.model_dump(mode="json"),
        )

    def register_os_release(self, body: schemas.OsReleaseCreate) -> schemas.OsRelease:
        return self._send(
            schemas.OsRelease, "POST", "/v1/os-releases", body.model_dump(mode="json")
        )

    def os_releases(self) -> Iterator[schemas.OsRelease]:
        return self.iterate(schemas.OsRelease, "/v1/os-releases")

    def delete_os_release(self, os_release_id: uuid.UUID) -> schemas.OsRelease:
        return self._send(schemas.OsRelease, "DELETE", f"/v1/os-releases/{os_release_id}")

    def minimum_security_versions(self) -> schemas.SecurityVersionMinimums:
        return self._get(schemas.SecurityVersionMinimums, "/v1/minimum-security-versions")

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

    # --- images, deployments, OS feeds, TUF repositories ------------------------------

    def upload_image(
        self, tenant_id: uuid.UUID, chunks: Iterable[bytes], length: int
    ) -> tuple[schemas.Image, bool]:
        """Stream a package up; True if it is new, False if the same one was there already."""
        response = self.raw(
            "POST",
            f"/v1/tenants/{tenant_id}/images",
            content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        return schemas.Image.model_validate_json(response.content), response.status_code == 201

    def images(self, tenant_id: uuid.UUID) -> Iterator[schemas.Image]:
        return self.iterate(schemas.Image, f"/v1/tenants/{tenant_id}/images")

    def image(self, tenant_id: uuid.UUID, image_id: uuid.UUID) -> schemas.Image:
        return self._get(schemas.Image, f"/v1/tenants/{tenant_id}/images/{image_id}")

    def download_image(self, tenant_id: uuid.UUID, image_id: uuid.UUID, out: IO[bytes]) -> int:
        return self.download(f"/v1/tenants/{tenant_id}/images/{image_id}/content", out)

    def download(self, path: str, out: IO[bytes]) -> int:
        """Stream a binary answer into `out`; the number of bytes written."""
        written = 0
        try:
            with self._http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    raise _api_error(response)
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        except httpx.TransportError as exc:
            raise ServiceUnreachableError(
                f"cannot reach the service at {self.base_url}: {exc}"
            ) from exc
        return written

    def create_deployment(
        self, tenant_id: uuid.UUID, group_id: uuid.UUID, body: schemas.DeploymentCreate
    ) -> schemas.Deployment:
        return self._send(
            schemas.Deployment,
            "POST",
            f"/v1/tenants/{tenant_id}/device-groups/{group_id}/deployments",
            body.model_dump(mode="json"),
        )

    def deployments(
        self, tenant_id: uuid.UUID, group_id: uuid.UUID
    ) -> Iterator[schemas.Deployment]:
        return self.iterate(
            schemas.Deployment, f"/v1/tenants/{tenant_id}/device-groups/{group_id}/deployments"
        )

    def deployment(
        self, tenant_id: uuid.UUID, group_id: uuid.UUID, deployment_id: uuid.UUID
    ) -> schemas.Deployment:
        return self._get(
            schemas.Deployment,
            f"/v1/tenants/{tenant_id}/device-groups/{group_id}/deployments/{deployment_id}",
        )

    def update_deployment(
        self,
        tenant_id: uuid.UUID,
        group_id: uuid.UUID,
        deployment_id: uuid.UUID,
        body: schemas.DeploymentUpdate,
    ) -> schemas.Deployment:
        return self._send(
            schemas.Deployment,
            "PATCH",
            f"/v1/tenants/{tenant_id}/device-groups/{group_id}/deployments/{deployment_id}",
            body.model_dump(mode="json", exclude_none=True),
        )

    def os_image_signers(self) -> schemas.OsImageSigners:
        return self._get(schemas.OsImageSigners, "/v1/os-image-signers")

    def set_os_image_signers(self, body: schemas.OsImageSigners) -> schemas.OsImageSigners:
        return self._send(
            schemas.OsImageSigners, "PUT", "/v1/os-image-signers", body.model_dump(mode="json")
        )

    def add_os_image(self, os_release_id: uuid.UUID, package: bytes) -> schemas.OsRelease:
        response = self.raw(
            "POST",
            f"/v1/os-releases/{os_release_id}/images",
            content=package,
            headers={"Content-Type": "application/octet-stream"},
        )
        return schemas.OsRelease.model_validate_json(response.content)

    def publish_os_release(
        self, os_release_id: uuid.UUID, feed: schemas.OsFeed
    ) -> schemas.OsRelease:
        body = schemas.OsReleasePublish(feed=feed)
        return self._send(
            schemas.OsRelease,
            "POST",
            f"/v1/os-releases/{os_release_id}/publish",
            body.model_dump(mode="json"),
        )

    def tuf_root(self, tenant_id: uuid.UUID) -> schemas.TufRoot:
        return self._get(schemas.TufRoot, f"/v1/tenants/{tenant_id}/tuf/root")

    def rotate_tuf_root(self, tenant_id: uuid.UUID, root: bytes) -> schemas.TufRoot:
        body = schemas.TufRootRotation(root=root.decode())
        return self._send(
            schemas.TufRoot, "POST", f"/v1/tenants/{tenant_id}/tuf/root", body.model_dump()
        )

    def tuf_state(self, tenant_id: uuid.UUID) -> schemas.TufState:
        return self._get(schemas.TufState, f"/v1/tenants/{tenant_id}/tuf/state")

    def download_tuf_blob(self, tenant_id: uuid.UUID, sha256: str, out: IO[bytes]) -> int:
        return self.download(f"/v1/tenants/{tenant_id}/tuf/blobs/{sha256}", out)

    def device_trust(self, credential: str) -> schemas.DeviceTrust:
        response = self.raw(
            "GET", "/v1/device/trust", headers={"Authorization": f"Device {credential}"}
        )
        return schemas.DeviceTrust.model_validate_json(response.content)

    def report_update_status(
        self, credential: str, report: schemas.UpdateStatusReport
    ) -> schemas.DeviceUpdateStatus:
        response = self.raw(
            "POST",
            "/v1/device/update-status",
            json=report.model_dump(mode="json"),
            headers={"Authorization": f"Device {credential}"},
        )
        return schemas.DeviceUpdateStatus.model_validate_json(response.content)

    # --- device endpoints (no user token: the device proves itself) -----------------

    def attestation_challenge(self, device_id: str) -> schemas.Challenge:
        body = schemas.ChallengeRequest(device_id=device_id)
        return self._send(
            schemas.Challenge,
            "POST",
            "/v1/device/attestation/challenge",
            body.model_dump(mode="json"),
        )

    def submit_evidence(
        self, evidence: bytes, content_type: str = "application/eat+cwt"
    ) -> schemas.AttestationGrant:
        """`content_type` names the evidence's EAT profile (TPM evidence says so there)."""
        response = self.raw(
            "POST",
            "/v1/device/attestation/evidence",
            content=evidence,
            headers={"Content-Type": content_type},
        )
        return schemas.AttestationGrant.model_validate_json(response.content)

    def device_self(self, credential: str) -> schemas.DeviceIdentity:
        response = self.raw(
            "GET", "/v1/device/me", headers={"Authorization": f"Device {credential}"}
        )
        return schemas.DeviceIdentity.model_validate_json(response.content)

    def download_capability(
        self,
        tenant_id: uuid.UUID,
        device_id: str,
        capabilities: list[str],
        *,
        expires_in_days: int | None = None,
    ) -> bytes:
        """A capability file for the device, signed by the service."""
        return self.raw(
            "POST",
            f"/v1/tenants/{tenant_id}/devices/{device_id}/capability",
            json={"capabilities": capabilities, "expires_in_days": expires_in_days},
        ).content

    # --- failure reporting (device side) -------------------------------------------

    def reporting_config(self, credential: str) -> error_reports.ReportingConfig:
        response = self.raw(
            "GET", "/v1/device/reporting-config", headers={"Authorization": f"Device {credential}"}
        )
        return error_reports.ReportingConfig.model_validate_json(response.content)

    def upload_error_events(self, credential: str, batch: bytes) -> error_reports.IngestAnswer:
        response = self.raw(
            "POST",
            "/v1/device/error-reports",
            content=batch,
            headers={"Authorization": f"Device {credential}", "Content-Type": "application/json"},
        )
        return error_reports.IngestAnswer.model_validate_json(response.content)

    def upload_crash_dump(
        self,
        credential: str,
        dump: bytes,
        *,
        event_id: uuid.UUID | None,
        component_id: uuid.UUID | None,
        image_id: uuid.UUID | None,
    ) -> error_reports.CrashDump:
        params = {"event_id": event_id, "component_id": component_id, "image_id": image_id}
        response = self.raw(
            "POST",
            "/v1/device/crash-dumps",
            content=dump,
            params={k: str(v) for k, v in params.items() if v is not None},
            headers={
                "Authorization": f"Device {credential}",
                "Content-Type": "application/octet-stream",
            },
        )
        return error_reports.CrashDump.model_validate_json(response.content)

    # --- failure reporting (people) ------------------------------------------------

    def error_report(
        self, tenant_id: uuid.UUID, *, limit: int | None = None, **filters: Any
    ) -> Iterator[error_reports.ErrorReportRow]:
        return self.iterate(
            error_reports.ErrorReportRow,
            f"/v1/tenants/{tenant_id}/error-reports",
            limit=limit,
            **filters,
        )

    def problems(self, tenant_id: uuid.UUID) -> Iterator[error_reports.Problem]:
        return self.iterate(error_reports.Problem, f"/v1/tenants/{tenant_id}/problems")

    def problem(self, tenant_id: uuid.UUID, problem_id: uuid.UUID) -> error_reports.ProblemDetail:
        return self._get(
            error_reports.ProblemDetail, f"/v1/tenants/{tenant_id}/problems/{problem_id}"
        )

    def crash_dumps(
        self, tenant_id: uuid.UUID, device_id: str | None = None
    ) -> Iterator[error_reports.CrashDump]:
        return self.iterate(
            error_reports.CrashDump, f"/v1/tenants/{tenant_id}/crash-dumps", device_id=device_id
        )

    def download_crash_dump(self, tenant_id: uuid.UUID, dump_id: uuid.UUID) -> bytes:
        return self.raw("GET", f"/v1/tenants/{tenant_id}/crash-dumps/{dump_id}").content

    def error_report_settings(self, tenant_id: uuid.UUID) -> error_reports.ErrorReportSettings:
        return self._get(
            error_reports.ErrorReportSettings, f"/v1/tenants/{tenant_id}/error-report-settings"
        )

    def set_error_report_settings(
        self, tenant_id: uuid.UUID, settings: error_reports.ErrorReportSettings
    ) -> error_reports.ErrorReportSettings:
        return self._send(
            error_reports.ErrorReportSettings,
            "PUT",
            f"/v1/tenants/{tenant_id}/error-report-settings",
            settings.model_dump(mode="json"),
        )


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
