"""One app's mutable storage: a single file, at most ``MutableStorage.SizeKB`` KiB.

Apps never open the file themselves. The runtime does, on the app's behalf, in the folder
secure boot assigned to that app; the folder belongs to the runtime and is closed to everyone
else (0700), so an app's own user can reach no app's storage directly, its own included. The
quota is checked before anything is written, and writes replace the file atomically, so a
refused or interrupted write leaves the old content.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Final

STORAGE_FILE: Final = "mutable-storage.bin"


class QuotaExceededError(Exception):
    """A write would make the storage larger than the manifest grants."""

    def __init__(self, size: int, quota: int) -> None:
        self.size = size
        self.quota = quota
        super().__init__(f"{size} bytes would exceed the {quota}-byte mutable storage quota")


class MutableStorage:
    def __init__(self, folder: Path, *, quota: int) -> None:
        self.folder = folder
        self.quota = quota
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.folder / STORAGE_FILE

    def prepare(self) -> None:
        """Create the folder if needed and close it to anyone but the runtime."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(self.folder, os.geteuid(), os.getegid())
        self.folder.chmod(0o700)

    def read(self) -> bytes:
        with self._lock:
            return self._read()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._replace(data)

    def append(self, data: bytes) -> None:
        with self._lock:
            self._replace(self._read() + data)

    def delete(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def _replace(self, data: bytes) -> None:
        if len(data) > self.quota:
            raise QuotaExceededError(len(data), self.quota)
        descriptor, temporary = tempfile.mkstemp(prefix=".write-", dir=self.folder)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
