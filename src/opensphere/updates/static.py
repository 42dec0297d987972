"""A repository state as plain files, for the service's routes, any static server or a CDN.

Layout, as ngclient fetches it with consistent snapshots (TUF specification §5.3 to 5.7):

    metadata/N.root.json           every root version, so any client can walk the chain
    metadata/timestamp.json        the only file whose content changes under the same name
    metadata/V.snapshot.json, metadata/V.targets.json, metadata/V.<role>.json
    targets/groups/<uuid>/<sha256>.<name>   images and manifests, named by content

Every name but `timestamp.json` is immutable, so a CDN may cache those forever.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final
from urllib.parse import quote

from tuf.api.metadata import Metadata, Root, Targets

from opensphere.updates.repository import MANIFEST_NAME, RepositoryState

_COPY_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class TargetBlob:
    """A file under `targets/`: the path clients fetch and what to serve there.

    `content` is set for manifests, which only the state holds; images (None) come from the blob
    store by their SHA-256, which is also in the path, so a CDN may cache every target forever.
    """

    url_path: str
    sha256: str
    content: bytes | None


def metadata_files(state: RepositoryState) -> dict[str, bytes]:
    """Every metadata file a client may fetch, by name, in a safe publishing order.

    Names follow the client workflow with consistent snapshots (TUF specification §5.3 to 5.6):
    `N.root.json`, `timestamp.json`, `V.snapshot.json`, `V.targets.json`, `V.<role>.json`.
    Everything a timestamp points at comes before it, so publishing in this order never shows a
    client a timestamp whose files are missing.
    """
    files = {
        f"{Metadata[Root].from_bytes(data).signed.version}.root.json": data for data in state.roots
    }
    for role, data in sorted(state.delegated.items()):
        files[f"{_version(data)}.{quote(role, safe='')}.json"] = data
    files[f"{_version(state.targets)}.targets.json"] = state.targets
    files[f"{_version(state.snapshot)}.snapshot.json"] = state.snapshot
    files["timestamp.json"] = state.timestamp
    return files


def target_blobs(state: RepositoryState) -> list[TargetBlob]:
    """Every target file the current metadata lists, under its hash-prefixed path."""
    blobs = []
    for role, data in sorted(state.delegated.items()):
        for path, target in Metadata[Targets].from_bytes(data).signed.targets.items():
            sha256 = target.hashes["sha256"]
            directory, _, name = path.rpartition("/")
            content = state.manifests[role] if name == MANIFEST_NAME else None
            blobs.append(TargetBlob(f"{directory}/{sha256}.{name}", sha256, content))
    return blobs


def export_static(
    state: RepositoryState, folder: Path, *, open_blob: Callable[[str], IO[bytes]]
) -> list[Path]:
    """Write `folder/metadata/` and `folder/targets/` for any static server or CDN.

    Versioned and hash-named files never change once written, so they are skipped when present
    (a re-export writes only what is new) and older versions stay for clients mid-update; only
    `timestamp.json` is replaced, last. `open_blob(sha256)` reads an image from the blob store;
    its hash is checked on the way. Returns the files written, e.g. to push or purge on a CDN.
    """
    written: list[Path] = []
    for blob in target_blobs(state):
        path = folder / "targets" / blob.url_path
        if path.exists():
            continue
        if blob.content is not None:
            _write_file(path, blob.content)
        else:
            with open_blob(blob.sha256) as source:
                _copy_checked(source, path, blob.sha256)
        written.append(path)
    for name, data in metadata_files(state).items():
        path = folder / "metadata" / name
        if path.exists():
            if path.read_bytes() == data:
                continue
            if name != "timestamp.json":
                raise ValueError(f"{path} was published with other content; versions must grow")
        _write_file(path, data)
        written.append(path)
    return written


def _version(data: bytes) -> int:
    return Metadata.from_bytes(data).signed.version


def _write_file(path: Path, data: bytes) -> None:
    """Atomically, readable by a web server running as another user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temp:
        temp.write(data)
    os.chmod(temp.name, 0o644)
    os.replace(temp.name, path)


def _copy_checked(source: IO[bytes], path: Path, sha256: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temp:
        try:
            while chunk := source.read(_COPY_CHUNK):
                digest.update(chunk)
                temp.write(chunk)
            if digest.hexdigest() != sha256:
                raise ValueError(f"blob {sha256} has other content in the blob store")
        except BaseException:
            temp.close()
            os.unlink(temp.name)
            raise
    os.chmod(temp.name, 0o644)
    os.replace(temp.name, path)
