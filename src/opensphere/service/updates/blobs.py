"""Where image bytes live: a content-addressed blob store, named by SHA-256.

Code asks the `BlobStore` protocol for blobs by hash and never sees where they are kept, so an
S3-compatible object store can stand in for scale-out (several service processes share one
bucket as they share the database). The default, `FolderBlobStore`, keeps one file per blob in
the data folder, `blobs/<first two hex digits>/<sha256>`. A blob is written to a temporary file,
hashed on the way, fsynced and only then renamed into place, so a reader never sees half a blob
and a blob's name always matches its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Final, Protocol

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_CHUNK: Final = 1 << 20


class BlobStoreError(Exception):
    """A blob is missing, or its bytes do not hash to its name."""


class BlobStore(Protocol):
    def put(self, sha256: str, stream: BinaryIO) -> None:
        """Store `stream` under `sha256`, refusing bytes that hash to anything else."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """The blob for reading; `BlobStoreError` if there is none."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None:
        """Forget the blob; deleting one that is not there is no error."""
        ...


class FolderBlobStore:
    """One file per blob under a folder (mode 0700), fanned out by the hash's first byte."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)

    def __repr__(self) -> str:
        return f"FolderBlobStore({self._folder})"

    def put(self, sha256: str, stream: BinaryIO) -> None:
        path = self._path(sha256)
        if path.exists():
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".new-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if digest.hexdigest() != sha256:
                raise BlobStoreError(f"the bytes given for blob {sha256} hash to something else")
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self._path(sha256).open("rb")
        except FileNotFoundError as exc:
            raise BlobStoreError(f"there is no blob {sha256} in {self._folder}") from exc

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def _path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 in lowercase hex: {sha256!r}")
        return self._folder / sha256[:2] / sha256
