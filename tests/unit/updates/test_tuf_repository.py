"""The repository core (versions, delegations, expiry, root rotation) and its static layout.

Pure: fixed `now`, keys in memory, results checked with python-tuf's own verification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import stat
import uuid
from pathlib import Path
from typing import IO, Any

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from opensphere.updates.repository import (
    MANIFEST_FORMAT,
    Channel,
    ExpiryPolicy,
    ImageTarget,
    OnlineSigners,
    RepositoryState,
    RootSigners,
    initial_repository,
    needs_root_renewal,
    publish_targets,
    refresh_expiring,
    remove_channel,
    rotate_root,
)
from opensphere.updates.static import export_static, metadata_files, target_blobs

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
GROUP_A = Channel.group(uuid.UUID("3a6f0c1e-8b2d-4e9f-a1c3-5d7e9f0b2c4a"))
GROUP_B = Channel.group(uuid.UUID("c0ffee00-1111-4222-8333-444455556666"))
APP = b"application image " * 100
BOARD = b"board configuration"


def keys(count: int) -> tuple[CryptoSigner, ...]:
    return tuple(CryptoSigner.generate_ed25519() for _ in range(count))


def image(data: bytes, security_version: int = 3) -> ImageTarget:
    return ImageTarget(
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        image_id=uuid.UUID("11111111-2222-4333-8444-555555555555"),
        component_id=uuid.UUID("66666666-7777-4888-9999-000000000000"),
        image_type="Application",
        security_version=security_version,
    )


@pytest.fixture(scope="module")
def root_signers() -> RootSigners:
    return RootSigners(keys(2), threshold=2)


@pytest.fixture(scope="module")
def online() -> OnlineSigners:
    return OnlineSigners(*keys(4))


@pytest.fixture
def empty(root_signers: RootSigners, online: OnlineSigners) -> RepositoryState:
    return initial_repository(root=root_signers, online=online, now=NOW)


@pytest.fixture
def deployed(empty: RepositoryState, online: OnlineSigners) -> RepositoryState:
    state = publish_targets(
        empty, GROUP_A, {"app.imagepackage": image(APP)}, online=online, now=NOW
    )
    return publish_targets(
        state, GROUP_B, {"board.imagepackage": image(BOARD)}, online=online, now=NOW
    )


def versions(state: RepositoryState) -> dict[str, int]:
    roles = ["root", "targets", "snapshot", "timestamp", *sorted(state.delegated)]
    return {role: state.version(role) for role in roles}


def verify_all(state: RepositoryState) -> None:
    """Every role verifies the way ngclient checks it: against root, or its delegator."""
    root = Metadata[Root].from_bytes(state.roots[-1])
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    for role in ("targets", "snapshot", "timestamp"):
        metadata = Metadata.from_bytes(state.role_bytes(role))
        root.signed.verify_delegate(role, metadata.signed_bytes, metadata.signatures)
    targets = Metadata[Targets].from_bytes(state.targets).signed
    for role, data in state.delegated.items():
        metadata = Metadata.from_bytes(data)
        targets.verify_delegate(role, metadata.signed_bytes, metadata.signatures)


# A new repository


def test_a_new_repository_is_version_one_with_consistent_snapshots(
    empty: RepositoryState, root_signers: RootSigners, online: OnlineSigners
) -> None:
    assert versions(empty) == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    root = Metadata[Root].from_bytes(empty.roots[0]).signed
    assert root.consistent_snapshot
    assert root.roles["root"].threshold == 2
    assert set(root.roles["root"].keyids) == {s.public_key.keyid for s in root_signers.signers}
    assert root.roles["timestamp"].keyids == [online.timestamp.public_key.keyid]
    assert empty.expires("root") == NOW + dt.timedelta(days=365)
    assert empty.expires("targets") == NOW + dt.timedelta(days=90)
    assert empty.expires("snapshot") == NOW + dt.timedelta(days=7)
    assert empty.expires("timestamp") == NOW + dt.timedelta(days=1)
    verify_all(empty)


def test_root_needs_a_threshold_it_can_meet() -> None:
    with pytest.raises(ValueError, match="threshold"):
        RootSigners(keys(2), threshold=3)
    signer = CryptoSigner.generate_ed25519()
    with pytest.raises(ValueError, match="threshold"):
        RootSigners((signer, signer), threshold=2)


def test_now_must_carry_a_timezone(root_signers: RootSigners, online: OnlineSigners) -> None:
    with pytest.raises(ValueError, match="timezone"):
        initial_repository(root=root_signers, online=online, now=NOW.replace(tzinfo=None))


# Publishing to groups


def test_a_groups_first_deployment_adds_its_delegation(
    empty: RepositoryState, online: OnlineSigners
) -> None:
    state = publish_targets(
        empty, GROUP_A, {"app.imagepackage": image(APP)}, online=online, now=NOW
    )
    assert versions(state) == {
        "root": 1,
        "targets": 2,
        "snapshot": 2,
        "timestamp": 2,
        GROUP_A.role: 1,
    }
    delegations = Metadata[Targets].from_bytes(state.targets).signed.delegations
    assert delegations is not None
    assert delegations.roles is not None
    role = delegations.roles[GROUP_A.role]
    assert role.paths == [f"{GROUP_A.prefix}*"]
    assert role.terminating
    assert role.keyids == [online.delegations.public_key.keyid]
    assert [name for name, _ in delegations.get_roles_for_target(GROUP_A.manifest_path)] == [
        GROUP_A.role
    ]
    assert list(delegations.get_roles_for_target("groups/other/app.imagepackage")) == []
    verify_all(state)


def test_a_redeployment_resigns_only_the_group_snapshot_and_timestamp(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    before = versions(deployed)
    state = publish_targets(
        deployed, GROUP_A, {"app.imagepackage": image(APP, 4)}, online=online, now=NOW
    )
    assert state.targets == deployed.targets
    assert state.delegated[GROUP_B.role] == deployed.delegated[GROUP_B.role]
    assert state.roots == deployed.roots
    bumped = {
        role: v + 1 for role, v in before.items() if role in {GROUP_A.role, "snapshot", "timestamp"}
    }
    assert versions(state) == {**before, **bumped}
    verify_all(state)


def test_the_snapshot_and_timestamp_pin_what_clients_fetch(deployed: RepositoryState) -> None:
    snapshot = Metadata[Snapshot].from_bytes(deployed.snapshot).signed
    assert {name: (meta.version, meta.length) for name, meta in snapshot.meta.items()} == {
        "targets.json": (3, len(deployed.targets)),
        f"{GROUP_A.role}.json": (1, len(deployed.delegated[GROUP_A.role])),
        f"{GROUP_B.role}.json": (1, len(deployed.delegated[GROUP_B.role])),
    }
    pinned = Metadata[Timestamp].from_bytes(deployed.timestamp).signed.snapshot_meta
    assert pinned.version == snapshot.version
    assert pinned.hashes == {"sha256": hashlib.sha256(deployed.snapshot).hexdigest()}


def test_targets_carry_their_hash_length_and_image_details(deployed: RepositoryState) -> None:
    listed = Metadata[Targets].from_bytes(deployed.delegated[GROUP_A.role]).signed.targets
    app = listed[GROUP_A.target_path("app.imagepackage")]
    assert (app.length, app.hashes) == (len(APP), {"sha256": hashlib.sha256(APP).hexdigest()})
    assert app.custom == {
        "image_id": "11111111-2222-4333-8444-555555555555",
        "component_id": "66666666-7777-4888-9999-000000000000",
        "image_type": "Application",
        "security_version": 3,
    }
    manifest = deployed.manifests[GROUP_A.role]
    assert json.loads(manifest) == {"format": MANIFEST_FORMAT, "targets": ["app.imagepackage"]}
    entry = listed[GROUP_A.manifest_path]
    assert (entry.length, entry.hashes["sha256"]) == (
        len(manifest),
        hashlib.sha256(manifest).hexdigest(),
    )


@pytest.mark.parametrize("name", ["", "../app", "a/b", ".hidden", "manifest.json", "x" * 129])
def test_target_names_that_could_escape_or_collide_are_refused(
    empty: RepositoryState, online: OnlineSigners, name: str
) -> None:
    with pytest.raises(ValueError, match="target name"):
        publish_targets(empty, GROUP_A, {name: image(APP)}, online=online, now=NOW)


def test_a_delegation_signer_other_than_the_trusted_key_is_refused(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    impostor = OnlineSigners(
        online.targets, online.snapshot, online.timestamp, CryptoSigner.generate_ed25519()
    )
    with pytest.raises(ValueError, match="not the keys trusted"):
        publish_targets(deployed, GROUP_A, {}, online=impostor, now=NOW)


def test_removing_a_group_drops_its_delegation_but_keeps_its_pin(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    redeployed = publish_targets(deployed, GROUP_A, {}, online=online, now=NOW)
    state = remove_channel(redeployed, GROUP_A, online=online, now=NOW)
    assert GROUP_A.role not in state.delegated
    assert GROUP_A.role not in state.manifests
    delegations = Metadata[Targets].from_bytes(state.targets).signed.delegations
    assert delegations is not None
    assert set(delegations.roles or {}) == {GROUP_B.role}
    assert (
        Metadata[Snapshot].from_bytes(state.snapshot).signed.meta[f"{GROUP_A.role}.json"].version
        == 2
    )
    assert remove_channel(state, GROUP_A, online=online, now=NOW) is state
    verify_all(state)
    back = publish_targets(state, GROUP_A, {}, online=online, now=NOW)
    assert back.version(GROUP_A.role) == 3


def test_feeds_are_channels_of_their_own() -> None:
    assert Channel.feed("retaileval") == Channel("feed-retaileval", "feeds/retaileval/")
    with pytest.raises(ValueError, match="feed name"):
        Channel.feed("../retail")


# Expiry


def test_nothing_is_resigned_while_all_is_fresh(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    assert refresh_expiring(deployed, online=online, now=NOW + dt.timedelta(hours=17)) is deployed


def test_a_timestamp_near_expiry_is_resigned_alone(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    later = NOW + dt.timedelta(hours=19)
    state = refresh_expiring(deployed, online=online, now=later)
    assert versions(state) == {**versions(deployed), "timestamp": deployed.version("timestamp") + 1}
    assert state.expires("timestamp") == later + dt.timedelta(days=1)
    verify_all(state)


def test_a_snapshot_near_expiry_is_resigned_with_the_timestamp(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    state = refresh_expiring(deployed, online=online, now=NOW + dt.timedelta(days=5))
    assert state.version("snapshot") == deployed.version("snapshot") + 1
    assert state.version("timestamp") == deployed.version("timestamp") + 1
    assert state.targets == deployed.targets
    verify_all(state)


def test_targets_and_groups_near_expiry_are_resigned_and_repinned(
    deployed: RepositoryState, online: OnlineSigners
) -> None:
    later = NOW + dt.timedelta(days=61)
    state = refresh_expiring(deployed, online=online, now=later)
    assert versions(state) == {role: v + (role != "root") for role, v in versions(deployed).items()}
    assert state.expires(GROUP_B.role) == later + dt.timedelta(days=90)
    assert state.manifests == deployed.manifests
    verify_all(state)


def test_root_renewal_is_flagged_within_its_margin(deployed: RepositoryState) -> None:
    assert not needs_root_renewal(deployed, NOW + dt.timedelta(days=300))
    assert needs_root_renewal(deployed, NOW + dt.timedelta(days=306))


def test_expiry_follows_the_policy(empty: RepositoryState, online: OnlineSigners) -> None:
    policy = ExpiryPolicy(targets=dt.timedelta(days=10), timestamp=dt.timedelta(minutes=5))
    state = publish_targets(empty, GROUP_A, {}, online=online, now=NOW, policy=policy)
    assert state.expires(GROUP_A.role) == NOW + dt.timedelta(days=10)
    assert state.expires("timestamp") == NOW + dt.timedelta(minutes=5)


# Root rotation


def root_verification(state: RepositoryState, version: int) -> Any:
    previous = Metadata[Root].from_bytes(state.roots[version - 2]).signed
    new = Metadata[Root].from_bytes(state.roots[version - 1])
    return new.signed.get_root_verification_result(previous, new.signed_bytes, new.signatures)


def test_a_rotated_root_is_cross_signed_by_old_and_new_thresholds(
    deployed: RepositoryState, root_signers: RootSigners
) -> None:
    new_keys = RootSigners(keys(3), threshold=2)
    later = NOW + dt.timedelta(days=30)
    state = rotate_root(deployed, current=root_signers.signers, new_root=new_keys, now=later)
    assert len(state.roots) == 2
    assert state.roots[0] == deployed.roots[0]
    result = root_verification(state, 2)
    assert result.verified
    assert result.first.signed.keys() == {s.public_key.keyid for s in root_signers.signers}
    assert len(result.second.signed) == 3
    assert state.expires("root") == later + dt.timedelta(days=365)
    assert (state.timestamp, state.delegated) == (deployed.timestamp, deployed.delegated)
    verify_all(state)


def test_a_rotation_without_the_old_threshold_is_refused(
    deployed: RepositoryState, root_signers: RootSigners
) -> None:
    with pytest.raises(ValueError, match="threshold of root keys"):
        rotate_root(
            deployed,
            current=root_signers.signers[:1],
            new_root=RootSigners(keys(2), threshold=1),
            now=NOW,
        )


def test_the_same_root_keys_renew_the_root(
    deployed: RepositoryState, root_signers: RootSigners
) -> None:
    state = rotate_root(
        deployed,
        current=root_signers.signers,
        new_root=root_signers,
        now=NOW + dt.timedelta(days=300),
    )
    assert root_verification(state, 2).verified
    assert not needs_root_renewal(state, NOW + dt.timedelta(days=306))


def test_rotating_the_online_keys_resigns_every_role_with_them(
    deployed: RepositoryState, root_signers: RootSigners, online: OnlineSigners
) -> None:
    new_online = OnlineSigners(*keys(4))
    state = rotate_root(
        deployed,
        current=root_signers.signers,
        new_root=root_signers,
        now=NOW,
        new_online=new_online,
    )
    assert versions(state) == {role: v + 1 for role, v in versions(deployed).items()}
    root = Metadata[Root].from_bytes(state.roots[-1]).signed
    assert online.timestamp.public_key.keyid not in root.keys
    verify_all(state)
    publish_targets(state, GROUP_A, {}, online=new_online, now=NOW)
    with pytest.raises(ValueError, match="not the keys trusted"):
        publish_targets(state, GROUP_A, {}, online=online, now=NOW)


# The static layout


def blob_store(*contents: bytes) -> Any:
    blobs = {hashlib.sha256(data).hexdigest(): data for data in contents}

    def open_blob(sha256: str) -> IO[bytes]:
        return io.BytesIO(blobs[sha256])

    return open_blob


def relative(folder: Path, paths: list[Path]) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in paths)


def test_metadata_files_are_named_as_the_client_fetches_them(deployed: RepositoryState) -> None:
    assert list(metadata_files(deployed)) == [
        "1.root.json",
        f"1.{GROUP_A.role}.json",
        f"1.{GROUP_B.role}.json",
        "3.targets.json",
        "3.snapshot.json",
        "timestamp.json",
    ]


def test_target_files_are_prefixed_with_their_hash(deployed: RepositoryState) -> None:
    app_hash = hashlib.sha256(APP).hexdigest()
    manifest_hash = hashlib.sha256(deployed.manifests[GROUP_A.role]).hexdigest()
    group_a = [blob for blob in target_blobs(deployed) if blob.url_path.startswith(GROUP_A.prefix)]
    assert sorted((blob.url_path, blob.content) for blob in group_a) == sorted(
        [
            (f"{GROUP_A.prefix}{app_hash}.app.imagepackage", None),
            (f"{GROUP_A.prefix}{manifest_hash}.manifest.json", deployed.manifests[GROUP_A.role]),
        ]
    )


def test_an_export_writes_plain_files_and_a_reexport_only_what_is_new(
    tmp_path: Path, deployed: RepositoryState, online: OnlineSigners
) -> None:
    open_blob = blob_store(APP, BOARD)
    written = export_static(deployed, tmp_path, open_blob=open_blob)
    assert len(written) == 6 + 4
    assert (tmp_path / "metadata" / "timestamp.json").read_bytes() == deployed.timestamp
    app_file = (
        tmp_path
        / "targets"
        / GROUP_A.prefix
        / f"{hashlib.sha256(APP).hexdigest()}.app.imagepackage"
    )
    assert app_file.read_bytes() == APP
    assert stat.S_IMODE(app_file.stat().st_mode) == 0o644
    assert export_static(deployed, tmp_path, open_blob=open_blob) == []

    state = publish_targets(
        deployed, GROUP_A, {"app.imagepackage": image(APP, 4)}, online=online, now=NOW
    )
    assert relative(tmp_path, export_static(state, tmp_path, open_blob=open_blob)) == [
        f"metadata/2.{GROUP_A.role}.json",
        "metadata/4.snapshot.json",
        "metadata/timestamp.json",
    ]
    assert (tmp_path / "metadata" / "3.snapshot.json").exists()  # for clients mid-update


def test_an_export_refuses_to_overwrite_a_published_version(
    tmp_path: Path, deployed: RepositoryState, online: OnlineSigners
) -> None:
    export_static(deployed, tmp_path, open_blob=blob_store(APP, BOARD))
    diverged = refresh_expiring(deployed, online=online, now=NOW + dt.timedelta(days=6))
    (tmp_path / "metadata" / "4.snapshot.json").write_bytes(b"another snapshot v4")
    with pytest.raises(ValueError, match="versions must grow"):
        export_static(diverged, tmp_path, open_blob=blob_store(APP, BOARD))


def test_an_export_checks_blobs_against_their_hash(
    tmp_path: Path, deployed: RepositoryState
) -> None:
    def corrupt(sha256: str) -> IO[bytes]:
        return io.BytesIO(b"rotten")

    with pytest.raises(ValueError, match="other content"):
        export_static(deployed, tmp_path, open_blob=corrupt)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
