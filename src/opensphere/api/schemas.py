"""Request and response bodies of the management API (JSON, snake_case, versioned under /v1)."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 ._-]*[A-Za-z0-9._-])?$"
USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=50, pattern=NAME_PATTERN),
    Field(
        description="1-50 letters, digits, spaces, '.', '_' or '-'; no leading or trailing space",
        examples=["Thermostat"],
    ),
]
UserName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=254, pattern=USER_NAME_PATTERN),
    Field(description="a user name or e-mail address", examples=["alice@example.com"]),
]
Description = Annotated[
    str,
    StringConstraints(max_length=100, pattern=TEXT_PATTERN),
    Field(description="up to 100 printable characters"),
]


class Role(StrEnum):
    """Per-tenant roles, as in Azure Sphere (reference §4.4)."""

    ADMINISTRATOR = "Administrator"
    CONTRIBUTOR = "Contributor"
    READER = "Reader"


class OsFeed(StrEnum):
    RETAIL = "Retail"
    RETAIL_EVAL = "RetailEval"


class UpdatePolicy(StrEnum):
    UPDATE_ALL = "UpdateAll"
    NO_3RD_PARTY_APP_UPDATES = "No3rdPartyAppUpdates"
    NO_UPDATES = "NoUpdates"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(Model, Generic[ItemT]):
    """One page of a list; pass `continuation_token` back to get the next one."""

    items: list[ItemT]
    continuation_token: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine-readable `code`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    instance: str | None = None


# --- users, tokens -----------------------------------------------------------------------


class TenantRole(Model):
    tenant_id: uuid.UUID
    tenant_name: str
    role: Role


class Me(Model):
    id: uuid.UUID
    name: str
    is_operator: bool
    token_id: uuid.UUID
    token_tenant_id: uuid.UUID | None
    roles: list[TenantRole]


class TokenCreate(Model):
    name: Name
    expires_in_days: int = Field(default=90, ge=1, le=730)
    tenant_id: uuid.UUID | None = Field(default=None, description="limit the token to this tenant")
    user: UserName | None = Field(
        default=None,
        description="issue the token for another user: the operator may for anyone, a "
        "tenant Administrator for a member of that tenant (the token is then limited to it)",
    )


class Token(Model):
    id: uuid.UUID
    name: str
    user_id: uuid.UUID
    user_name: str
    tenant_id: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    status: str = Field(description="Active, Expired or Revoked")


class CreatedToken(Token):
    token: str = Field(description="the secret; shown only in this answer")


# --- tenants, roles ----------------------------------------------------------------------


class TenantCreate(Model):
    name: Name
    administrator: UserName | None = Field(
        default=None, description="user made Administrator of the new tenant"
    )


class TenantUpdate(Model):
    name: Name


class Tenant(Model):
    id: uuid.UUID
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    role: Role | None = Field(default=None, description="the caller's role in this tenant")


class RoleAssign(Model):
    role: Role


class RoleAssignment(Model):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    user_name: str
    role: Role
    created_at: dt.datetime


# --- audit -------------------------------------------------------------------------------


class AuditEvent(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    at: dt.datetime
    actor_id: uuid.UUID | None
    actor_name: str
    action: str
    target_type: str
    target_id: str | None
    result: str
    error_code: str | None
    request_id: str
    details: dict[str, object]


# --- products, device groups -------------------------------------------------------------


class ProductCreate(Model):
    name: Name
    description: Description = ""
    create_default_groups: bool = True


class ProductUpdate(Model):
    name: Name | None = None
    description: Description | None = None


class Product(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime


class DeviceGroupCreate(Model):
    product_id: uuid.UUID
    name: Name
    description: Description = ""
    os_feed: OsFeed = OsFeed.RETAIL
    update_policy: UpdatePolicy = UpdatePolicy.UPDATE_ALL
    allow_crash_dumps: bool = False


class DeviceGroupUpdate(Model):
    name: Name | None = None
    description: Description | None = None
    os_feed: OsFeed | None = None
    update_policy: UpdatePolicy | None = None
    allow_crash_dumps: bool | None = None


# --- deployments, update status ----------------------------------------------------------


class DeploymentState(StrEnum):
    """Active rolls out; Paused and Halted (by the failure threshold) hold; Superseded is past."""

    ACTIVE = "Active"
    PAUSED = "Paused"
    HALTED = "Halted"
    SUPERSEDED = "Superseded"


class UpdateState(StrEnum):
    """Where a device is in an update, as it last reported."""

    CHECKED = "checked"
    DOWNLOADING = "downloading"
    STAGED = "staged"
    INSTALLED = "installed"
    FAILED = "failed"


Percentage = Annotated[int, Field(ge=1, le=100)]


class DeploymentCreate(Model):
    image_ids: list[uuid.UUID] = Field(
        max_length=64, description="the tenant's images; none clears the group's apps"
    )
    rollout_percentage: Percentage = Field(
        default=100, description="share of the group's devices that take it (staged rollout)"
    )
    failure_threshold: Percentage = Field(
        default=20, description="halt when failed/(installed+failed) passes this, in percent"
    )
    min_reports: int = Field(
        default=10, ge=1, le=1_000_000, description="outcomes needed before the halt rule applies"
    )
    paused: bool = False


class DeploymentUpdate(Model):
    rollout_percentage: Percentage | None = None
    failure_threshold: Percentage | None = None
    paused: bool | None = Field(
        default=None, description="true pauses; false resumes, also after an automatic halt"
    )


class Deployment(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    device_group_id: uuid.UUID
    image_ids: list[uuid.UUID]
    state: DeploymentState
    rollout_percentage: int
    failure_threshold: int
    min_reports: int
    halt_reason: str | None
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    status_counts: dict[UpdateState, int] = Field(
        default_factory=dict, description="devices per reported state (in show only)"
    )


class DeviceUpdateStatus(Model):
    deployment_id: uuid.UUID | None
    state: UpdateState
    reason: str | None
    installed_images: list[uuid.UUID]
    os_version: str | None
    sequence: int
    reported_at: dt.datetime


class DeviceGroup(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    description: str
    os_feed: OsFeed
    update_policy: UpdatePolicy
    allow_crash_dumps: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    deployment: Deployment | None = Field(
        default=None, description="the current deployment with its status counts (in show only)"
    )


# --- manufacturer CAs, devices, claims ---------------------------------------------------

DEVICE_ID_PATTERN = r"^[0-9a-f]{128}$"
COMPONENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$"

DeviceIdText = Annotated[
    str,
    StringConstraints(min_length=128, max_length=128, pattern=DEVICE_ID_PATTERN),
    Field(description="128 lowercase hex characters: the identity public key's X‖Y"),
]
Pem = Annotated[
    str,
    StringConstraints(min_length=1, max_length=8192),
    Field(description="one X.509 certificate, PEM"),
]


class ManufacturerCaCreate(Model):
    name: Name
    certificate: Pem


class ManufacturerCa(Model):
    id: uuid.UUID
    name: str
    thumbprint: str = Field(description="SHA-256 of the certificate's DER, hex")
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    created_at: dt.datetime


class DeviceClaim(Model):
    """Proof that the device itself asks to join the tenant, and that it is genuine."""

    claim_statement: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^[A-Za-z0-9_-]+={0,2}$",
        description="the device-signed claim statement (COSE_Sign1), base64url",
    )
    idevid: Pem = Field(description="the device's manufacturer identity certificate, PEM")


class DeviceClaimRequest(Model):
    """Claim one or many devices in one call: all of them, or none if any is refused."""

    devices: list[DeviceClaim] = Field(min_length=1, max_length=1000)
    device_group_id: uuid.UUID | None = Field(
        default=None, description="put the claimed devices in this device group"
    )


class AttestationResult(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"


class Device(Model):
    device_id: str
    tenant_id: uuid.UUID
    product_id: uuid.UUID | None
    device_group_id: uuid.UUID | None
    enabled: bool
    manufacturer_ca_thumbprint: str
    claimed_at: dt.datetime
    updated_at: dt.datetime
    last_attestation_at: dt.datetime | None
    last_attestation_result: AttestationResult | None
    last_attestation_code: str | None = Field(description="why the last attestation failed")
    os_version: str | None
    certificate_expires_at: dt.datetime | None
    update_status: DeviceUpdateStatus | None = Field(
        default=None, description="the device's last update report (in show only)"
    )


class DeviceCounts(Model):
    """Device counts kept exact as devices change: reading them costs the same at any fleet size."""

    devices: int
    enabled: int
    by_device_group: dict[str, int] = Field(description="device group GUID, or 'none'")
    by_os_version: dict[str, int] = Field(description="last attested OS version, or 'none'")
    by_attestation_result: dict[str, int] = Field(
        description="Passed or Failed (last attestation), or 'none' (never attested)"
    )


class DeviceUpdate(Model):
    device_group_id: uuid.UUID | None = Field(default=None, description="move to this group")
    enabled: bool | None = Field(
        default=None, description="a disabled device gets no certificate and no device service"
    )


# --- OS reference values -----------------------------------------------------------------


class ReferenceMeasurement(Model):
    stage: str = Field(pattern=COMPONENT_PATTERN, description="boot stage, e.g. security-monitor")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256, lowercase hex")


class OsReleaseCreate(Model):
    version: str = Field(pattern=VERSION_PATTERN, examples=["26.01"])
    description: Description = ""
    measurements: list[ReferenceMeasurement] = Field(min_length=1, max_length=64)


class OsReleaseImage(Model):
    image_id: uuid.UUID
    component_id: uuid.UUID
    image_type: str
    name: str
    version: str
    security_version: int
    sha256: str
    length: int
    created_at: dt.datetime


class OsRelease(Model):
    id: uuid.UUID
    version: str
    description: str
    measurements: list[ReferenceMeasurement]
    created_at: dt.datetime
    retail_eval_at: dt.datetime | None = Field(default=None, description="published to RetailEval")
    retail_at: dt.datetime | None = Field(default=None, description="published to Retail")
    images: list[OsReleaseImage] = Field(default_factory=list)


class OsReleasePublish(Model):
    feed: OsFeed = Field(description="Retail publishes to RetailEval as well")


class OsImageSignerKey(Model):
    name: Name
    public_key: str = Field(
        min_length=1, max_length=4096, description="ECDSA P-256 public key, PEM (SPKI)"
    )


class OsImageSigners(Model):
    """The keys OS component images must be signed with (the OS vendor's)."""

    keys: list[OsImageSignerKey] = Field(max_length=16)


ComponentName = Annotated[str, StringConstraints(pattern=COMPONENT_PATTERN)]


class SecurityVersionMinimums(Model):
    """The lowest security version accepted per component; a device below one is refused."""

    minimums: dict[ComponentName, Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(max_length=64)


# --- attestation -------------------------------------------------------------------------


class ChallengeRequest(Model):
    device_id: DeviceIdText


class Challenge(Model):
    nonce: str = Field(description="single-use nonce to put in the evidence, base64url")
    expires_at: dt.datetime


class AttestationGrant(Model):
    """What a device gets for passing attestation."""

    device_id: str
    certificate: str = Field(description="device certificate, PEM, CN = device ID, 24 h")
    chain: list[str] = Field(description="issuing tenant CA, then the service root, PEM")
    certificate_expires_at: dt.datetime
    credential: str = Field(description="send as 'Authorization: Device <credential>'")
    credential_expires_at: dt.datetime


class DeviceIdentity(Model):
    """A device's own view of itself, through its credential."""

    device_id: str
    tenant_id: uuid.UUID
    product_id: uuid.UUID | None
    device_group_id: uuid.UUID | None
    credential_expires_at: dt.datetime


# --- tenant CA certificates --------------------------------------------------------------


class CaCertificateStatus(StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    EXPIRED = "Expired"
    REVOKED = "Revoked"


class CaCertificate(Model):
    id: uuid.UUID
    tenant_id: uuid.UUID
    generation: int
    subject: str
    thumbprint: str = Field(description="SHA-256 of the certificate's DER, hex")
    status: CaCertificateStatus
    not_before: dt.datetime
    not_after: dt.datetime
    active_from: dt.datetime
    revoked_at: dt.datetime | None
    created_at: dt.datetime


class CertificateFormat(StrEnum):
    PEM = "pem"
    DER = "der"


class ProofRequest(Model):
    verification_code: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the code the relying party asks to see as the proof certificate's CN",
    )


# --- images ------------------------------------------------------------------------------


class Image(Model):
    """An uploaded image as the service stores it: production-signed, immutable."""

    image_id: uuid.UUID
    tenant_id: uuid.UUID
    component_id: uuid.UUID
    image_type: str
    name: str
    version: str
    security_version: int
    temporary: bool
    sha256: str = Field(description="SHA-256 of the stored (production-signed) package")
    length: int
    signer_thumbprint: str = Field(description="the tenant's image-signing key, SHA-256 of SPKI")
    uploaded_by: str
    uploaded_at: dt.datetime


# --- device update protocol --------------------------------------------------------------


class UpdateStatusReport(Model):
    """A device's report of where it is in an update; the highest `sequence` wins."""

    sequence: int = Field(ge=0, le=2**62, description="grows with every report of the device")
    deployment_id: uuid.UUID | None = Field(
        default=None, description="the deployment this is about (its targets' custom.rollout)"
    )
    state: UpdateState
    reason: str | None = Field(
        default=None, max_length=200, pattern=TEXT_PATTERN, description="why it failed"
    )
    installed_images: list[uuid.UUID] = Field(default_factory=list, max_length=64)
    os_version: str | None = Field(default=None, pattern=VERSION_PATTERN)


class TrustedSigningKey(Model):
    name: str
    thumbprint: str = Field(description="SHA-256 of the key's SPKI DER, hex")
    public_key: str = Field(description="PEM (SPKI)")
    usages: list[str] = Field(description="what it may sign, as the device key store names it")


class DeviceTrust(Model):
    """What a device installs to trust its tenant's updates, fetched over its credential."""

    tenant_id: uuid.UUID
    device_group_id: uuid.UUID | None
    image_signing_keys: list[TrustedSigningKey]
    tuf_root: str = Field(description="the tenant's latest TUF root (JSON), for init_trust")
    metadata_path: str = Field(description="TUF metadata base path on this service")
    targets_path: str = Field(description="TUF targets base path on this service")
    channel_prefix: str | None = Field(description="the group's target path prefix")


# --- TUF repository administration -------------------------------------------------------


class TufRoot(Model):
    version: int
    expires: dt.datetime
    root: str = Field(description="the signed root metadata, JSON")
    service_signs_root: bool = Field(
        description="whether the service holds a root key (false once the root keys are offline)"
    )


class TufRootRotation(Model):
    root: str = Field(
        min_length=2,
        max_length=512_000,
        description="root N+1 (JSON), signed by its new keys and by any offline current ones",
    )


class TufState(Model):
    """A repository's current metadata, base64, as `opensphere.updates.static` lays it out."""

    roots: list[str]
    targets: str
    snapshot: str
    timestamp: str
    delegated: dict[str, str]
    manifests: dict[str, str]


# --- TPM devices (see service/tpm.py) -------------------------------------------------

TpmBlob = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9_-]+={0,2}$"),
]
"""A marshalled TPM structure, base64url."""


class TpmActivationRequest(Model):
    """A TPM's endorsement (certificate and public area) and the attestation key to bind."""

    ek_certificate: Pem = Field(description="the EK certificate from the TPM's NV, PEM")
    ek_public: TpmBlob = Field(description="the EK's TPM2B_PUBLIC, base64url")
    ak_public: TpmBlob = Field(description="the attestation key's TPM2B_PUBLIC, base64url")


class TpmActivationChallenge(Model):
    """MakeCredential's output: only the TPM holding both the EK and the AK can open it."""

    activation_id: uuid.UUID
    device_id: str
    credential_blob: TpmBlob = Field(description="TPM2B_ID_OBJECT, base64url")
    encrypted_secret: TpmBlob = Field(description="TPM2B_ENCRYPTED_SECRET, base64url")
    expires_at: dt.datetime


class TpmClaimRequest(Model):
    """The activated secret: proof that the AK lives in the TPM whose EK is certified."""

    activation_id: uuid.UUID
    secret: TpmBlob = Field(description="what TPM2_ActivateCredential returned, base64url")
    device_group_id: uuid.UUID | None = Field(
        default=None, description="put the claimed device in this device group"
    )
