"""A tenant's TUF repository: build, re-sign and rotate its metadata.

A pure core in the python-tuf style: each function takes the current `RepositoryState` (signed
bytes), typed values, securesystemslib signers and a fixed `now`, and returns a new state, with
no I/O (`opensphere.updates.static` writes a state out as files). Metadata objects, canonical
JSON and signatures all come from `tuf.api.metadata`; a signer may be a key in memory, an HSM or
a cloud KMS, so the root keys can stay offline.

Delegation design (consistent snapshots, TUF specification §6.2):

    root ── targets ─┬─ group-<uuid>  signs groups/<uuid>/*   (one role per device group)
                     └─ feed-<name>   signs feeds/<name>/*     (one role per OS feed)

Every delegated role is signed by the online delegation key and lists its channel's image files
plus `manifest.json`, the names of those files: ngclient can look a target up but not list a role,
so the device reads the manifest to learn what is deployed. A deployment change re-signs one
delegated role, the snapshot and the timestamp; top-level targets changes only when a channel is
added or removed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar
from uuid import UUID

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from opensphere.updates.rollout import Rollout

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_FORMAT: Final = "opensphere-manifest/1"

_SERIALIZER: Final = JSONSerializer(compact=True)
_TOP_LEVEL_ONLINE: Final = (Targets.type, Snapshot.type, Timestamp.type)
_TARGET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FEED_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")

_Role = TypeVar("_Role", Root, Targets, Snapshot, Timestamp)


@dataclass(frozen=True)
class Channel:
    """One delegated role and the only target paths it may sign: a device group or an OS feed.

    Build it with `group` or `feed`, which keep role names and paths in the one shape the
    delegations, the client and the static layout agree on.
    """

    role: str
    prefix: str

    @classmethod
    def group(cls, group_id: UUID) -> Channel:
        return cls(f"group-{group_id}", f"groups/{group_id}/")

    @classmethod
    def feed(cls, name: str) -> Channel:
        if not _FEED_NAME.fullmatch(name):
            raise ValueError(f"feed name {name!r} must match {_FEED_NAME.pattern}")
        return cls(f"feed-{name}", f"feeds/{name}/")

    @property
    def manifest_path(self) -> str:
        return self.prefix + MANIFEST_NAME

    def target_path(self, name: str) -> str:
        return self.prefix + name


@dataclass(frozen=True)
class ImageTarget:
    """An image a device may fetch: TUF pins length and hash; `custom` says what the image is.

    `rollout` is set on a deployment's images (staged rollout, see `rollout`), not on OS images.
    """

    length: int
    sha256: str
    image_id: UUID
    component_id: UUID
    image_type: str
    security_version: int
    rollout: Rollout | None = None

    def __post_init__(self) -> None:
        if self.length < 0 or self.security_version < 0:
            raise ValueError("length and security version must not be negative")
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError("sha256 must be 64 lowercase hexadecimal digits")

    def custom(self) -> dict[str, Any]:
        custom: dict[str, Any] = {
            "image_id": str(self.image_id),
            "component_id": str(self.component_id),
            "image_type": self.image_type,
            "security_version": self.security_version,
        }
        if self.rollout is not None:
            custom["rollout"] = self.rollout.custom()
        return custom


@dataclass(frozen=True)
class OnlineSigners:
    """Keys the service holds, so a change or an expiry is re-signed without an operator."""

    targets: Signer
    snapshot: Signer
    timestamp: Signer
    delegations: Signer


@dataclass(frozen=True)
class RootSigners:
    """The root keys (offline: an HSM or an air-gapped machine) and how many must sign."""

    signers: tuple[Signer, ...]
    threshold: int

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= len({s.public_key.keyid for s in self.signers}):
            raise ValueError("root threshold must be between 1 and the number of distinct keys")


@dataclass(frozen=True)
class ExpiryPolicy:
    """Lifetimes, and how close to expiry an online role is re-signed by `refresh_expiring`.

    The timestamp is short-lived so a frozen mirror is noticed within a day; a job calling
    `refresh_expiring` about hourly keeps it fresh. Root is re-signed only offline, so its margin
    is only a warning (`needs_root_renewal`).
    """

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)
    root_margin: timedelta = timedelta(days=60)
    targets_margin: timedelta = timedelta(days=30)
    snapshot_margin: timedelta = timedelta(days=3)
    timestamp_margin: timedelta = timedelta(hours=6)


DEFAULT_POLICY: Final = ExpiryPolicy()


@dataclass(frozen=True)
class RepositoryState:
    """A repository's current signed metadata: the exact bytes clients download.

    `roots` holds every root version, oldest first, since a client walks the chain from whichever
    version it trusts; the other roles hold their current version. `manifests` holds the manifest
    file of each delegated role. Nothing here is secret.
    """

    roots: tuple[bytes, ...]
    targets: bytes
    snapshot: bytes
    timestamp: bytes
    delegated: Mapping[str, bytes] = field(default_factory=dict)
    manifests: Mapping[str, bytes] = field(default_factory=dict)

    def role_bytes(self, role: str) -> bytes:
        top = {
            Root.type: self.roots[-1],
            Targets.type: self.targets,
            Snapshot.type: self.snapshot,
            Timestamp.type: self.timestamp,
        }
        return top[role] if role in top else self.delegated[role]

    def signed(self, role: str) -> Signed:
        return Metadata.from_bytes(self.role_bytes(role)).signed

    def version(self, role: str) -> int:
        return self.signed(role).version

    def expires(self, role: str) -> datetime:
        return self.signed(role).expires


def initial_repository(
    *,
    root: RootSigners,
    online: OnlineSigners,
    now: datetime,
    policy: ExpiryPolicy = DEFAULT_POLICY,
) -> RepositoryState:
    """A new repository: root v1 (consistent snapshots), empty targets, snapshot and timestamp."""
    now = _utc(now)
    signed_root = Root(version=1, expires=now + policy.root, consistent_snapshot=True)
    _set_root_keys(signed_root, root)
    _set_online_keys(signed_root, online)
    root_bytes = _sign_root(signed_root, None, root.signers)
    targets = Targets(version=1, expires=now + policy.targets)
    targets_bytes = _sign(targets, Targets.type, signed_root, [online.targets])
    snapshot = Snapshot(
        version=1,
        expires=now + policy.snapshot,
        meta={"targets.json": MetaFile(version=1, length=len(targets_bytes))},
    )
    snapshot_bytes = _sign(snapshot, Snapshot.type, signed_root, [online.snapshot])
    timestamp = Timestamp(
        version=1, expires=now + policy.timestamp, snapshot_meta=_pin(1, snapshot_bytes)
    )
    return RepositoryState(
        roots=(root_bytes,),
        targets=targets_bytes,
        snapshot=snapshot_bytes,
        timestamp=_sign(timestamp, Timestamp.type, signed_root, [online.timestamp]),
    )


def publish_targets(
    state: RepositoryState,
    channel: Channel,
    targets: Mapping[str, ImageTarget],
    *,
    online: OnlineSigners,
    now: datetime,
    policy: ExpiryPolicy = DEFAULT_POLICY,
) -> RepositoryState:
    """Replace what `channel` offers with `targets` (name → image), as a new deployment does.

    The channel's role is created on first use, which also re-signs top-level targets to add the
    delegation; afterwards only the role, the snapshot and the timestamp are re-signed.
    """
    now = _utc(now)
    for name in targets:
        if name == MANIFEST_NAME or not _TARGET_NAME.fullmatch(name):
            raise ValueError(f"target name {name!r} must match {_TARGET_NAME.pattern}")
    top = Metadata[Targets].from_bytes(state.targets).signed
    new_top = None
    if top.delegations is None or channel.role not in (top.delegations.roles or {}):
        new_top = _renewed(top, now, policy.targets)
        _add_delegation(new_top, channel, online.delegations.public_key)
    manifest = json.dumps(
        {"format": MANIFEST_FORMAT, "targets": sorted(targets)},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    files = {
        channel.target_path(name): TargetFile(
            length=image.length,
            hashes={"sha256": image.sha256},
            path=channel.target_path(name),
            unrecognized_fields={"custom": image.custom()},
        )
        for name, image in sorted(targets.items())
    }
    files[channel.manifest_path] = TargetFile.from_data(
        channel.manifest_path, manifest, hash_algorithms=["sha256"]
    )
    # The snapshot's pin, not the role's bytes: it outlives a removed channel (`remove_channel`).
    pinned = Metadata[Snapshot].from_bytes(state.snapshot).signed.meta.get(f"{channel.role}.json")
    version = pinned.version + 1 if pinned else 1
    role = Targets(version=version, expires=now + policy.targets, targets=files)
    return _commit(
        state,
        online=online,
        now=now,
        policy=policy,
        top=new_top,
        roles={channel.role: role},
        manifests={channel.role: manifest},
    )


def remove_channel(
    state: RepositoryState,
    channel: Channel,
    *,
    online: OnlineSigners,
    now: datetime,
    policy: ExpiryPolicy = DEFAULT_POLICY,
) -> RepositoryState:
    """Drop a deleted group's (or feed's) delegation; a state without it is returned unchanged.

    The snapshot keeps pinning the role's last version: a client refuses a snapshot that drops
    a file its trusted snapshot lists (TUF specification §5.5.5), and if the channel comes back,
    its role carries on from that version.
    """
    if channel.role not in state.delegated:
        return state
    now = _utc(now)
    top = _renewed(Metadata[Targets].from_bytes(state.targets).signed, now, policy.targets)
    if top.delegations is not None and top.delegations.roles is not None:
        top.delegations.roles.pop(channel.role, None)
    return _commit(
        state,
        online=online,
        now=now,
        policy=policy,
        top=top,
        roles={channel.role: None},
        manifests={channel.role: None},
    )


def refresh_expiring(
    state: RepositoryState,
    *,
    online: OnlineSigners,
    now: datetime,
    policy: ExpiryPolicy = DEFAULT_POLICY,
) -> RepositoryState:
    """Re-sign every online role within its margin of expiry; the same state if none is.

    Callers compare the result with `is` to skip a write. Re-signing a role re-pins it, so the
    snapshot and timestamp above it are re-signed too.
    """
    now = _utc(now)
    top = Metadata[Targets].from_bytes(state.targets).signed
    new_top = _renewed(top, now, policy.targets) if _due(top, now, policy.targets_margin) else None
    roles: dict[str, Targets | None] = {}
    for role, data in state.delegated.items():
        signed = Metadata[Targets].from_bytes(data).signed
        if _due(signed, now, policy.targets_margin):
            roles[role] = _renewed(signed, now, policy.targets)
    snapshot_due = _due(state.signed(Snapshot.type), now, policy.snapshot_margin)
    timestamp_due = _due(state.signed(Timestamp.type), now, policy.timestamp_margin)
    if new_top is None and not roles and not snapshot_due and not timestamp_due:
        return state
    return _commit(
        state,
        online=online,
        now=now,
        policy=policy,
        top=new_top,
        roles=roles,
        resign_snapshot=snapshot_due,
        resign_timestamp=timestamp_due,
    )


def rotate_root(
    state: RepositoryState,
    *,
    current: Sequence[Signer],
    new_root: RootSigners,
    now: datetime,
    policy: ExpiryPolicy = DEFAULT_POLICY,
    new_online: OnlineSigners | None = None,
) -> RepositoryState:
    """Publish root N+1, signed by a threshold of root N's keys (`current`) and of its own.

    The same signers renew the root before it expires. With `new_online`, the online keys are
    replaced too, and every role they sign is re-signed so clients accept it under the new root.
    """
    now = _utc(now)
    old = Metadata[Root].from_bytes(state.roots[-1]).signed
    signed_root = copy.deepcopy(old)
    signed_root.version = old.version + 1
    signed_root.expires = now + policy.root
    _set_root_keys(signed_root, new_root)
    if new_online is not None:
        _set_online_keys(signed_root, new_online)
    roots = (*state.roots, _sign_root(signed_root, old, [*current, *new_root.signers]))
    if new_online is None:
        return replace(state, roots=roots)
    top = _renewed(Metadata[Targets].from_bytes(state.targets).signed, now, policy.targets)
    if top.delegations is not None:
        key = new_online.delegations.public_key
        top.delegations.keys = {key.keyid: key}
        for delegated_role in (top.delegations.roles or {}).values():
            delegated_role.keyids = [key.keyid]
    roles: dict[str, Targets | None] = {
        role: _renewed(Metadata[Targets].from_bytes(data).signed, now, policy.targets)
        for role, data in state.delegated.items()
    }
    return _commit(
        replace(state, roots=roots),
        online=new_online,
        now=now,
        policy=policy,
        top=top,
        roles=roles,
        resign_timestamp=True,
    )


def draft_root_rotation(
    current_root: bytes,
    *,
    new_keys: Sequence[Key],
    threshold: int,
    now: datetime,
    policy: ExpiryPolicy = DEFAULT_POLICY,
) -> Metadata[Root]:
    """Root N+1 with new root keys and no signature yet, for root keys kept offline.

    Each key holder adds a signature (`Metadata.sign(signer, append=True)`) wherever the key
    lives, and the repository checks and publishes the result with `append_root`. Online keys
    stay as they are: replacing them needs `rotate_root` with the signers at hand.
    """
    if not 1 <= threshold <= len({key.keyid for key in new_keys}):
        raise ValueError("root threshold must be between 1 and the number of distinct keys")
    signed_root = copy.deepcopy(Metadata[Root].from_bytes(current_root).signed)
    signed_root.version += 1
    signed_root.expires = _utc(now) + policy.root
    _replace_keys(signed_root, Root.type, new_keys)
    signed_root.roles[Root.type].threshold = threshold
    return Metadata(signed_root)


def append_root(state: RepositoryState, root: bytes) -> RepositoryState:
    """Publish a root N+1 signed elsewhere, once checked as a client will check it.

    A threshold of root N's keys and a threshold of its own keys must have signed it (TUF
    specification §5.3.4 and §5.3.5), and it may change only the root keys, the threshold and
    the expiry.
    """
    old = Metadata[Root].from_bytes(state.roots[-1]).signed
    new = Metadata[Root].from_bytes(root)
    if new.signed.version != old.version + 1:
        raise ValueError(f"the new root must be version {old.version + 1}")
    if new.signed.consistent_snapshot != old.consistent_snapshot:
        raise ValueError("the new root must keep consistent snapshots as they are")
    for role in _TOP_LEVEL_ONLINE:
        if set(new.signed.roles[role].keyids) != set(old.roles[role].keyids):
            raise ValueError(f"the new root changes the {role} keys; only root keys may change")
    result = new.signed.get_root_verification_result(old, new.signed_bytes, new.signatures)
    if not result.verified:
        raise ValueError(
            f"root v{new.signed.version} is not signed by a threshold of the old and new root keys"
        )
    return replace(state, roots=(*state.roots, new.to_bytes(_SERIALIZER)))


def needs_root_renewal(
    state: RepositoryState, now: datetime, policy: ExpiryPolicy = DEFAULT_POLICY
) -> bool:
    """Whether the offline root keys must be brought out: root expires within its margin."""
    return _due(state.signed(Root.type), _utc(now), policy.root_margin)


def _commit(
    state: RepositoryState,
    *,
    online: OnlineSigners,
    now: datetime,
    policy: ExpiryPolicy,
    top: Targets | None = None,
    roles: Mapping[str, Targets | None] | None = None,
    manifests: Mapping[str, bytes | None] | None = None,
    resign_snapshot: bool = False,
    resign_timestamp: bool = False,
) -> RepositoryState:
    """Sign what changed bottom-up and re-pin it: roles → targets → snapshot → timestamp.

    `top` and `roles` arrive with their new version and expiry already set; None in `roles`
    removes a role's metadata but not its pin. The snapshot is re-signed whenever anything it
    pins changed, the timestamp whenever the snapshot did.
    """
    roles = roles or {}
    root = Metadata[Root].from_bytes(state.roots[-1]).signed
    targets_bytes = state.targets
    snapshot = Metadata[Snapshot].from_bytes(state.snapshot).signed
    if top is not None:
        targets_bytes = _sign(top, Targets.type, root, [online.targets])
        snapshot.meta["targets.json"] = MetaFile(version=top.version, length=len(targets_bytes))
    delegator = Metadata[Targets].from_bytes(targets_bytes).signed
    delegated = dict(state.delegated)
    for role, signed in roles.items():
        if signed is None:
            delegated.pop(role, None)
            continue
        delegated[role] = _sign(signed, role, delegator, [online.delegations])
        pinned = MetaFile(version=signed.version, length=len(delegated[role]))
        snapshot.meta[f"{role}.json"] = pinned
    kept_manifests = dict(state.manifests)
    for role, manifest in (manifests or {}).items():
        if manifest is None:
            kept_manifests.pop(role, None)
        else:
            kept_manifests[role] = manifest
    snapshot_bytes = state.snapshot
    if top is not None or roles or resign_snapshot:
        snapshot = _renewed(snapshot, now, policy.snapshot)
        snapshot_bytes = _sign(snapshot, Snapshot.type, root, [online.snapshot])
    timestamp_bytes = state.timestamp
    if snapshot_bytes is not state.snapshot or resign_timestamp:
        timestamp = Metadata[Timestamp].from_bytes(state.timestamp).signed
        timestamp = _renewed(timestamp, now, policy.timestamp)
        timestamp.snapshot_meta = _pin(snapshot.version, snapshot_bytes)
        timestamp_bytes = _sign(timestamp, Timestamp.type, root, [online.timestamp])
    return RepositoryState(
        roots=state.roots,
        targets=targets_bytes,
        snapshot=snapshot_bytes,
        timestamp=timestamp_bytes,
        delegated=delegated,
        manifests=kept_manifests,
    )


def _sign(signed: _Role, role: str, delegator: Root | Targets, signers: Sequence[Signer]) -> bytes:
    """Sign and check the result the way a client will, so a misconfigured signer fails here."""
    metadata = Metadata(signed)
    for signer in signers:
        metadata.sign(signer, append=True)
    try:
        delegator.verify_delegate(role, metadata.signed_bytes, metadata.signatures)
    except UnsignedMetadataError as exc:
        raise ValueError(f"the signers given for {role} are not the keys trusted for it") from exc
    return metadata.to_bytes(_SERIALIZER)


def _sign_root(signed: Root, previous: Root | None, signers: Sequence[Signer]) -> bytes:
    """Sign a root; refuse one that misses the threshold of itself or of the root before it."""
    metadata = Metadata(signed)
    for signer in signers:
        metadata.sign(signer, append=True)
    result = signed.get_root_verification_result(
        previous, metadata.signed_bytes, metadata.signatures
    )
    if not result.verified:
        raise ValueError(f"root v{signed.version} is not signed by a threshold of root keys")
    return metadata.to_bytes(_SERIALIZER)


def _set_root_keys(signed: Root, root: RootSigners) -> None:
    _replace_keys(signed, Root.type, [s.public_key for s in root.signers])
    signed.roles[Root.type].threshold = root.threshold


def _set_online_keys(signed: Root, online: OnlineSigners) -> None:
    for role in _TOP_LEVEL_ONLINE:
        _replace_keys(signed, role, [getattr(online, role).public_key])


def _replace_keys(signed: Root, role: str, keys: Sequence[Key]) -> None:
    for keyid in list(signed.roles[role].keyids):
        signed.revoke_key(keyid, role)
    for key in keys:
        signed.add_key(key, role)


def _add_delegation(top: Targets, channel: Channel, key: Key) -> None:
    if top.delegations is None:
        top.delegations = Delegations(keys={}, roles={})
    top.delegations.keys[key.keyid] = key
    if top.delegations.roles is None:
        raise ValueError("top-level targets delegates to succinct roles, not to channels")
    top.delegations.roles[channel.role] = DelegatedRole(
        name=channel.role,
        keyids=[key.keyid],
        threshold=1,
        terminating=True,
        paths=[channel.prefix + "*"],
    )


def _renewed(signed: _Role, now: datetime, lifetime: timedelta) -> _Role:
    signed.version += 1
    signed.expires = now + lifetime
    return signed


def _due(signed: Signed, now: datetime, margin: timedelta) -> bool:
    return signed.expires <= now + margin


def _pin(version: int, data: bytes) -> MetaFile:
    """The timestamp pins the snapshot by length and hash too, bounding what a client fetches."""
    return MetaFile(
        version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()}
    )


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)
