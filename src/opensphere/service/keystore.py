"""Where the service's private keys live: the root CA, the tenant CAs, the credential key.

Code asks the `KeyStore` protocol for keys by id and never sees where they are kept, so
an HSM or a cloud KMS can stand in later. The default, `FileKeyStore`, keeps one PEM
file per key in a folder of the data directory (mode 0700, files 0600), encrypted with a
passphrase from the settings when one is given. Several service processes share it the
way they share the database: a key file is created once, atomically, and never rewritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_KEY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class KeyStoreError(Exception):
    """A key is missing, damaged, or cannot be decrypted with the configured passphrase."""


class KeyStore(Protocol):
    def create(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        """Generate and keep a new P-256 key; refuse an id already taken."""
        ...

    def load(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        """The key kept under `key_id`; raise `KeyStoreError` if there is none."""
        ...

    def load_or_create(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        """The key under `key_id`, created on first use; concurrent first uses agree."""
        ...


class FileKeyStore:
    """PEM files, created exclusively, cached in memory once read (keys never change)."""

    def __init__(self, folder: Path, *, passphrase: bytes | None = None) -> None:
        self._folder = Path(folder)
        self._passphrase = passphrase or None
        self._cache: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        encrypted = "encrypted" if self._passphrase else "unencrypted"
        return f"FileKeyStore({self._folder}, {encrypted})"

    @property
    def encrypted(self) -> bool:
        return self._passphrase is not None

    def create(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        key = ec.generate_private_key(ec.SECP256R1())
        if not self._publish(key_id, key):
            raise KeyStoreError(f"key {key_id!r} already exists; key ids are never reused")
        return key

    def load(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        cached = self._cache.get(key_id)
        if cached is not None:
            return cached
        path = self._path(key_id)
        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyStoreError(
                f"key {key_id!r} is not in {self._folder}: every service process must share "
                "the same key folder"
            ) from exc
        try:
            key = serialization.load_pem_private_key(pem, password=self._passphrase)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(
                f"key {key_id!r} cannot be read: damaged, or the key passphrase is wrong"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"key {key_id!r} is not an ECDSA key")
        with self._lock:
            self._cache[key_id] = key
        return key

    def import_key(self, key_id: str, key: ec.EllipticCurvePrivateKey) -> None:
        """Adopt a key made elsewhere (the fleet's capability key); ids are never reused."""
        if not self._publish(key_id, key):
            raise KeyStoreError(f"key {key_id!r} already exists; key ids are never reused")

    def load_or_create(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        if key_id not in self._cache and not self._path(key_id).exists():
            self._publish(key_id, ec.generate_private_key(ec.SECP256R1()))
        return self.load(key_id)

    def _publish(self, key_id: str, key: ec.EllipticCurvePrivateKey) -> bool:
        """Write the key to a temporary file, then link it into place: all or nothing.

        `os.link` fails if the name is taken, so when two processes race, exactly one
        key wins and both then read the winner's file.
        """
        path = self._path(key_id)
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        fd, temporary = tempfile.mkstemp(dir=self._folder, prefix=".new-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        with self._lock:
            self._cache[key_id] = key
        return True

    def _path(self, key_id: str) -> Path:
        if not _KEY_ID.match(key_id):
            raise ValueError(f"not a key id: {key_id!r}")
        return self._folder / f"{key_id}.pem"
