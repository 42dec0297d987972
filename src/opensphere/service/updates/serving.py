"""Serving the tenants' TUF repositories to devices: the update-check hot path, and trust.

`GET /v1/device/tuf/{tenant}/metadata/{name}` and `/targets/{path}` are what python-tuf's
ngclient fetches (consistent snapshots, see `opensphere.updates.static`). Every device checks
for updates regularly and almost always finds nothing new, so the check is cheap: `TufServer`
answers them in front of FastAPI's whole stack (a `ServiceApp` front route; under `sphere
server` the HTTP server answers from `cached_answer` first, `service.fast_lane`), verifies the
device credential once per credential (its claims are cached until it expires) and the
device's registry entry at most once a second per process (this process forgets it at once
when it changes it, so a disabled device is refused within a second anywhere), and answers from
an in-process cache of the latest metadata bytes per tenant. Versioned names never change, so
they are cached for good and sent with `immutable`; `timestamp.json` is re-read from the
database at most once a second per process (`HEAD_TTL`), carries an ETag, and answers 304 to
`If-None-Match`.

A read also keeps the repository fresh: when the earliest online role enters its re-signing
margin (`refresh_due_at`), the read re-signs it (`refresh_expiring`) before answering.

`GET /v1/device/trust` gives a device what it installs to trust its tenant's updates: the
tenant's image-signing key (for apps) and the latest TUF root, plus where to fetch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, cast

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Table, bindparam, exists, select, union_all
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from opensphere.api import schemas
from opensphere.formats.image_package import key_thumbprint
from opensphere.service.clock import Clock
from opensphere.service.device_auth import (
    CredentialError,
    DeviceCaller,
    DeviceCredential,
    DeviceCredentials,
    refuse_device,
)
from opensphere.service.errors import NotFoundError
from opensphere.service.keystore import KeyStore
from opensphere.service.storage.db import Storage
from opensphere.service.storage.models import (
    Device,
    DeviceGroup,
    Image,
    OsReleaseImage,
    TufFile,
    TufRepository,
)
from opensphere.service.updates.blobs import BlobStore
from opensphere.service.updates.images import PACKAGE_MEDIA_TYPE, tenant_image_signer
from opensphere.service.updates.publishing import publish_groups
from opensphere.service.updates.tuf_store import TIMESTAMP_NAME, lock_repository, save
from opensphere.updates.repository import MANIFEST_NAME, Channel, refresh_expiring

router = APIRouter(prefix="/v1/device", tags=["device"])

TUF_PREFIX: Final = "/v1/device/tuf/"
_TIMESTAMP_SUFFIX: Final = f"/metadata/{TIMESTAMP_NAME}".encode()
HEAD_TTL: Final = 1.0
IMMUTABLE: Final = "private, max-age=31536000, immutable"
SHORT_LIVED: Final = "private, max-age=60"
_JSON: Final = "application/json"
_CHUNK: Final = 1 << 16
_MAX_CREDENTIALS: Final = 65_536
_MAX_FILES: Final = 4096
_SCHEME: Final = b"device "
_RANGE: Final = re.compile(r"bytes=(\d+)-")
_TARGET: Final = re.compile(r"[a-z]+/[A-Za-z0-9-]+/([0-9a-f]{64})\.[A-Za-z0-9._-]+")

_DEVICES = cast(Table, Device.__table__)
_REPOSITORIES = cast(Table, TufRepository.__table__)
_FILES = cast(Table, TufFile.__table__)
_IMAGES = cast(Table, Image.__table__)
_OS_IMAGES = cast(Table, OsReleaseImage.__table__)
# Built once: building a statement costs more than running it.
_REGISTRY = select(_DEVICES.c.tenant_id, _DEVICES.c.enabled).where(
    _DEVICES.c.device_id == bindparam("p_device_id")
)
_HEAD = select(
    _REPOSITORIES.c.generation, _REPOSITORIES.c.head, _REPOSITORIES.c.refresh_due_at
).where(_REPOSITORIES.c.tenant_id == bindparam("p_tenant_id"))
_FILE = select(_FILES.c.data).where(
    _FILES.c.tenant_id == bindparam("p_tenant_id"), _FILES.c.name == bindparam("p_name")
)
_BLOB_OWNED = select(
    exists(
        union_all(
            select(_IMAGES.c.id).where(
                _IMAGES.c.tenant_id == bindparam("p_tenant_id"),
                _IMAGES.c.sha256 == bindparam("p_sha256"),
            ),
            select(_OS_IMAGES.c.image_id).where(_OS_IMAGES.c.sha256 == bindparam("p_sha256")),
        )
    )
)


@dataclass(frozen=True, slots=True)
class _Head:
    generation: int
    timestamp: bytes
    etag: bytes
    refresh_due_at: dt.datetime
    checked_at: float
    changed: list[tuple[bytes, bytes]]  # header lines of the 200, encoded once per head
    unchanged: list[tuple[bytes, bytes]]  # and of the 304
    changed_block: bytes  # the same lines as they go on the wire, for `cached_answer`
    unchanged_block: bytes


def _new_head(generation: int, timestamp: bytes, refresh_due_at: dt.datetime) -> _Head:
    etag = f'"{hashlib.sha256(timestamp).hexdigest()[:32]}"'.encode()
    unchanged = [(b"etag", etag), (b"cache-control", SHORT_LIVED.encode())]
    changed = [
        (b"content-length", str(len(timestamp)).encode()),
        (b"content-type", _JSON.encode()),
        *unchanged,
    ]
    return _Head(
        generation,
        timestamp,
        etag,
        refresh_due_at,
        time.monotonic(),
        changed,
        unchanged,
        _header_block(changed),
        _header_block(unchanged),
    )


def _header_block(lines: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in lines)


class _Prepared(Response):
    """A response whose header lines were encoded once, not on every request.

    `Response.__init__` would encode the same few headers again for every update check;
    this sets what `Response.__call__` sends and copies the lines, so the caller may add one.
    """

    def __init__(self, status_code: int, body: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = list(raw_headers)


class TufServer:
    """Answers devices' TUF requests from the latest metadata per tenant in this process.

    Other processes' changes show within `HEAD_TTL`, this process's at once (`invalidate`,
    `forget_device`). It holds what the hot path needs (storage, keys, clock, the credential
    key) itself: each look-up in Starlette's `app.state` is a Python `__getattr__`.
    """

    def __init__(
        self,
        *,
        storage: Storage,
        keys: KeyStore,
        blobs: BlobStore,
        clock: Clock,
        credentials: DeviceCredentials,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.blobs = blobs
        self.clock = clock
        self.credentials = credentials
        self._heads: dict[uuid.UUID, _Head] = {}
        self._files: OrderedDict[tuple[uuid.UUID, str], bytes] = OrderedDict()
        self._credentials: dict[bytes, DeviceCredential] = {}
        self._registry: dict[str, tuple[uuid.UUID, bool, float]] = {}
        self._tenant_ids: dict[str, uuid.UUID] = {}

    def invalidate(self, tenant_id: uuid.UUID) -> None:
        self._heads.pop(tenant_id, None)

    def forget_device(self, device_id: str) -> None:
        """The device's registration changed (disabled, moved): read it again next time."""
        self._registry.pop(device_id, None)

    async def serve(self, request: Request) -> Response:
        """`{TUF_PREFIX}{tenant}/metadata/{name}` and `{TUF_PREFIX}{tenant}/targets/{path}`."""
        scope = request.scope
        tenant_text, _, rest = scope["path"][len(TUF_PREFIX) :].partition("/")
        kind, _, name = rest.partition("/")
        tenant_id = self._tenant_id(tenant_text)
        if tenant_id is None:
            raise _not_found("such tenant")
        now = self.clock.now()
        if self._device_tenant(scope, now) != tenant_id:
            refuse_device(scope["state"]["request_id"], f"the device is not in tenant {tenant_id}")
        if kind == "metadata" and name == TIMESTAMP_NAME:
            return await self._timestamp(scope, tenant_id, now)
        if kind == "metadata":
            data = self._file(tenant_id, name)
            if data is None:
                raise _not_found(f"metadata file {name!r}")
            return Response(data, media_type=_JSON, headers={"Cache-Control": IMMUTABLE})
        if kind == "targets" and name.endswith("." + MANIFEST_NAME):
            data = self._file(tenant_id, f"targets/{name}")
            if data is None:
                raise _not_found(f"target {name!r}")
            return Response(data, media_type=_JSON, headers={"Cache-Control": IMMUTABLE})
        if kind == "targets":
            return self._target(tenant_id, name, _header(scope, b"range").decode("latin-1"))
        raise _not_found(f"{kind!r}")

    def cached_answer(
        self, target: bytes, fields: Mapping[bytes, bytes]
    ) -> tuple[int, bytes, bytes] | None:
        """(status, header lines, body) of a `timestamp.json` check that this process's caches
        answer alone, else `None`.

        The HTTP server asks this before any ASGI work (`opensphere.service.fast_lane`). It
        answers only what `serve` would answer the same way from the same caches: a credential
        already verified and not expired, a registry entry and a head younger than `HEAD_TTL`,
        no re-signing due. Anything else (first sight, a refusal, a query string) goes the ASGI
        way, which fills the caches or explains the refusal.
        """
        if not target.endswith(_TIMESTAMP_SUFFIX):
            return None
        tenant_id = self._tenant_ids.get(
            target[len(TUF_PREFIX) : -len(_TIMESTAMP_SUFFIX)].decode("latin-1")
        )
        head = None if tenant_id is None else self._heads.get(tenant_id)
        if head is None:
            return None
        checked = time.monotonic()
        authorization = fields.get(b"authorization")
        claims = None if authorization is None else self._credentials.get(authorization)
        registered = None if claims is None else self._registry.get(claims.device_id)
        if (
            claims is None
            or registered is None
            or claims.tenant_id != tenant_id
            or registered[0] != tenant_id
            or not registered[1]
            or checked - registered[2] >= HEAD_TTL
            or checked - head.checked_at >= HEAD_TTL
        ):
            return None
        now = self.clock.now()
        if claims.expires_at <= now or now >= head.refresh_due_at:
            return None
        if fields.get(b"if-none-match") == head.etag:
            return 304, head.unchanged_block, b""
        return 200, head.changed_block, head.timestamp

    def _tenant_id(self, text: str) -> uuid.UUID | None:
        """The tenant ID in a request path (parsing a UUID costs more than the dict)."""
        tenant_id = self._tenant_ids.get(text)
        if tenant_id is None:
            try:
                tenant_id = uuid.UUID(text)
            except ValueError:
                return None
            if len(self._tenant_ids) >= _MAX_CREDENTIALS:
                self._tenant_ids.clear()
            self._tenant_ids[text] = tenant_id
        return tenant_id

    def _device_tenant(self, scope: Scope, now: dt.datetime) -> uuid.UUID:
        """The calling device's tenant, if its credential is good and the device is enabled."""
        try:
            claims = self._credential(_header(scope, b"authorization"), now)
        except CredentialError as exc:
            refuse_device(scope["state"]["request_id"], f"bad device credential: {exc}")
        registered = self._registration(claims.device_id)
        if registered is None or registered[0] != claims.tenant_id:
            refuse_device(
                scope["state"]["request_id"], f"device {claims.device_id[:16]}… is not claimed"
            )
        if not registered[1]:
            refuse_device(
                scope["state"]["request_id"], f"device {claims.device_id[:16]}… is disabled"
            )
        return claims.tenant_id

    def _credential(self, header: bytes, now: dt.datetime) -> DeviceCredential:
        """The claims of an `Authorization` header's credential; its signature is checked on
        first sight only. Raises `CredentialError`."""
        claims = self._credentials.get(header)
        if claims is None:
            if header[: len(_SCHEME)].lower() != _SCHEME:
                raise CredentialError("no 'Authorization: Device <credential>' header")
            presented = header[len(_SCHEME) :].decode("latin-1").strip()
            claims = self.credentials.verify(presented, now=now)
            if len(self._credentials) >= _MAX_CREDENTIALS:
                self._credentials.clear()
            self._credentials[header] = claims
        elif claims.expires_at <= now:
            del self._credentials[header]
            raise CredentialError(f"the credential expired at {claims.expires_at}")
        return claims

    def _registration(self, device_id: str) -> tuple[uuid.UUID, bool] | None:
        """(tenant, enabled) of a claimed device, re-read at most every `HEAD_TTL`."""
        cached = self._registry.get(device_id)
        if cached is not None and time.monotonic() - cached[2] < HEAD_TTL:
            return cached[0], cached[1]
        with self.storage.engine.connect() as connection:
            row = connection.execute(_REGISTRY, {"p_device_id": device_id}).first()
        if row is None:
            return None
        if len(self._registry) >= _MAX_CREDENTIALS:
            self._registry.clear()
        self._registry[device_id] = (row.tenant_id, row.enabled, time.monotonic())
        return row.tenant_id, row.enabled

    async def _timestamp(self, scope: Scope, tenant_id: uuid.UUID, now: dt.datetime) -> Response:
        head = self._head(tenant_id)
        if head is None:
            raise _not_found("repository for this tenant yet; ask /v1/device/trust first")
        if now >= head.refresh_due_at:
            await run_in_threadpool(self._refresh, tenant_id, now)
            head = self._head(tenant_id)
            assert head is not None
        if _header(scope, b"if-none-match") == head.etag:
            return _Prepared(304, b"", head.unchanged)
        return _Prepared(200, head.timestamp, head.changed)

    def _head(self, tenant_id: uuid.UUID) -> _Head | None:
        cached = self._heads.get(tenant_id)
        if cached is not None and time.monotonic() - cached.checked_at < HEAD_TTL:
            return cached
        with self.storage.engine.connect() as connection:
            row = connection.execute(_HEAD, {"p_tenant_id": tenant_id}).first()
            if row is None:
                return None
            if cached is not None and cached.generation == row.generation:
                timestamp = cached.timestamp
            else:
                timestamp = connection.execute(
                    _FILE, {"p_tenant_id": tenant_id, "p_name": row.head["timestamp"]}
                ).scalar_one()
        head = _new_head(row.generation, timestamp, row.refresh_due_at)
        self._heads[tenant_id] = head
        return head

    def _refresh(self, tenant_id: uuid.UUID, now: dt.datetime) -> None:
        """Re-sign whatever nears expiry (in its own write transaction), forget the head."""
        with self.storage.write_session() as session:
            locked = lock_repository(session, self.keys, tenant_id, now)
            save(
                session, locked, refresh_expiring(locked.state, online=locked.online, now=now), now
            )
            session.commit()
        self.invalidate(tenant_id)

    def _file(self, tenant_id: uuid.UUID, name: str) -> bytes | None:
        """An immutable file (versioned metadata or a manifest), cached once read."""
        key = (tenant_id, name)
        data = self._files.get(key)
        if data is not None:
            self._files.move_to_end(key)
            return data
        with self.storage.engine.connect() as connection:
            data = connection.execute(_FILE, {"p_tenant_id": tenant_id, "p_name": name}).scalar()
        if data is not None:
            self._files[key] = data
            if len(self._files) > _MAX_FILES:
                self._files.popitem(last=False)
        return data

    def _target(self, tenant_id: uuid.UUID, path: str, range_header: str) -> Response:
        """An image, by the hash in its name, if it is this tenant's or an OS image."""
        match = _TARGET.fullmatch(path)
        if match is None:
            raise _not_found(f"target {path!r}")
        sha256 = match.group(1)
        with self.storage.engine.connect() as connection:
            owned = connection.execute(
                _BLOB_OWNED, {"p_tenant_id": tenant_id, "p_sha256": sha256}
            ).scalar()
        if not owned:
            raise _not_found(f"target {path!r}")
        blob = self.blobs.open(sha256)
        length = blob.seek(0, 2)
        start = 0
        wanted = _RANGE.fullmatch(range_header)
        if wanted is not None and int(wanted.group(1)) < length:
            start = int(wanted.group(1))
        blob.seek(start)
        headers = {"Cache-Control": IMMUTABLE, "Content-Length": str(length - start)}
        headers["Accept-Ranges"] = "bytes"
        if start:
            headers["Content-Range"] = f"bytes {start}-{length - 1}/{length}"
        return StreamingResponse(
            _chunks(blob),
            status_code=206 if start else 200,
            media_type=PACKAGE_MEDIA_TYPE,
            headers=headers,
        )


def _not_found(what: str) -> NotFoundError:
    return NotFoundError(f"there is no {what} in this repository", code="not_found")


def _header(scope: Scope, name: bytes) -> bytes:
    """The first value of a request header (names arrive lower-case in ASGI)."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return b""


def _chunks(blob: BinaryIO) -> Iterator[bytes]:
    with blob:
        while chunk := blob.read(_CHUNK):
            yield chunk


_METADATA_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {_JSON: {}}, "description": "signed TUF metadata"},
    304: {"description": "timestamp.json has not changed (If-None-Match)"},
}


@router.get("/tuf/{tenant_id}/metadata/{name}", response_class=Response, responses=_METADATA_DOC)
async def tuf_metadata(tenant_id: uuid.UUID, name: str, request: Request) -> Response:
    """TUF metadata for the device's tenant (device credential); served on the hot path."""
    return await request.app.state.tuf.serve(request)  # type: ignore[no-any-return]


@router.get(
    "/tuf/{tenant_id}/targets/{target_path:path}",
    response_class=Response,
    responses={200: {"content": {PACKAGE_MEDIA_TYPE: {}}, "description": "a target file"}},
)
async def tuf_target(tenant_id: uuid.UUID, target_path: str, request: Request) -> Response:
    """A TUF target (image or manifest) named by its hash (device credential); hot path."""
    return await request.app.state.tuf.serve(request)  # type: ignore[no-any-return]


@router.get("/trust")
def device_trust(caller: DeviceCaller, request: Request) -> schemas.DeviceTrust:
    """What the device installs to trust its tenant's updates (device credential).

    The tenant's image-signing key goes into the device's trusted key store for apps; the TUF
    root is the device's trust anchor for update metadata (`opensphere.updates.client.
    init_trust`). The repository and the device's group role are created on first ask.
    """
    tenant_id = caller.device.tenant_id
    group_id = caller.device.device_group_id
    state = request.app.state
    signer = tenant_image_signer(state.keys, tenant_id)
    row = caller.session.get(TufRepository, tenant_id)
    channel = None if group_id is None else Channel.group(group_id)
    if row is None or (channel is not None and channel.role not in row.head["delegated"]):
        with state.storage.write_session() as session:
            locked = lock_repository(session, state.keys, tenant_id, caller.now)
            group = None if group_id is None else session.get(DeviceGroup, group_id)
            if (
                group is not None
                and channel is not None
                and channel.role not in locked.state.delegated
            ):
                publish_groups(session, state.keys, [group], caller.now)
            session.commit()
            latest_root = locked.state.roots[-1]
        state.tuf.invalidate(tenant_id)
    else:
        stored = caller.session.get(TufFile, (tenant_id, row.head["roots"][-1]))
        assert stored is not None
        latest_root = stored.data
    public_key = signer.public_key()
    return schemas.DeviceTrust(
        tenant_id=tenant_id,
        device_group_id=group_id,
        image_signing_keys=[
            schemas.TrustedSigningKey(
                name=f"tenant-{tenant_id}",
                thumbprint=key_thumbprint(public_key).hex(),
                public_key=public_key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ).decode(),
                usages=["app"],
            )
        ],
        tuf_root=latest_root.decode(),
        metadata_path=f"{TUF_PREFIX}{tenant_id}/metadata/",
        targets_path=f"{TUF_PREFIX}{tenant_id}/targets/",
        channel_prefix=None if channel is None else channel.prefix,
    )
