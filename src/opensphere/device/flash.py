"""The emulated device's flash: one folder, written so that a power cut never bricks it.

Layout of a device folder::

    rot/                      root of trust (EmulatedRootOfTrust): identity key, fuses
                              (anti-rollback counters "sv-<component ID>"), manufacturing state
    idevid.pem                manufacturer certificate of the identity key
    keystore/trusted-keys.json  trusted key store (see keystore.py)
    keystore/tenant-keys.json   the tenant's image-signing keys, trusted for apps only
    boot/control.json         which OS slot is active, which one to try once, which is unconfirmed
    boot/app-trial.json       apps an update installed and not yet confirmed (AppTrial)
    slots/a/, slots/b/        one OS release each: bootloader, security-monitor, os image packages
    apps/<component ID>.imagepackage   installed apps and board configurations (one per component)
    apps/previous/<component ID>.imagepackage  the image an app on trial replaced
    capabilities/capability.cose       the device's capability file, if any
    storage/<component ID>/   per-app mutable storage (kept across app updates)
    events/queue.json         error events waiting to be uploaded (device/reporting/queue.py)
    run/                      volatile: apps unpacked by the last boot; emptied at every boot
    tmp/                      volatile: scratch space for checking an install

Crash safety. Every file that matters is replaced whole: write a temporary file in the same
folder, fsync it, ``os.replace`` it over the old one, fsync the folder. A slot is replaced whole
too: the new release is written and fsynced in a hidden staging folder, the old slot folder is
renamed aside and the staging folder renamed into place. A power cut therefore leaves each file
old or new, and each slot old, new or absent; the boot control file is the commit point that
decides what boots, and it never points at a slot being written (see install.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

from opensphere.device.errors import DeviceStateError
from opensphere.device.keystore import TrustedKeyStore

SLOTS: Final = ("a", "b")
CONTROL_FORMAT: Final = 1
IMAGE_SUFFIX: Final = ".imagepackage"
MAX_CONTROL_SIZE: Final = 4096
MAX_CAPABILITY_FILE_SIZE: Final = 64 * 1024
EVENTS_QUEUE: Final = Path("events", "queue.json")


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


@dataclass(frozen=True, slots=True)
class BootControl:
    """The boot control record.

    ``active``: the confirmed slot, booted first. ``trial``: a freshly installed slot to try
    once at the next boot. ``unconfirmed``: the slot booted on trial and not yet confirmed; if
    the device boots again before confirming, it rolls back to ``active``.
    """

    active: str = SLOTS[0]
    trial: str | None = None
    unconfirmed: str | None = None

    def __post_init__(self) -> None:
        for value in (self.active, self.trial, self.unconfirmed):
            if value is not None and value not in SLOTS:
                raise DeviceStateError(f"boot control names an unknown slot {value!r}")
        if self.active in (self.trial, self.unconfirmed):
            raise DeviceStateError("boot control: the active slot cannot also be on trial")

    def encode(self) -> bytes:
        document = {
            "format": CONTROL_FORMAT,
            "active": self.active,
            "trial": self.trial,
            "unconfirmed": self.unconfirmed,
        }
        return json.dumps(document, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> BootControl:
        try:
            document = json.loads(data)
            if document.get("format") != CONTROL_FORMAT:
                raise DeviceStateError(f"boot control format {document.get('format')!r}")
            return cls(
                active=document["active"],
                trial=document["trial"],
                unconfirmed=document["unconfirmed"],
            )
        except DeviceStateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DeviceStateError(f"the boot control record is damaged: {exc}") from exc


@dataclass(frozen=True, slots=True)
class AppTrial:
    """Apps an update installed and that are not confirmed yet, like an OS slot on trial.

    ``had_previous`` maps each component on trial to whether an older image of it is kept in
    ``apps/previous/`` to return to. ``booted``: the boot that tries them has happened; a boot
    after that without a confirmation rolls them back.
    """

    had_previous: Mapping[UUID, bool]
    booted: bool = False

    def encode(self) -> bytes:
        document = {
            "format": CONTROL_FORMAT,
            "had_previous": {str(key): value for key, value in sorted(self.had_previous.items())},
            "booted": self.booted,
        }
        return json.dumps(document, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> AppTrial:
        try:
            document = json.loads(data)
            if document.get("format") != CONTROL_FORMAT:
                raise DeviceStateError(f"app trial format {document.get('format')!r}")
            entries = document["had_previous"].items()
            had_previous = {UUID(key): bool(value) for key, value in entries}
            return cls(had_previous=had_previous, booted=bool(document["booted"]))
        except DeviceStateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DeviceStateError(f"the app trial record is damaged: {exc}") from exc


class DeviceFlash:
    """Paths and durable reads and writes of one device folder; no policy lives here."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DeviceFlash({str(self.root)!r})"

    @property
    def keystore_file(self) -> Path:
        return self.root / "keystore" / "trusted-keys.json"

    @property
    def tenant_keys_file(self) -> Path:
        return self.root / "keystore" / "tenant-keys.json"

    @property
    def control_file(self) -> Path:
        return self.root / "boot" / "control.json"

    @property
    def app_trial_file(self) -> Path:
        return self.root / "boot" / "app-trial.json"

    @property
    def apps_dir(self) -> Path:
        return self.root / "apps"

    @property
    def capability_file(self) -> Path:
        return self.root / "capabilities" / "capability.cose"

    @property
    def events_queue(self) -> Path:
        return self.root / EVENTS_QUEUE

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def slot_dir(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        return self.root / "slots" / slot

    def app_image_file(self, component_id: UUID) -> Path:
        return self.apps_dir / f"{component_id}{IMAGE_SUFFIX}"

    def previous_app_file(self, component_id: UUID) -> Path:
        return self.apps_dir / "previous" / f"{component_id}{IMAGE_SUFFIX}"

    def storage_dir(self, component_id: UUID) -> Path:
        return self.root / "storage" / str(component_id)

    def format(self, keystore: TrustedKeyStore) -> None:
        """Lay out an empty flash with its key store; the root of trust is made elsewhere."""
        for folder in ("keystore", "boot", "slots", "apps", "capabilities", "storage", "events"):
            make_durable_dir(self.root / folder)
        write_atomically(self.keystore_file, keystore.encode())
        self.write_control(BootControl())

    def read_keystore_bytes(self) -> bytes:
        try:
            return self.keystore_file.read_bytes()
        except FileNotFoundError as exc:
            raise DeviceStateError(
                f"{self.keystore_file} is missing: the device cannot verify anything"
            ) from exc

    def read_tenant_keys(self) -> TrustedKeyStore:
        """The tenant's app keys; none before the device first learned its tenant's trust."""
        try:
            return TrustedKeyStore.decode(self.tenant_keys_file.read_bytes())
        except FileNotFoundError:
            return TrustedKeyStore(())

    def write_tenant_keys(self, keys: TrustedKeyStore) -> None:
        make_durable_dir(self.tenant_keys_file.parent)
        write_atomically(self.tenant_keys_file, keys.encode())

    def app_keystore(self) -> TrustedKeyStore:
        """The key store apps verify against: the device's own plus its tenant's app keys."""
        return TrustedKeyStore.decode(self.read_keystore_bytes()).with_app_keys(
            self.read_tenant_keys()
        )

    def read_app_trial(self) -> AppTrial | None:
        try:
            with self.app_trial_file.open("rb") as file:
                return AppTrial.decode(file.read(MAX_CONTROL_SIZE + 1))
        except FileNotFoundError:
            return None

    def write_app_trial(self, trial: AppTrial | None) -> None:
        """Record the apps on trial, or (None) end the trial; either is one atomic step."""
        if trial is not None:
            write_atomically(self.app_trial_file, trial.encode())
        elif self.app_trial_file.exists():
            self.app_trial_file.unlink()
            fsync_directory(self.app_trial_file.parent)

    def remove_file(self, path: Path) -> None:
        """Delete a file durably (nothing if it is absent)."""
        if path.exists():
            path.unlink()
            fsync_directory(path.parent)

    def read_control(self) -> BootControl:
        try:
            with self.control_file.open("rb") as file:
                return BootControl.decode(file.read(MAX_CONTROL_SIZE + 1))
        except FileNotFoundError as exc:
            raise DeviceStateError(f"{self.control_file} is missing") from exc

    def write_control(self, control: BootControl) -> None:
        write_atomically(self.control_file, control.encode())

    def read_slot(self, slot: str, file_name: str) -> bytes:
        return (self.slot_dir(slot) / file_name).read_bytes()

    def write_slot(self, slot: str, files: Mapping[str, bytes]) -> None:
        """Replace a slot's whole content; a power cut leaves it old, new or absent."""
        slots = self.root / "slots"
        self._remove_leftovers(slots)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{slot}-", dir=slots))
        for name, data in files.items():
            _write_new_file(staging / name, data)
        fsync_directory(staging)
        target = self.slot_dir(slot)
        aside = slots / f".old-{slot}-{staging.name.rsplit('-', 1)[-1]}"
        if target.exists():
            os.rename(target, aside)
        os.rename(staging, target)
        fsync_directory(slots)
        shutil.rmtree(aside, ignore_errors=True)

    def installed_image_files(self) -> list[Path]:
        if not self.apps_dir.is_dir():
            return []
        return sorted(
            path
            for path in self.apps_dir.iterdir()
            if path.name.endswith(IMAGE_SUFFIX) and not path.name.startswith(".")
        )

    def write_app_image(self, component_id: UUID, data: bytes) -> None:
        write_atomically(self.app_image_file(component_id), data)

    def read_capability_file(self) -> bytes | None:
        try:
            with self.capability_file.open("rb") as file:
                return file.read(MAX_CAPABILITY_FILE_SIZE + 1)
        except FileNotFoundError:
            return None

    def write_capability_file(self, data: bytes) -> None:
        write_atomically(self.capability_file, data)

    def fresh_scratch_dir(self) -> Path:
        """An empty ``tmp/``; leftovers of an interrupted install are dropped."""
        scratch = self.root / "tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        return scratch

    def fresh_run_dir(self) -> Path:
        """An empty ``run/``: like a tmpfs, nothing in it survives a reboot."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        return self.run_dir

    @staticmethod
    def _remove_leftovers(slots: Path) -> None:
        for leftover in slots.glob(".*"):
            shutil.rmtree(leftover, ignore_errors=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the folder: a crash leaves the old or the new file."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def make_durable_dir(path: Path) -> None:
    """Create a folder (and parents) so that it survives a power cut."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_directory(created.parent)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
