"""Images: upload, validate, production-sign, store; immutable once stored.

As on Azure Sphere (reference §3.6), a customer uploads a package signed with the public SDK
test key (or one this tenant's key already signed, e.g. downloaded earlier), and the service
re-signs it with the tenant's own image-signing key from the key store; devices trust that key
for apps only (`GET /v1/device/trust`). A package signed by any other key, such as another
tenant's production key, is refused: only what the SDK or this tenant signed can become this
tenant's production image. Signing is deterministic (RFC 6979), so uploading the same package
again yields the same bytes, and the same image ID with other bytes is a conflict.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Annotated, Any, BinaryIO, Final

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from opensphere.api import schemas
from opensphere.api.schemas import Role
from opensphere.formats.image_package import (
    MAX_PACKAGE_SIZE,
    ImagePackage,
    ImagePackageError,
    ImageType,
    KeySigner,
    PackageSignatureError,
    UntrustedSignerError,
    key_thumbprint,
    resign_package,
    verify_package,
)
from opensphere.service.deps import Bearer, Context, request_context
from opensphere.service.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from opensphere.service.keystore import KeyStore
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import Image
from opensphere.service.tenants import Continuation, Limit, TenantId
from opensphere.service.updates.blobs import BlobStore

router = APIRouter(prefix="/v1/tenants/{tenant_id}/images", tags=["images"])

MAX_IMAGE_SIZE: Final = MAX_PACKAGE_SIZE
TENANT_IMAGE_TYPES: Final = frozenset({ImageType.Applications, ImageType.CustomerBoardConfig})
PACKAGE_MEDIA_TYPE: Final = "application/octet-stream"
_SPOOL_IN_MEMORY: Final = 1 << 20
_CHUNK: Final = 1 << 16

ImagePathId = Annotated[uuid.UUID, Path(description="the image ID from the package")]
BINARY_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {PACKAGE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def image_signing_key_id(tenant_id: uuid.UUID) -> str:
    return f"image-signing-{tenant_id.hex}"


def tenant_image_signer(keys: KeyStore, tenant_id: uuid.UUID) -> KeySigner:
    """The tenant's production image-signing key, created on first use."""
    return KeySigner(keys.load_or_create(image_signing_key_id(tenant_id)))


def image_out(row: Image) -> schemas.Image:
    return schemas.Image(
        image_id=row.image_id,
        tenant_id=row.tenant_id,
        component_id=row.component_id,
        image_type=row.image_type,
        name=row.name,
        version=row.version,
        security_version=row.security_version,
        temporary=row.temporary,
        sha256=row.sha256,
        length=row.length,
        signer_thumbprint=row.signer_thumbprint,
        uploaded_by=row.uploaded_by_name,
        uploaded_at=row.uploaded_at,
    )


async def spool_body(request: Request, limit: int) -> IO[bytes]:
    """The request body in a temporary file; refused as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the package is over the {limit}-byte limit")
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"the package is over the {limit}-byte limit")
            spooled.write(chunk)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled


def verify_upload(data: bytes, trusted: KeySigner) -> ImagePackage:
    """The package if the SDK test key or the tenant's own key signed it; refusals say why."""
    public_key = trusted.public_key()
    try:
        return verify_package(
            data, {key_thumbprint(public_key): public_key}, allow_test_signed=True
        )
    except PackageSignatureError as exc:
        raise InvalidRequestError(
            f"the package signature does not verify: {exc}", code="bad_signature"
        ) from exc
    except UntrustedSignerError as exc:
        raise InvalidRequestError(
            "the package is signed by a key this tenant does not own: sign it with the SDK "
            "test key and let the service production-sign it",
            code="untrusted_signer",
        ) from exc
    except ImagePackageError as exc:
        raise InvalidRequestError(
            f"not a valid image package: {exc}", code="invalid_image_package"
        ) from exc


def _authorize(
    request: Request, tenant_id: uuid.UUID, credentials: HTTPAuthorizationCredentials | None
) -> None:
    """Refuse an unauthorized caller before a byte of the upload is read."""
    with request.app.state.storage.read_session() as session:
        request_context(request, session, credentials).authorize(tenant_id, Role.CONTRIBUTOR)
    request.state.context = None


def _store(
    request: Request,
    tenant_id: uuid.UUID,
    credentials: HTTPAuthorizationCredentials | None,
    spooled: IO[bytes],
) -> tuple[schemas.Image, bool]:
    state = request.app.state
    blobs: BlobStore = state.blobs
    with state.storage.write_session() as session:
        context = request_context(request, session, credentials)
        with context.change(
            "image.upload", tenant_id=tenant_id, required=Role.CONTRIBUTOR, target_type="image"
        ) as change:
            signer = tenant_image_signer(state.keys, tenant_id)
            data = spooled.read()
            package = verify_upload(data, signer)
            identity = package.metadata.identity
            change.target_id = str(identity.image_id)
            if identity.image_type not in TENANT_IMAGE_TYPES:
                raise InvalidRequestError(
                    f"a tenant may upload applications and board configurations, not "
                    f"{identity.image_type.name} images",
                    code="image_type_not_allowed",
                )
            signed = resign_package(data, signer)
            sha256 = hashlib.sha256(signed).hexdigest()
            existing = session.scalar(
                select(Image).where(
                    Image.tenant_id == tenant_id, Image.image_id == identity.image_id
                )
            )
            if existing is not None:
                if existing.sha256 != sha256:
                    raise ConflictError(
                        f"image {identity.image_id} is already uploaded with other content; "
                        "images are immutable: build a new image ID",
                        code="image_exists",
                    )
                change.details = {"unchanged": True}
                return image_out(existing), False
            blobs.put(sha256, io.BytesIO(signed))
            row = Image(
                tenant_id=tenant_id,
                image_id=identity.image_id,
                component_id=identity.component_id,
                image_type=identity.image_type.name,
                name=package.metadata.name,
                version=package.metadata.version,
                security_version=package.metadata.security_version,
                temporary=package.metadata.temporary,
                sha256=sha256,
                length=len(signed),
                signer_thumbprint=key_thumbprint(signer.public_key()).hex(),
                uploaded_by=context.principal.user_id,
                uploaded_by_name=context.principal.user_name,
                uploaded_at=context.now,
            )
            session.add(row)
            session.flush()
            change.details = {
                "component_id": str(identity.component_id),
                "image_type": identity.image_type.name,
                "sha256": sha256,
                "test_signed": package.is_test_signed,
            }
    return image_out(row), True


@router.post(
    "",
    status_code=201,
    response_model=schemas.Image,
    openapi_extra=BINARY_BODY,
    responses={200: {"model": schemas.Image, "description": "the same package again"}},
)
async def upload_image(tenant_id: TenantId, request: Request, credentials: Bearer) -> JSONResponse:
    """Upload an image package (Contributor): validated, production-signed and stored.

    Up to 64 MiB, as `application/octet-stream`. The same package again answers 200 with the
    stored image; the same image ID with other content is a conflict.
    """
    await run_in_threadpool(_authorize, request, tenant_id, credentials)
    spooled = await spool_body(request, MAX_IMAGE_SIZE)
    try:
        image, created = await run_in_threadpool(_store, request, tenant_id, credentials, spooled)
    finally:
        spooled.close()
    return JSONResponse(image.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("")
def list_images(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> schemas.Page[schemas.Image]:
    """The tenant's images, oldest upload first."""
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    query = select(Image).where(Image.tenant_id == tenant_id)
    if after is not None:
        query = query.where(Image.id > after)
    rows = context.session.scalars(query.order_by(Image.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda row: row.id, out=image_out)


def get_image(context: Context, tenant_id: uuid.UUID, image_id: uuid.UUID) -> Image:
    row = context.session.scalar(
        select(Image).where(Image.tenant_id == tenant_id, Image.image_id == image_id)
    )
    if row is None:
        raise NotFoundError(f"there is no image {image_id} in this tenant", code="image_not_found")
    return row


@router.get("/{image_id}")
def show_image(tenant_id: TenantId, image_id: ImagePathId, context: Context) -> schemas.Image:
    context.authorize(tenant_id, Role.READER)
    return image_out(get_image(context, tenant_id, image_id))


def stream_blob(blob: BinaryIO) -> Iterator[bytes]:
    with blob:
        while chunk := blob.read(_CHUNK):
            yield chunk


@router.get(
    "/{image_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {PACKAGE_MEDIA_TYPE: {}}, "description": "the stored package"}},
)
def download_image(
    tenant_id: TenantId, image_id: ImagePathId, context: Context, request: Request
) -> StreamingResponse:
    """The production-signed package, as devices get it."""
    context.authorize(tenant_id, Role.READER)
    row = get_image(context, tenant_id, image_id)
    blobs: BlobStore = request.app.state.blobs
    return StreamingResponse(
        stream_blob(blobs.open(row.sha256)),
        media_type=PACKAGE_MEDIA_TYPE,
        headers={
            "Content-Length": str(row.length),
            "Content-Disposition": f'attachment; filename="{image_id}.imagepackage"',
        },
    )
