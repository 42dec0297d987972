"""The device's TUF client: python-tuf's ngclient, with bounded downloads and our own types.

ngclient does every check of the TUF client workflow and persists only what it verified, under
non-versioned names (`root.json`, `timestamp.json`, `snapshot.json`, `targets.json`,
`<role>.json`). This wrapper adds what ngclient leaves to its user: a fetcher with timeouts and
a whole-transfer deadline, resumable target downloads, atomic placement of verified targets,
typed results, and errors translated from `tuf.api.exceptions` at this boundary, so callers never
handle tuf's own: `UntrustedDataError` for data refused (tuf's RepositoryError) versus
`DownloadFailedError` for a failing network (tuf's DownloadError).

Resuming works inside ngclient's fetcher interface: while a target is fetched, the fetcher first
replays the bytes kept from an interrupted attempt, then asks the server for the rest with an
HTTP Range request, and appends what arrives to the kept file. ngclient still counts every byte
against the signed length and hashes the whole file, so a replayed prefix is checked exactly like
fresh data; when a check fails the kept bytes are deleted, so a bad prefix is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Timestamp
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from opensphere.updates.repository import MANIFEST_FORMAT, Channel

PARTIAL_DIR_NAME: Final = ".partial-downloads"

# Updater needs a metadata URL even when it only loads a root and makes no request.
_NO_NETWORK: Final = "http://no-network.invalid/"
_REPLAY_CHUNK: Final = 1 << 16


class UpdateClientError(Exception):
    """Base of the client's errors; `cause` names the tuf exception behind it, for the log."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class UntrustedDataError(UpdateClientError):
    """The repository sent data that failed verification: an attack or a broken repository.

    Rollback, freeze, mix-and-match, bad signatures and a target whose hash does not match all
    end here. Nothing of it was persisted.
    """


class DownloadFailedError(UpdateClientError):
    """The network failed us: unreachable, an HTTP error, too slow, or more bytes than allowed."""


class TargetNotFoundError(UpdateClientError):
    """The verified metadata lists no such target."""

    def __init__(self, target_path: str) -> None:
        super().__init__(f"no target {target_path!r} in the repository")
        self.target_path = target_path


class ManifestFormatError(UpdateClientError):
    """A channel manifest (verified by hash) is in a format this client does not know."""


class LocalStoreError(UpdateClientError):
    """The device's own metadata or target folder is missing, unreadable or corrupt."""


@dataclass(frozen=True)
class ClientSettings:
    """Bounds on every download: sizes for metadata (targets carry their signed length), time."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    transfer_timeout: float = 1800.0
    chunk_size: int = 1 << 16
    root_max_length: int = 512_000
    timestamp_max_length: int = 16_384
    snapshot_max_length: int = 2_000_000
    targets_max_length: int = 5_000_000
    max_root_rotations: int = 256
    max_delegations: int = 32
    user_agent: str = "opensphere-device"

    def updater_config(self) -> UpdaterConfig:
        return UpdaterConfig(
            max_root_rotations=self.max_root_rotations,
            max_delegations=self.max_delegations,
            root_max_length=self.root_max_length,
            timestamp_max_length=self.timestamp_max_length,
            snapshot_max_length=self.snapshot_max_length,
            targets_max_length=self.targets_max_length,
        )


DEFAULT_SETTINGS: Final = ClientSettings()


@dataclass(frozen=True)
class RefreshResult:
    """The trusted versions after a refresh; `changed` is False when nothing new was published."""

    timestamp_version: int
    snapshot_version: int
    changed: bool


@dataclass(frozen=True)
class TargetInfo:
    """A target as the verified metadata describes it."""

    path: str
    length: int
    hashes: Mapping[str, str]
    custom: Mapping[str, Any]
    tuf_target: TargetFile = field(repr=False, compare=False)

    @classmethod
    def from_tuf(cls, target: TargetFile) -> TargetInfo:
        custom = target.custom if isinstance(target.custom, dict) else {}
        return cls(target.path, target.length, dict(target.hashes), custom, target)


@dataclass(frozen=True)
class DownloadedTarget:
    """A verified target on local disk; `cached`: it was there already and nothing was fetched."""

    target: TargetInfo
    path: Path
    cached: bool
    resumed_from: int


@dataclass
class _Resume:
    """The kept bytes of one target download, and how many of them the last fetch reused."""

    path: Path
    reused: int = 0

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class BoundedFetcher(FetcherInterface):
    """ngclient's network layer on urllib3, with timeouts, a transfer deadline and resume.

    ngclient already bounds every fetch by length (the signed length, or the configured maximum
    for metadata of unknown length) and raises when more arrives; what it leaves to the fetcher
    is time: a connect and a read timeout, and a deadline for the whole transfer so a server
    trickling bytes cannot hold the device forever (slow retrieval).
    """

    def __init__(
        self,
        settings: ClientSettings = DEFAULT_SETTINGS,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._headers = dict(headers or {})
        self._pool = urllib3.PoolManager(retries=urllib3.Retry(total=3, read=0))
        self._timeout = urllib3.Timeout(
            connect=settings.connect_timeout, read=settings.read_timeout
        )
        self._resume: _Resume | None = None

    @contextmanager
    def resuming(self, partial: Path) -> Iterator[_Resume]:
        """Fetches inside the block replay and extend `partial` (one target download)."""
        self._resume = _Resume(partial)
        try:
            yield self._resume
        finally:
            self._resume = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        resume = self._resume
        if resume is None:
            return self._stream(self._get(url, 0))
        offset = resume.size()
        response = self._get(url, offset)
        if offset and not _continues_at(response, offset):
            # A 200 is the whole file (the server ignores ranges); anything else says the kept
            # bytes are no prefix of the server's file. Either way, start again from zero.
            resume.discard()
            offset = 0
            if response.status != 200:
                _abandon(response)
                response = self._get(url, 0)
        return self._replay_and_extend(response, resume, offset)

    def _get(self, url: str, offset: int) -> urllib3.BaseHTTPResponse:
        headers = {**self._headers, "User-Agent": self._settings.user_agent}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self._pool.request(
                "GET", url, headers=headers, preload_content=False, timeout=self._timeout
            )
        except urllib3.exceptions.MaxRetryError as exc:
            # urllib3 files a refused connection under timeouts too; it is no slow server.
            refused = isinstance(exc.reason, urllib3.exceptions.NewConnectionError)
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError) and not refused:
                raise tuf_errors.SlowRetrievalError(f"timed out fetching {url}") from exc
            raise tuf_errors.DownloadError(f"cannot fetch {url}: {exc.reason}") from exc
        if response.status >= 400 and not (offset and response.status == 416):
            _abandon(response)
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return response

    def _stream(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        deadline = time.monotonic() + self._settings.transfer_timeout
        complete = False
        try:
            for chunk in response.stream(self._settings.chunk_size):
                if time.monotonic() > deadline:
                    raise tuf_errors.SlowRetrievalError("transfer took longer than allowed")
                yield chunk
            complete = True
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError("server stopped sending") from exc
        except urllib3.exceptions.HTTPError as exc:
            # ngclient wraps errors from starting a fetch, not from reading it: do it here.
            raise tuf_errors.DownloadError(f"transfer broke off: {exc}") from exc
        finally:
            if complete:
                response.release_conn()
            else:
                _abandon(response)

    def _replay_and_extend(
        self, response: urllib3.BaseHTTPResponse, resume: _Resume, offset: int
    ) -> Iterator[bytes]:
        resume.path.parent.mkdir(parents=True, exist_ok=True)
        with resume.path.open("ab" if offset else "wb") as kept:
            if offset:
                with resume.path.open("rb") as replay:
                    while chunk := replay.read(min(_REPLAY_CHUNK, offset - replay.tell())):
                        yield chunk
                resume.reused = offset
            for chunk in self._stream(response):
                yield chunk
                # Kept only once ngclient accepted it: a chunk past the signed length is not.
                kept.write(chunk)
                kept.flush()


class UpdateSession:
    """One update check: refresh once, then look up and download any number of targets.

    Mirrors ngclient's Updater, which refreshes at most once in its life; the trust anchor is
    the root in `metadata_dir` (see `init_trust`). `headers` go with every request, e.g. the
    device credential the service's repository asks for.
    """

    def __init__(
        self,
        metadata_dir: Path,
        metadata_url: str,
        *,
        target_dir: Path | None = None,
        target_base_url: str | None = None,
        settings: ClientSettings = DEFAULT_SETTINGS,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._metadata_dir = metadata_dir
        self._target_dir = target_dir
        self._fetcher = BoundedFetcher(settings, headers=headers)
        with _translated("loading the trusted root", local=True):
            self._updater = Updater(
                str(metadata_dir),
                metadata_url,
                target_base_url=target_base_url,
                fetcher=self._fetcher,
                config=settings.updater_config(),
                bootstrap=None,
            )

    def refresh(self) -> RefreshResult:
        """Update root, timestamp, snapshot and top-level targets (TUF specification §5.3-5.6)."""
        timestamp_file = self._metadata_dir / "timestamp.json"
        before = _read_if_present(timestamp_file)
        with _translated("refresh"):
            self._updater.refresh()
        with _translated("reading the refreshed timestamp", local=True):
            after = timestamp_file.read_bytes()
        timestamp = Metadata[Timestamp].from_bytes(after).signed
        return RefreshResult(timestamp.version, timestamp.snapshot_meta.version, after != before)

    def find_target(self, target_path: str) -> TargetInfo:
        """The target's verified description, loading delegated roles on the way."""
        with _translated(f"looking up {target_path}"):
            target = self._updater.get_targetinfo(target_path)
        if target is None:
            raise TargetNotFoundError(target_path)
        return TargetInfo.from_tuf(target)

    def download(self, target: TargetInfo) -> DownloadedTarget:
        """Fetch and verify a target into the target folder, unless a verified copy is there."""
        if self._target_dir is None:
            raise RuntimeError("this session has no target folder")
        destination = self._target_dir / quote(target.path, safe="")
        if self._updater.find_cached_target(target.tuf_target, str(destination)):
            return DownloadedTarget(target, destination, cached=True, resumed_from=0)
        staging = self._target_dir / PARTIAL_DIR_NAME
        key = _download_key(target)
        verified = staging / f"{key}.verified"
        with self._fetcher.resuming(staging / f"{key}.part") as resume:
            try:
                with _translated(f"downloading {target.path}"):
                    self._updater.download_target(target.tuf_target, str(verified))
            except UpdateClientError as exc:
                # Bytes that failed a check must not be replayed; a broken network keeps them.
                too_long = isinstance(exc.__cause__, tuf_errors.DownloadLengthMismatchError)
                if isinstance(exc, UntrustedDataError) or too_long:
                    resume.discard()
                raise
        with _translated(f"placing {target.path}", local=True):
            os.replace(verified, destination)
        resume.discard()
        return DownloadedTarget(target, destination, cached=False, resumed_from=resume.reused)

    def channel_targets(self, channel: Channel) -> list[TargetInfo]:
        """What a group or feed offers now: its manifest's names, each looked up and verified."""
        manifest = self.download(self.find_target(channel.manifest_path))
        try:
            document = json.loads(manifest.path.read_bytes())
            if document["format"] != MANIFEST_FORMAT:
                raise ManifestFormatError(f"unknown manifest format {document['format']!r}")
            names = [str(name) for name in document["targets"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestFormatError(f"unreadable manifest for {channel.role}") from exc
        return [self.find_target(channel.target_path(name)) for name in names]


def init_trust(metadata_dir: Path, root: bytes) -> None:
    """Trust `root` from now on, as provisioning does; no request is made.

    ngclient checks that it is a root signed by its own threshold, and stores it.
    """
    metadata_dir.mkdir(parents=True, exist_ok=True)
    with _translated("trusting the initial root"):
        Updater(str(metadata_dir), _NO_NETWORK, bootstrap=root)


def refresh(
    metadata_dir: Path, metadata_url: str, *, settings: ClientSettings = DEFAULT_SETTINGS
) -> RefreshResult:
    """One update check of the top-level metadata."""
    return UpdateSession(metadata_dir, metadata_url, settings=settings).refresh()


def download_target(
    metadata_dir: Path,
    metadata_url: str,
    target_path: str,
    target_base_url: str,
    target_dir: Path,
    *,
    settings: ClientSettings = DEFAULT_SETTINGS,
) -> DownloadedTarget:
    """Refresh, then fetch one target; one already present with matching hashes is not fetched."""
    session = UpdateSession(
        metadata_dir,
        metadata_url,
        target_dir=target_dir,
        target_base_url=target_base_url,
        settings=settings,
    )
    session.refresh()
    return session.download(session.find_target(target_path))


@contextmanager
def _translated(action: str, *, local: bool = False) -> Iterator[None]:
    """tuf's exceptions to ours, at the boundary; `local` when the data came from our own disk."""
    try:
        yield
    except tuf_errors.RepositoryError as exc:
        error = LocalStoreError if local else UntrustedDataError
        raise error(f"{action}: {exc}", type(exc).__name__) from exc
    except tuf_errors.DownloadError as exc:
        raise DownloadFailedError(f"{action}: {exc}", type(exc).__name__) from exc
    except OSError as exc:
        raise LocalStoreError(f"{action}: {exc}", type(exc).__name__) from exc


def _abandon(response: urllib3.BaseHTTPResponse) -> None:
    """Close a response read only in part, so its connection is never reused mid-body."""
    response.close()
    response.release_conn()


def _continues_at(response: urllib3.BaseHTTPResponse, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")
    return response.status == 206 and content_range.startswith(f"bytes {offset}-")


def _download_key(target: TargetInfo) -> str:
    """A file name for the kept bytes, safe whatever the signed path and hashes contain."""
    described = json.dumps([target.path, target.length, sorted(target.hashes.items())])
    return hashlib.sha256(described.encode()).hexdigest()


def _read_if_present(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
