"""A tenant's TUF repository in the database, signed with keys from the key store.

The pure core (`opensphere.updates.repository`) turns one `RepositoryState` into the next; this
shell loads the state, locks it, and saves what the core returned. Files are append-only rows of
`tuf_files` under the names clients fetch (`N.root.json`, `V.snapshot.json`, `V.<role>.json`,
and `V.timestamp.json`, served as `timestamp.json`), so an older version stays available to a
client mid-update; `tuf_repositories.head` names the current ones, and its `generation` grows
with every change, so caches compare one number.

Keys: the online ones (targets, snapshot, timestamp, and the delegations that sign the group
roles) live in the key store under `tuf-<tenant>-<role>`, so the service re-signs on its own.
The first root key is generated there too, so a repository works from its first use; an
administrator then moves root to offline keys with `sphere tuf root rotate`, after which the
service holds no root key (`root_key_ids` is empty) and only key holders can change root.

Publishes of one tenant are serialized: the repository row is read `FOR UPDATE` on PostgreSQL,
and every writing session on SQLite holds the database's write lock (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, SSlibKey
from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Snapshot, Targets, Timestamp

from opensphere.service.keystore import KeyStore
from opensphere.service.storage.models import TufFile, TufRepository
from opensphere.updates.repository import (
    DEFAULT_POLICY,
    OnlineSigners,
    RepositoryState,
    RootSigners,
    initial_repository,
)
from opensphere.updates.static import metadata_files, target_blobs

ONLINE_ROLES: Final = ("targets", "snapshot", "timestamp", "delegations")
TIMESTAMP_NAME: Final = "timestamp.json"


def online_key_id(tenant_id: uuid.UUID, role: str) -> str:
    return f"tuf-{tenant_id.hex}-{role}"


def root_key_id(tenant_id: uuid.UUID) -> str:
    return f"tuf-{tenant_id.hex}-root"


def signer_for(key: ec.EllipticCurvePrivateKey) -> CryptoSigner:
    """A securesystemslib signer over a key store key (ECDSA P-256, SHA-256)."""
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def online_signers(keys: KeyStore, tenant_id: uuid.UUID) -> OnlineSigners:
    targets, snapshot, timestamp, delegations = (
        signer_for(keys.load_or_create(online_key_id(tenant_id, role))) for role in ONLINE_ROLES
    )
    return OnlineSigners(
        targets=targets, snapshot=snapshot, timestamp=timestamp, delegations=delegations
    )


@dataclass
class LockedRepository:
    """A tenant's repository inside a writing transaction: change `state`, then `save`."""

    row: TufRepository
    state: RepositoryState
    online: OnlineSigners


def lock_repository(
    session: Session, keys: KeyStore, tenant_id: uuid.UUID, now: dt.datetime
) -> LockedRepository:
    """The tenant's repository, locked until the transaction ends; created on first use."""
    online = online_signers(keys, tenant_id)
    row = session.scalar(
        select(TufRepository).where(TufRepository.tenant_id == tenant_id).with_for_update()
    )
    if row is not None:
        return LockedRepository(row, load_state(session, row), online)
    root_id = root_key_id(tenant_id)
    root = RootSigners((signer_for(keys.load_or_create(root_id)),), threshold=1)
    state = initial_repository(root=root, online=online, now=now)
    row = TufRepository(
        tenant_id=tenant_id,
        head={},
        root_key_ids=[root_id],
        generation=0,
        refresh_due_at=now,
        updated_at=now,
    )
    session.add(row)
    locked = LockedRepository(row, state, online)
    save(session, locked, state, now)
    return locked


def load_state(session: Session, row: TufRepository) -> RepositoryState:
    head = row.head
    names = [*head["roots"], head["targets"], head["snapshot"], head["timestamp"]]
    names += [*head["delegated"].values(), *head["manifests"].values()]
    files: dict[str, bytes] = {
        name: data
        for name, data in session.execute(
            select(TufFile.name, TufFile.data).where(
                TufFile.tenant_id == row.tenant_id, TufFile.name.in_(names)
            )
        )
    }
    return RepositoryState(
        roots=tuple(files[name] for name in head["roots"]),
        targets=files[head["targets"]],
        snapshot=files[head["snapshot"]],
        timestamp=files[head["timestamp"]],
        delegated={role: files[name] for role, name in head["delegated"].items()},
        manifests={role: files[name] for role, name in head["manifests"].items()},
    )


def save(
    session: Session, locked: LockedRepository, state: RepositoryState, now: dt.datetime
) -> None:
    """Store the files `state` adds and point the head at them (no-op if nothing changed)."""
    if state is locked.state and locked.row.head:
        return
    files = metadata_files(state)
    timestamp = files.pop(TIMESTAMP_NAME)
    timestamp_name = f"{state.version(Timestamp.type)}.{TIMESTAMP_NAME}"
    files[timestamp_name] = timestamp
    manifests: dict[str, str] = {}
    for blob in target_blobs(state):
        if blob.content is not None:
            name = f"targets/{blob.url_path}"
            files[name] = blob.content
            manifests[blob.url_path.split("/")[1]] = name
    tenant_id = locked.row.tenant_id
    present = set(
        session.scalars(
            select(TufFile.name).where(TufFile.tenant_id == tenant_id, TufFile.name.in_(files))
        )
    )
    session.add_all(
        TufFile(tenant_id=tenant_id, name=name, data=data, created_at=now)
        for name, data in files.items()
        if name not in present
    )
    delegated = {role: f"{state.version(role)}.{role}.json" for role in sorted(state.delegated)}
    head: dict[str, Any] = {
        "roots": [f"{version}.root.json" for version in range(1, len(state.roots) + 1)],
        "targets": f"{state.version(Targets.type)}.targets.json",
        "snapshot": f"{state.version(Snapshot.type)}.snapshot.json",
        "timestamp": timestamp_name,
        "delegated": delegated,
        "manifests": {
            role: manifests[_channel_id(role)]
            for role in delegated
            if _channel_id(role) in manifests
        },
    }
    locked.row.head = head
    locked.row.generation += 1
    locked.row.refresh_due_at = refresh_due_at(state)
    locked.row.updated_at = now
    locked.state = state
    session.flush()


def refresh_due_at(state: RepositoryState) -> dt.datetime:
    """When `refresh_expiring` first has work: the earliest role entering its margin."""
    policy = DEFAULT_POLICY
    moments = [
        state.expires(Timestamp.type) - policy.timestamp_margin,
        state.expires(Snapshot.type) - policy.snapshot_margin,
        state.expires(Targets.type) - policy.targets_margin,
        *(state.expires(role) - policy.targets_margin for role in state.delegated),
    ]
    return min(moments)


def _channel_id(role: str) -> str:
    """`group-<uuid>` → `<uuid>`, the folder its targets and manifest live in."""
    return role.split("-", 1)[1]
