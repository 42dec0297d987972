"""Building blocks for device OS tests: a fleet, devices, apps and byte flips.

Everything is real (keys, signatures, root of trust, flash); only time is fixed.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.device.boot import BootResult, boot_device
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.flash import DeviceFlash
from opensphere.device.packaging import package_application
from opensphere.formats.image_package import KeySigner, PackageSigner
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
REPO = Path(__file__).resolve().parents[2]
TEST_KEY_PATH = REPO / "samples" / "keys" / "test-signing-key.pem"
APP_COMPONENT_ID = uuid.UUID("4e2b5f4c-1d3a-4c6e-9f7b-2a8d0c1e3f5a")


def sdk_test_signer() -> KeySigner:
    """The published SDK-style test key: anyone can sign with it."""
    key = serialization.load_pem_private_key(TEST_KEY_PATH.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return KeySigner(key)


@dataclass
class Device:
    folder: Path
    fleet: Fleet

    @property
    def flash(self) -> DeviceFlash:
        return DeviceFlash(self.folder)

    def rot(self) -> EmulatedRootOfTrust:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
            return EmulatedRootOfTrust.open(self.folder)

    def boot(self, now: int = NOW_S) -> tuple[BootResult, EmulatedRootOfTrust]:
        rot = self.rot()
        return boot_device(self.flash, rot, now=now), rot

    def slot_file(self, slot: str, stage: str) -> Path:
        return self.flash.slot_dir(slot) / f"{stage}.imagepackage"


def new_device(folder: Path, fleet: Fleet, *, development: bool = False) -> Device:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
        create_emulated_device(folder, fleet, now=NOW, development=development)
    return Device(folder, fleet)


def make_app_folder(
    folder: Path,
    *,
    name: str = "Blink",
    component_id: uuid.UUID = APP_COMPONENT_ID,
    storage_kb: int | None = None,
) -> Path:
    """A minimal app: a manifest and an executable entry point."""
    (folder / "bin").mkdir(parents=True)
    entry = folder / "bin" / "app"
    entry.write_text("#!/bin/sh\necho blink\n")
    entry.chmod(0o755)
    capabilities: dict[str, object] = {}
    if storage_kb is not None:
        capabilities["MutableStorage"] = {"SizeKB": storage_kb}
    manifest = {
        "SchemaVersion": 1,
        "Name": name,
        "ComponentId": str(component_id),
        "EntryPoint": "/bin/app",
        "CmdArgs": [],
        "ApplicationType": "Default",
        "Capabilities": capabilities,
    }
    (folder / "app_manifest.json").write_text(json.dumps(manifest))
    return folder


def app_package(
    folder: Path, signer: PackageSigner, *, version: str = "1.0.0", security_version: int = 1
) -> bytes:
    return package_application(
        folder,
        signer=signer,
        version=version,
        security_version=security_version,
        build_time=NOW_S,
    )


def flip_byte(path: Path, offset: int, mask: int = 0xFF) -> None:
    """Flip bits of one byte in place (negative offsets count from the end)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def body_offset() -> int:
    """Where an image package's body starts (after the 12-byte header)."""
    return 12


def section_offset(data: bytes, tag: bytes) -> int:
    """Where the payload of metadata section ``tag`` starts, found by walking the layout."""
    (body_length,) = struct.unpack_from("<I", data, 8)
    position = 12 + body_length
    (count,) = struct.unpack_from("<I", data, position + 4)
    position += 8
    for _ in range(count):
        found, size = struct.unpack_from("<2sH", data, position)
        if found == tag:
            return int(position) + 4
        position += 4 + size
    raise KeyError(tag)
