"""`sphere-tuf-client` against an exported repository on a real loopback HTTP server.

Each attack is its own test: the client must exit 1 and keep what it trusted before. The client
reads the real clock (ngclient does), so expiry is staged by signing with an earlier `now`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, MetaFile
from tuf.api.serialization.json import JSONSerializer

from opensphere.updates.repository import Channel, ExpiryPolicy, remove_channel, rotate_root
from support.tuf_repository import (
    Repository,
    RepositoryServer,
    new_online,
    new_root,
    serving,
    utcnow,
)

GROUP = uuid.UUID("6f1f4a52-3c0e-4d35-9a51-2b7f6c1d8e90")
OTHER_GROUP = uuid.UUID("0b7e9d1c-5a34-4f8e-8c2d-71e6a9f0b3c4")
CHANNEL = Channel.group(GROUP)
NAME = "app.imagepackage"
TARGET = CHANNEL.target_path(NAME)
APP = random.Random(5).randbytes(300_000)
APP_V2 = random.Random(6).randbytes(310_000)


@dataclass
class Device:
    """A device's metadata and target folders, driven through the CLI in a subprocess."""

    metadata_dir: Path
    target_dir: Path
    server: RepositoryServer
    stderr: list[str] = field(default_factory=list)

    def run(self, *args: str) -> int:
        command = [sys.executable, "-m", "opensphere.updates.conformance_cli", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        self.stderr.append(result.stderr)
        return result.returncode

    def init(self, root: bytes) -> int:
        root_file = self.metadata_dir.parent / "initial_root.json"
        root_file.write_bytes(root)
        return self.run("--metadata-dir", str(self.metadata_dir), "init", str(root_file))

    def refresh(self) -> int:
        return self.run(
            "--metadata-dir", str(self.metadata_dir),
            "--metadata-url", self.server.metadata_url,
            "refresh",
        )  # fmt: skip

    def download(self, target: str = TARGET) -> int:
        return self.run(
            "--metadata-dir", str(self.metadata_dir),
            "--metadata-url", self.server.metadata_url,
            "--target-name", target,
            "--target-base-url", self.server.targets_url,
            "--target-dir", str(self.target_dir),
            "download",
        )  # fmt: skip

    def trusted(self) -> dict[str, int]:
        """Role file name → version, as the conformance suite reads the metadata folder."""
        return {
            path.name: Metadata.from_file(str(path)).signed.version
            for path in sorted(self.metadata_dir.glob("*.json"))
        }

    def trusted_bytes(self, name: str) -> bytes:
        return (self.metadata_dir / name).read_bytes()

    def target_files(self) -> list[Path]:
        return [path for path in self.target_dir.rglob("*") if path.is_file()]


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(tmp_path / "served")
    repository.create()
    repository.deploy(CHANNEL, {NAME: APP})
    return repository


@pytest.fixture
def server(repo: Repository) -> Iterator[RepositoryServer]:
    with serving(repo.folder) as running:
        yield running


@pytest.fixture
def device(tmp_path: Path, repo: Repository, server: RepositoryServer) -> Device:
    (tmp_path / "device").mkdir()
    trusting = Device(tmp_path / "device" / "metadata", tmp_path / "device" / "targets", server)
    assert trusting.init(repo.current.roots[0]) == 0, trusting.stderr
    return trusting


@pytest.fixture
def refreshed(device: Device) -> Device:
    assert device.refresh() == 0, device.stderr
    device.server.forget_requests()
    return device


def resigned(data: bytes, signers: Sequence[Signer], edit: Callable[[Any], None]) -> bytes:
    """Metadata as an attacker holding `signers` would make it."""
    metadata = Metadata.from_bytes(data)
    edit(metadata.signed)
    metadata.signatures.clear()
    for signer in signers:
        metadata.sign(signer, append=True)
    return metadata.to_bytes(JSONSerializer(compact=True))


def refused(device: Device, command: Callable[[], int]) -> None:
    assert command() == 1, device.stderr[-1]


# The ordinary path


def test_init_refresh_and_download(device: Device, server: RepositoryServer) -> None:
    assert server.requests == []  # init trusts the root file and asks nothing
    assert device.refresh() == 0, device.stderr
    assert server.paths() == [
        "/metadata/2.root.json",
        "/metadata/timestamp.json",
        "/metadata/2.snapshot.json",
        "/metadata/2.targets.json",
    ]
    assert device.download() == 0, device.stderr
    assert device.trusted() == {
        f"{CHANNEL.role}.json": 1,
        "root.json": 1,
        "snapshot.json": 2,
        "targets.json": 2,
        "timestamp.json": 2,
    }
    assert [path.read_bytes() for path in device.target_files()] == [APP]


def test_a_target_already_present_is_not_fetched_again(
    refreshed: Device, server: RepositoryServer
) -> None:
    assert refreshed.download() == 0, refreshed.stderr
    assert any(path.startswith("/targets/") for path in server.paths())
    server.forget_requests()
    assert refreshed.download() == 0, refreshed.stderr
    assert server.paths() == ["/metadata/2.root.json", "/metadata/timestamp.json"]


def test_a_new_deployment_replaces_the_file(refreshed: Device, repo: Repository) -> None:
    assert refreshed.download() == 0
    repo.deploy(CHANNEL, {NAME: APP_V2})
    assert refreshed.download() == 0, refreshed.stderr
    assert [path.read_bytes() for path in refreshed.target_files()] == [APP_V2]


def test_a_removed_group_is_gone_and_clients_keep_updating(
    refreshed: Device, repo: Repository
) -> None:
    repo.publish(remove_channel(repo.current, CHANNEL, online=repo.online, now=utcnow()))
    assert refreshed.refresh() == 0, refreshed.stderr
    refused(refreshed, refreshed.download)
    assert refreshed.target_files() == []


def test_a_usage_error_exits_1(device: Device) -> None:
    assert device.run("--metadata-dir", str(device.metadata_dir), "refresh") == 1
    assert device.run("--metadata-dir", str(device.metadata_dir), "frobnicate") == 1


# Rollback


def test_rollback_of_the_timestamp_is_refused(
    refreshed: Device, repo: Repository, server: RepositoryServer
) -> None:
    old_timestamp = repo.current.timestamp
    repo.deploy(CHANNEL, {NAME: APP_V2})
    assert refreshed.refresh() == 0
    trusted = refreshed.trusted()
    server.overrides["/metadata/timestamp.json"] = old_timestamp
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted() == trusted


def test_rollback_of_the_snapshot_is_refused_even_with_the_timestamp_key(
    refreshed: Device, repo: Repository, server: RepositoryServer
) -> None:
    old_snapshot = repo.current.snapshot
    repo.deploy(CHANNEL, {NAME: APP_V2})
    assert refreshed.refresh() == 0
    trusted = refreshed.trusted()

    def pin_old_snapshot(timestamp: Any) -> None:
        timestamp.version += 1
        timestamp.snapshot_meta = MetaFile(version=2, length=len(old_snapshot))

    server.overrides["/metadata/timestamp.json"] = resigned(
        repo.current.timestamp, [repo.online.timestamp], pin_old_snapshot
    )
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted() == trusted


def test_rollback_of_targets_is_refused_even_with_the_timestamp_and_snapshot_keys(
    refreshed: Device, repo: Repository, server: RepositoryServer
) -> None:
    repo.deploy(Channel.group(OTHER_GROUP), {NAME: APP_V2})
    assert refreshed.refresh() == 0
    assert refreshed.trusted()["targets.json"] == 3
    state = repo.current

    def list_old_targets(snapshot: Any) -> None:
        snapshot.version += 1
        snapshot.meta["targets.json"] = MetaFile(version=2)

    snapshot = resigned(state.snapshot, [repo.online.snapshot], list_old_targets)

    def pin(timestamp: Any) -> None:
        timestamp.version += 1
        timestamp.snapshot_meta = MetaFile(version=4, length=len(snapshot))

    server.overrides["/metadata/4.snapshot.json"] = snapshot
    server.overrides["/metadata/timestamp.json"] = resigned(
        state.timestamp, [repo.online.timestamp], pin
    )
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted()["targets.json"] == 3
    assert refreshed.trusted()["snapshot.json"] == 3


# Freeze


def test_freeze_attack_a_mirror_serving_an_expired_timestamp_is_refused(
    refreshed: Device, repo: Repository
) -> None:
    trusted = refreshed.trusted()
    repo.deploy(CHANNEL, {NAME: APP_V2}, now=utcnow() - dt.timedelta(days=2))
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted() == trusted


def test_freeze_attack_the_trusted_timestamp_expires_while_the_mirror_replays_it(
    device: Device, repo: Repository
) -> None:
    short = ExpiryPolicy(timestamp=dt.timedelta(seconds=8))
    state = repo.deploy(CHANNEL, {NAME: APP_V2}, policy=short)
    assert device.refresh() == 0, device.stderr
    trusted = device.trusted()
    time.sleep(max(0.0, (state.expires("timestamp") - utcnow()).total_seconds()) + 1.1)
    refused(device, device.refresh)
    assert device.trusted() == trusted


# Mix-and-match


def test_mix_and_match_a_targets_version_other_than_the_snapshot_lists_is_refused(
    refreshed: Device, repo: Repository, server: RepositoryServer
) -> None:
    repo.deploy(Channel.group(OTHER_GROUP), {NAME: APP_V2})
    old_targets = (repo.folder / "metadata" / "2.targets.json").read_bytes()
    # A genuine targets v2 where the snapshot lists v3; its length pin catches it before the
    # version does (the group role below has the same length in both versions).
    server.overrides["/metadata/3.targets.json"] = old_targets
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted_bytes("targets.json") == old_targets


def test_mix_and_match_a_group_role_version_other_than_the_snapshot_lists_is_refused(
    refreshed: Device, repo: Repository, server: RepositoryServer
) -> None:
    assert refreshed.download() == 0
    repo.deploy(CHANNEL, {NAME: APP_V2})
    old_role = (repo.folder / "metadata" / f"1.{CHANNEL.role}.json").read_bytes()
    server.overrides[f"/metadata/2.{CHANNEL.role}.json"] = old_role
    refused(refreshed, refreshed.download)
    assert refreshed.trusted_bytes(f"{CHANNEL.role}.json") == old_role
    assert [path.read_bytes() for path in refreshed.target_files()] == [APP]


# Key rotation


def test_a_root_signed_by_the_old_and_the_new_keys_is_followed(
    refreshed: Device, repo: Repository
) -> None:
    new_keys, new_online_keys = new_root(3, 2), new_online()
    repo.publish(
        rotate_root(
            repo.current,
            current=repo.root.signers,
            new_root=new_keys,
            now=utcnow(),
            new_online=new_online_keys,
        )
    )
    assert refreshed.download() == 0, refreshed.stderr
    assert refreshed.trusted()["root.json"] == 2
    assert refreshed.trusted()["timestamp.json"] == 3
    assert [path.read_bytes() for path in refreshed.target_files()] == [APP]


@pytest.mark.parametrize("old_keys_signing", [0, 1], ids=["new-keys-only", "below-old-threshold"])
def test_a_root_without_a_threshold_of_old_keys_is_refused(
    refreshed: Device, repo: Repository, server: RepositoryServer, old_keys_signing: int
) -> None:
    new_keys = new_root(2, 1)
    rotated = rotate_root(
        repo.current, current=repo.root.signers, new_root=new_keys, now=utcnow()
    ).roots[-1]
    signers = [*repo.root.signers[:old_keys_signing], *new_keys.signers]
    server.overrides["/metadata/2.root.json"] = resigned(rotated, signers, lambda _: None)
    trusted = refreshed.trusted()
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted() == trusted


# Expiry


def test_an_expired_root_is_refused(refreshed: Device, repo: Repository) -> None:
    trusted = refreshed.trusted()
    repo.publish(
        rotate_root(
            repo.current,
            current=repo.root.signers,
            new_root=repo.root,
            now=utcnow() - dt.timedelta(days=2),
            policy=ExpiryPolicy(root=dt.timedelta(days=1)),
        )
    )
    refused(refreshed, refreshed.refresh)
    # ngclient keeps root v2, verified though expired (spec 5.3.9), and nothing after it.
    assert {name: v for name, v in refreshed.trusted().items() if name != "root.json"} == {
        name: v for name, v in trusted.items() if name != "root.json"
    }


def test_expired_top_level_targets_are_refused(refreshed: Device, repo: Repository) -> None:
    trusted_targets = refreshed.trusted_bytes("targets.json")
    repo.deploy(
        Channel.group(OTHER_GROUP),
        {NAME: APP_V2},
        now=utcnow() - dt.timedelta(hours=1),
        policy=ExpiryPolicy(targets=dt.timedelta(minutes=30)),
    )
    refused(refreshed, refreshed.refresh)
    assert refreshed.trusted_bytes("targets.json") == trusted_targets


def test_an_expired_group_role_is_refused(refreshed: Device, repo: Repository) -> None:
    assert refreshed.download() == 0
    trusted_role = refreshed.trusted_bytes(f"{CHANNEL.role}.json")
    repo.deploy(
        CHANNEL,
        {NAME: APP_V2},
        now=utcnow() - dt.timedelta(hours=1),
        policy=ExpiryPolicy(targets=dt.timedelta(minutes=30)),
    )
    refused(refreshed, refreshed.download)
    assert refreshed.trusted_bytes(f"{CHANNEL.role}.json") == trusted_role
    assert [path.read_bytes() for path in refreshed.target_files()] == [APP]


# Arbitrary package and endless data


def test_arbitrary_package_a_target_with_another_hash_is_refused(
    refreshed: Device, server: RepositoryServer
) -> None:
    server.overrides[image_url(APP)] = bytes(len(APP))
    refused(refreshed, refreshed.download)
    assert refreshed.target_files() == []


def test_endless_data_a_target_longer_than_signed_is_refused(
    refreshed: Device, server: RepositoryServer
) -> None:
    server.endless.add(image_url(APP))
    refused(refreshed, refreshed.download)
    assert refreshed.target_files() == []


@pytest.mark.parametrize("path", ["/metadata/timestamp.json", "/metadata/3.snapshot.json"])
def test_endless_data_metadata_beyond_its_bound_is_refused(
    refreshed: Device, repo: Repository, server: RepositoryServer, path: str
) -> None:
    repo.deploy(CHANNEL, {NAME: APP_V2})
    trusted = refreshed.trusted()
    server.endless.add(path)
    refused(refreshed, refreshed.refresh)
    if path.endswith("snapshot.json"):
        del trusted["timestamp.json"]  # the new timestamp is genuine and kept
    assert {name: refreshed.trusted()[name] for name in trusted} == trusted


def image_url(data: bytes) -> str:
    return f"/targets/{CHANNEL.prefix}{hashlib.sha256(data).hexdigest()}.{NAME}"
