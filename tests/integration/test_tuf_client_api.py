"""The device's client API in-process: results, channel listing, resumed downloads, errors."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from opensphere.updates.client import (
    PARTIAL_DIR_NAME,
    DownloadFailedError,
    LocalStoreError,
    TargetNotFoundError,
    UntrustedDataError,
    UpdateSession,
    init_trust,
    refresh,
)
from opensphere.updates.repository import Channel
from support.tuf_repository import Repository, RepositoryServer, serving

GROUP = uuid.UUID("9d2c7b1e-4f3a-4e5b-8a6c-0d1e2f3a4b5c")
CHANNEL = Channel.group(GROUP)
APP = random.Random(7).randbytes(400_000)
BOARD = random.Random(8).randbytes(2_000)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(tmp_path / "served")
    repository.create()
    repository.deploy(CHANNEL, {"app.imagepackage": APP, "board.imagepackage": BOARD})
    return repository


@pytest.fixture
def server(repo: Repository) -> Iterator[RepositoryServer]:
    with serving(repo.folder) as running:
        yield running


@pytest.fixture
def metadata_dir(tmp_path: Path, repo: Repository) -> Path:
    init_trust(tmp_path / "metadata", repo.current.roots[0])
    return tmp_path / "metadata"


def session(metadata_dir: Path, server: RepositoryServer) -> UpdateSession:
    return UpdateSession(
        metadata_dir,
        server.metadata_url,
        target_dir=metadata_dir.parent / "targets",
        target_base_url=server.targets_url,
    )


def test_refresh_reports_whether_anything_was_published(
    metadata_dir: Path, repo: Repository, server: RepositoryServer
) -> None:
    first = refresh(metadata_dir, server.metadata_url)
    assert (first.timestamp_version, first.snapshot_version, first.changed) == (2, 2, True)
    assert not refresh(metadata_dir, server.metadata_url).changed
    repo.deploy(CHANNEL, {"app.imagepackage": BOARD})
    assert refresh(metadata_dir, server.metadata_url).changed


def test_a_channel_lists_its_deployment_with_the_image_details(
    metadata_dir: Path, repo: Repository, server: RepositoryServer
) -> None:
    check = session(metadata_dir, server)
    check.refresh()
    targets = check.channel_targets(CHANNEL)
    assert [t.path for t in targets] == [
        CHANNEL.target_path("app.imagepackage"),
        CHANNEL.target_path("board.imagepackage"),
    ]
    assert targets[0].length == len(APP)
    assert targets[0].custom["image_type"] == "Application"
    assert targets[0].custom["security_version"] == 1
    downloaded = [check.download(target) for target in targets]
    assert [d.path.read_bytes() for d in downloaded] == [APP, BOARD]


def test_an_interrupted_download_resumes_with_a_range_request(
    metadata_dir: Path, server: RepositoryServer
) -> None:
    check = session(metadata_dir, server)
    check.refresh()
    target = check.find_target(CHANNEL.target_path("app.imagepackage"))
    url = f"/targets/{CHANNEL.prefix}{target.hashes['sha256']}.app.imagepackage"
    server.cut_after[url] = 250_000
    with pytest.raises(DownloadFailedError):
        check.download(target)
    server.forget_requests()
    done = check.download(target)
    assert done.path.read_bytes() == APP
    assert 0 < done.resumed_from <= 250_000
    assert [(r.path, r.range) for r in server.requests] == [(url, f"bytes={done.resumed_from}-")]
    assert list((done.path.parent / PARTIAL_DIR_NAME).iterdir()) == []


def test_kept_bytes_that_fail_the_hash_are_dropped_and_never_replayed(
    metadata_dir: Path, server: RepositoryServer
) -> None:
    check = session(metadata_dir, server)
    check.refresh()
    target = check.find_target(CHANNEL.target_path("app.imagepackage"))
    url = f"/targets/{CHANNEL.prefix}{target.hashes['sha256']}.app.imagepackage"
    server.cut_after[url] = 250_000
    with pytest.raises(DownloadFailedError):
        check.download(target)
    (kept,) = (metadata_dir.parent / "targets" / PARTIAL_DIR_NAME).iterdir()
    kept.write_bytes(bytes(kept.stat().st_size))  # the prefix rotted on flash
    with pytest.raises(UntrustedDataError):
        check.download(target)
    assert not kept.exists()
    assert check.download(target).resumed_from == 0


def test_a_server_without_ranges_sends_the_whole_file_again(
    metadata_dir: Path, server: RepositoryServer
) -> None:
    check = session(metadata_dir, server)
    check.refresh()
    target = check.find_target(CHANNEL.target_path("app.imagepackage"))
    url = f"/targets/{CHANNEL.prefix}{target.hashes['sha256']}.app.imagepackage"
    server.cut_after[url] = 250_000
    server.ranges = False
    with pytest.raises(DownloadFailedError):
        check.download(target)
    done = check.download(target)
    assert (done.path.read_bytes(), done.resumed_from) == (APP, 0)


def test_errors_say_whose_fault_it_is(
    tmp_path: Path, metadata_dir: Path, server: RepositoryServer
) -> None:
    check = session(metadata_dir, server)
    check.refresh()
    with pytest.raises(TargetNotFoundError):
        check.find_target(CHANNEL.target_path("missing.imagepackage"))
    with pytest.raises(LocalStoreError):
        refresh(tmp_path / "never-initialised", server.metadata_url)
    with pytest.raises(DownloadFailedError) as unreachable:
        refresh(metadata_dir, "http://127.0.0.1:9/metadata/")
    assert unreachable.value.cause == "DownloadError"
    with pytest.raises(UntrustedDataError):
        init_trust(tmp_path / "other", b'{"signed": {"_type": "root"}, "signatures": []}')
