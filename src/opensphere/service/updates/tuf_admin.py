"""Administering a tenant's TUF repository: root rotation to offline keys, and static export.

Root rotation never sends a private key to the service. `sphere tuf root rotate` fetches the
current root, drafts root N+1 with the new root keys (`draft_root_rotation`), signs it with the
key files it was given (the new keys, and the current ones if they are offline), and posts it
here; the service adds the current root key's signature if it holds one, and publishes the root
only if a client would accept it (`append_root`). From then on the service holds no root key.

The state endpoint gives everything `opensphere.updates.static.export_static` needs to lay the
repository out as plain files for a CDN or any static server (`sphere tuf export`), and the blob
endpoint the images it lists.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root

from opensphere.api import schemas
from opensphere.api.schemas import Role
from opensphere.service.deps import Context
from opensphere.service.errors import InvalidRequestError, NotFoundError
from opensphere.service.storage.models import Image, OsReleaseImage
from opensphere.service.tenants import TenantId
from opensphere.service.updates.blobs import BlobStore
from opensphere.service.updates.images import PACKAGE_MEDIA_TYPE, stream_blob
from opensphere.service.updates.tuf_store import (
    LockedRepository,
    lock_repository,
    save,
    signer_for,
)
from opensphere.updates.repository import RepositoryState, append_root, refresh_expiring

router = APIRouter(prefix="/v1/tenants/{tenant_id}/tuf", tags=["tuf"])

Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the blob's SHA-256")]


def _root_out(locked: LockedRepository) -> schemas.TufRoot:
    root = Metadata[Root].from_bytes(locked.state.roots[-1]).signed
    return schemas.TufRoot(
        version=root.version,
        expires=root.expires,
        root=locked.state.roots[-1].decode(),
        service_signs_root=bool(locked.row.root_key_ids),
    )


def _current(context: Context, request: Request, tenant_id: uuid.UUID) -> LockedRepository:
    """The repository, created on first use and refreshed when a role nears expiry."""
    keys = request.app.state.keys
    storage = request.app.state.storage
    with storage.write_session() as session:
        locked = lock_repository(session, keys, tenant_id, context.now)
        if context.now >= locked.row.refresh_due_at:
            refreshed = refresh_expiring(locked.state, online=locked.online, now=context.now)
            save(session, locked, refreshed, context.now)
        session.commit()
    request.app.state.tuf.invalidate(tenant_id)
    return locked


@router.get("/root")
def show_tuf_root(tenant_id: TenantId, context: Context, request: Request) -> schemas.TufRoot:
    """The tenant's current TUF root: what devices trust, and what a rotation starts from."""
    context.authorize(tenant_id, Role.READER)
    return _root_out(_current(context, request, tenant_id))


@router.post("/root")
def rotate_tuf_root(
    tenant_id: TenantId, body: schemas.TufRootRotation, context: Context, request: Request
) -> schemas.TufRoot:
    """Publish root N+1 signed by its new keys (Administrator); see the module docstring."""
    keys = request.app.state.keys
    with context.change(
        "tuf.root_rotate", tenant_id=tenant_id, required=Role.ADMINISTRATOR, target_type="tuf_root"
    ) as change:
        locked = lock_repository(context.session, keys, tenant_id, context.now)
        try:
            proposed = Metadata[Root].from_bytes(body.root.encode())
        except (RepositoryError, ValueError, TypeError, KeyError) as exc:
            raise InvalidRequestError(f"not TUF root metadata: {exc}", code="invalid_root") from exc
        for key_id in locked.row.root_key_ids:
            proposed.sign(signer_for(keys.load(key_id)), append=True)
        try:
            state: RepositoryState = append_root(locked.state, proposed.to_bytes())
        except ValueError as exc:
            raise InvalidRequestError(str(exc), code="root_rejected") from exc
        still_trusted = set(Metadata[Root].from_bytes(state.roots[-1]).signed.roles["root"].keyids)
        locked.row.root_key_ids = [
            key_id
            for key_id in locked.row.root_key_ids
            if signer_for(keys.load(key_id)).public_key.keyid in still_trusted
        ]
        save(context.session, locked, state, context.now)
        change.target_id = str(proposed.signed.version)
        change.details = {"root_keys": sorted(still_trusted)}
    request.app.state.tuf.invalidate(tenant_id)
    return _root_out(locked)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@router.get("/state")
def show_tuf_state(tenant_id: TenantId, context: Context, request: Request) -> schemas.TufState:
    """All current metadata (base64), to export the repository as static files."""
    context.authorize(tenant_id, Role.READER)
    state = _current(context, request, tenant_id).state
    return schemas.TufState(
        roots=[_b64(root) for root in state.roots],
        targets=_b64(state.targets),
        snapshot=_b64(state.snapshot),
        timestamp=_b64(state.timestamp),
        delegated={role: _b64(data) for role, data in state.delegated.items()},
        manifests={role: _b64(data) for role, data in state.manifests.items()},
    )


@router.get(
    "/blobs/{sha256}",
    response_class=StreamingResponse,
    responses={200: {"content": {PACKAGE_MEDIA_TYPE: {}}, "description": "the image"}},
)
def download_tuf_blob(
    tenant_id: TenantId, sha256: Sha256Path, context: Context, request: Request
) -> StreamingResponse:
    """An image the tenant's repository lists (its own, or an OS image), by SHA-256."""
    context.authorize(tenant_id, Role.READER)
    owned = context.session.scalar(
        select(Image.id).where(Image.tenant_id == tenant_id, Image.sha256 == sha256).limit(1)
    ) or context.session.scalar(
        select(OsReleaseImage.image_id).where(OsReleaseImage.sha256 == sha256).limit(1)
    )
    if owned is None:
        raise NotFoundError(f"there is no image {sha256} for this tenant", code="image_not_found")
    blobs: BlobStore = request.app.state.blobs
    return StreamingResponse(stream_blob(blobs.open(sha256)), media_type=PACKAGE_MEDIA_TYPE)
