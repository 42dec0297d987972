"""OS feeds: the operator's OS component images, and publishing releases to Retail/RetailEval.

An OS release (`service/os_releases.py`) holds the known-good measurements attestation
compares with; here it also gets its component images, uploaded by the operator as the OS
vendor signed them (no re-signing: devices trust the vendor's key for OS images). The service
checks them against the OS image signers the operator registered. Once a release is on a feed
its images are fixed. Publishing it to RetailEval, or to Retail (which is in RetailEval too, as
Microsoft's Retail releases reach the evaluation feed), makes it the feed's current release,
and every published group on that feed is re-signed (`publishing.group_targets`).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool

from opensphere.api import schemas
from opensphere.api.schemas import OsFeed
from opensphere.formats.image_package import (
    ImagePackageError,
    PackageSignatureError,
    UntrustedSignerError,
    key_thumbprint,
    verify_package,
)
from opensphere.service.auth.permissions import require_operator
from opensphere.service.deps import Bearer, Context, request_context
from opensphere.service.errors import ConflictError, InvalidRequestError, NotFoundError
from opensphere.service.os_releases import OsReleaseId, release_out
from opensphere.service.storage.models import (
    OsImageSigner,
    OsRelease,
    OsReleaseImage,
)
from opensphere.service.updates.blobs import BlobStore
from opensphere.service.updates.images import (
    BINARY_BODY,
    MAX_IMAGE_SIZE,
    TENANT_IMAGE_TYPES,
    spool_body,
)
from opensphere.service.updates.publishing import republish_feed

router = APIRouter(prefix="/v1", tags=["os-releases"])


def _signers_out(rows: list[OsImageSigner]) -> schemas.OsImageSigners:
    return schemas.OsImageSigners(
        keys=[
            schemas.OsImageSignerKey(name=row.name, public_key=row.public_key_pem) for row in rows
        ]
    )


@router.get("/os-image-signers")
def show_os_image_signers(context: Context) -> schemas.OsImageSigners:
    """The keys OS component images must be signed with (any signed-in user)."""
    rows = context.session.scalars(select(OsImageSigner).order_by(OsImageSigner.name)).all()
    return _signers_out(list(rows))


@router.put("/os-image-signers")
def set_os_image_signers(body: schemas.OsImageSigners, context: Context) -> schemas.OsImageSigners:
    """Replace the OS image signers (operator only); images already stored stay."""
    with context.change(
        "os_image_signers.set", target_type="security_policy", operator=True
    ) as change:
        rows: dict[str, OsImageSigner] = {}
        for key in body.keys:
            try:
                public_key = serialization.load_pem_public_key(key.public_key.encode())
            except (ValueError, TypeError) as exc:
                raise InvalidRequestError(
                    f"key {key.name!r} is not a PEM public key", code="invalid_public_key"
                ) from exc
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
                public_key.curve, ec.SECP256R1
            ):
                raise InvalidRequestError(
                    f"key {key.name!r} is not an ECDSA P-256 key", code="invalid_public_key"
                )
            thumbprint = key_thumbprint(public_key).hex()
            rows[thumbprint] = OsImageSigner(
                thumbprint=thumbprint,
                name=key.name,
                public_key_pem=key.public_key,
                created_at=context.now,
            )
        context.session.execute(delete(OsImageSigner))
        context.session.add_all(rows.values())
        change.details = {"thumbprints": sorted(rows)}
    return _signers_out(sorted(rows.values(), key=lambda row: row.name))


def _get_release(context: Context, os_release_id: uuid.UUID) -> OsRelease:
    row = context.session.get(OsRelease, os_release_id)
    if row is None:
        raise NotFoundError(f"there is no OS release {os_release_id}", code="os_release_not_found")
    return row


def _trusted_os_keys(context: Context) -> dict[bytes, ec.EllipticCurvePublicKey]:
    keys: dict[bytes, ec.EllipticCurvePublicKey] = {}
    for row in context.session.scalars(select(OsImageSigner)):
        public_key = serialization.load_pem_public_key(row.public_key_pem.encode())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        keys[bytes.fromhex(row.thumbprint)] = public_key
    return keys


def _authorize(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Refuse anyone but the operator before a byte of the upload is read."""
    with request.app.state.storage.read_session() as session:
        require_operator(request_context(request, session, credentials).principal)
    request.state.context = None


def _store_os_image(
    request: Request,
    os_release_id: uuid.UUID,
    credentials: HTTPAuthorizationCredentials | None,
    spooled: IO[bytes],
) -> schemas.OsRelease:
    blobs: BlobStore = request.app.state.blobs
    with request.app.state.storage.write_session() as session:
        context = request_context(request, session, credentials)
        with context.change(
            "os_release.add_image",
            target_type="os_release",
            operator=True,
            target_id=str(os_release_id),
        ) as change:
            release = _get_release(context, os_release_id)
            if release.retail_eval_at is not None:
                raise ConflictError(
                    "the release is on a feed already; its images are fixed: register a new one",
                    code="os_release_published",
                )
            data = spooled.read()
            try:
                package = verify_package(data, _trusted_os_keys(context), allow_test_signed=False)
            except (PackageSignatureError, UntrustedSignerError) as exc:
                raise InvalidRequestError(
                    f"not signed by a registered OS image signer: {exc}",
                    code="untrusted_signer",
                ) from exc
            except ImagePackageError as exc:
                raise InvalidRequestError(
                    f"not a valid image package: {exc}", code="invalid_image_package"
                ) from exc
            identity = package.metadata.identity
            if identity.image_type in TENANT_IMAGE_TYPES:
                raise InvalidRequestError(
                    "applications and board configurations are tenants' images, not OS images",
                    code="image_type_not_allowed",
                )
            taken = context.session.scalar(
                select(OsReleaseImage.image_id).where(
                    (OsReleaseImage.image_id == identity.image_id)
                    | (
                        (OsReleaseImage.os_release_id == release.id)
                        & (OsReleaseImage.component_id == identity.component_id)
                    )
                )
            )
            if taken is not None:
                raise ConflictError(
                    "this image, or another image of its component, is already in an OS release",
                    code="image_exists",
                )
            sha256 = hashlib.sha256(data).hexdigest()
            blobs.put(sha256, io.BytesIO(data))
            context.session.add(
                OsReleaseImage(
                    image_id=identity.image_id,
                    os_release_id=release.id,
                    component_id=identity.component_id,
                    image_type=identity.image_type.name,
                    name=package.metadata.name,
                    version=package.metadata.version,
                    security_version=package.metadata.security_version,
                    sha256=sha256,
                    length=len(data),
                    created_at=context.now,
                )
            )
            context.session.flush()
            change.details = {"image_id": str(identity.image_id), "sha256": sha256}
        return release_out(release, context.session)


@router.post(
    "/os-releases/{os_release_id}/images",
    status_code=201,
    response_model=schemas.OsRelease,
    openapi_extra=BINARY_BODY,
)
async def add_os_image(
    os_release_id: OsReleaseId, request: Request, credentials: Bearer
) -> schemas.OsRelease:
    """Add an OS component image, signed by a registered OS image signer (operator only)."""
    await run_in_threadpool(_authorize, request, credentials)
    spooled = await spool_body(request, MAX_IMAGE_SIZE)
    try:
        return await run_in_threadpool(
            _store_os_image, request, os_release_id, credentials, spooled
        )
    finally:
        spooled.close()


@router.post("/os-releases/{os_release_id}/publish")
def publish_os_release(
    os_release_id: OsReleaseId, body: schemas.OsReleasePublish, context: Context, request: Request
) -> schemas.OsRelease:
    """Make the release the current one of a feed (operator only); groups follow at once."""
    with context.change(
        "os_release.publish",
        target_type="os_release",
        operator=True,
        target_id=str(os_release_id),
    ) as change:
        release = _get_release(context, os_release_id)
        has_images = context.session.scalar(
            select(OsReleaseImage.image_id).where(OsReleaseImage.os_release_id == release.id)
        )
        if has_images is None:
            raise ConflictError(
                "the release has no images to offer; add them first", code="os_release_empty"
            )
        release.retail_eval_at = context.now
        if body.feed == OsFeed.RETAIL:
            release.retail_at = context.now
        tenants = republish_feed(
            context.session, request.app.state.keys, OsFeed(body.feed), context.now
        )
        change.details = {"feed": body.feed.value, "version": release.version}
    for tenant_id in tenants:
        request.app.state.tuf.invalidate(tenant_id)
    return release_out(release, context.session)
