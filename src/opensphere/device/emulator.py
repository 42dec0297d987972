"""Emulated fleets and devices: what a factory and an OS vendor do before a device first boots.

A fleet folder stands for the vendor side of an emulated fleet (on Azure Sphere, Microsoft
and the manufacturer). It holds, all created once and never overwritten::

    manufacturer-ca.key / .pem     manufacturer CA: certifies each device's identity (IDevID)
    os-signing-key.pem             signs boot-chain images (key usage "os")
    app-signing-key.pem            signs production apps and board configurations ("app")
    capability-signing-key.pem     signs capability files ("capability")
    os-release/*.imagepackage      the OS release every new device gets in both slots

A folder that holds only a manufacturer CA (as ``sphere manufacturer ca create`` leaves it)
is completed once by ``Fleet.open_or_create``: the vendor keys and the OS release are added
next to the CA, and whatever exists is kept.

Each device manufactured from the fleet trusts the three public keys (usage-restricted) and
starts with the same signed OS release, so the whole fleet has the same known-good boot
measurements (``release_reference_values``). The private keys are files (mode 0600): fine for
emulation, not for production.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.api import schemas
from opensphere.device.boot import KEYSTORE_STAGE
from opensphere.device.capabilities import apply_capability
from opensphere.device.errors import DeviceStateError
from opensphere.device.flash import SLOTS, DeviceFlash, fsync_directory, make_durable_dir
from opensphere.device.keystore import KeyUsage, TrustedKey, TrustedKeyStore
from opensphere.device.packaging import load_signing_key, package_image
from opensphere.device.policy import BOOT_STAGES, BootStage
from opensphere.factory.manufacturer import (
    create_manufacturer_ca,
    load_manufacturer_ca,
    manufacture_device,
    save_manufacturer_ca,
)
from opensphere.formats.capability import CapabilityGrant, DeviceCapability, encode_capability_file
from opensphere.formats.device_id import DeviceId
from opensphere.formats.image_package import KeySigner, key_thumbprint, parse_package
from opensphere.formats.safe_tar import pack_directory

CA_KEY_FILE: Final = "manufacturer-ca.key"
CA_CERT_FILE: Final = "manufacturer-ca.pem"
OS_RELEASE_DIR: Final = "os-release"
CA_VALIDITY_DAYS: Final = 3650
INITIAL_OS_VERSION: Final = "1.0.0"
INITIAL_OS_SECURITY_VERSION: Final = 1
_KEY_FILES: Final = {
    KeyUsage.OS: "os-signing-key.pem",
    KeyUsage.APP: "app-signing-key.pem",
    KeyUsage.CAPABILITY: "capability-signing-key.pem",
}


@dataclass(frozen=True, slots=True)
class Fleet:
    """The vendor keys and OS release of an emulated fleet; see the module docstring."""

    folder: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    os_signer: KeySigner
    app_signer: KeySigner
    capability_signer: KeySigner

    @classmethod
    def create(cls, folder: Path, *, now: dt.datetime) -> Fleet:
        """New keys and an initial OS release; refuses a folder that already holds a CA."""
        folder = Path(folder)
        make_durable_dir(folder)
        _create_ca(folder, now)
        return cls._complete(folder, now=now)

    @classmethod
    def open_or_create(cls, folder: Path, *, now: dt.datetime) -> Fleet:
        """The fleet in ``folder``, first adding what is missing of it; nothing is overwritten.

        A manufacturer CA made elsewhere is kept and gets the vendor keys and the initial OS
        release next to it, so its devices are bootable. Concurrent callers end up with the
        same fleet: each file and the release folder appear whole, and only once.
        """
        folder = Path(folder)
        make_durable_dir(folder)
        if not (folder / CA_KEY_FILE).exists():
            _create_ca(folder, now)
        return cls._complete(folder, now=now)

    @classmethod
    def load(cls, folder: Path) -> Fleet:
        """An existing, complete fleet; never writes anything."""
        folder = Path(folder)
        if not cls.exists(folder):
            raise DeviceStateError(
                f"{folder} holds no complete emulated fleet (manufacturer CA, vendor signing keys "
                "and OS release): make one with 'sphere device-emulator create --fleet' or "
                "'sphere device manufacture --ca'"
            )
        ca_key, ca_cert = load_manufacturer_ca(
            key_path=folder / CA_KEY_FILE, cert_path=folder / CA_CERT_FILE
        )
        return cls(
            folder=folder,
            ca_key=ca_key,
            ca_cert=ca_cert,
            os_signer=load_signing_key(folder / _KEY_FILES[KeyUsage.OS]),
            app_signer=load_signing_key(folder / _KEY_FILES[KeyUsage.APP]),
            capability_signer=load_signing_key(folder / _KEY_FILES[KeyUsage.CAPABILITY]),
        )

    @classmethod
    def exists(cls, folder: Path) -> bool:
        """Whether ``folder`` holds every file of a fleet."""
        folder = Path(folder)
        files = [
            CA_KEY_FILE,
            CA_CERT_FILE,
            *_KEY_FILES.values(),
            *(f"{OS_RELEASE_DIR}/{stage.file_name}" for stage in BOOT_STAGES),
        ]
        return all((folder / name).is_file() for name in files)

    @classmethod
    def _complete(cls, folder: Path, *, now: dt.datetime) -> Fleet:
        """Load the CA, load or create each vendor key, then publish the release if absent."""
        ca_key, ca_cert = load_manufacturer_ca(
            key_path=folder / CA_KEY_FILE, cert_path=folder / CA_CERT_FILE
        )
        signers = {usage: _load_or_create_key(folder / name) for usage, name in _KEY_FILES.items()}
        fleet = cls(
            folder=folder,
            ca_key=ca_key,
            ca_cert=ca_cert,
            os_signer=signers[KeyUsage.OS],
            app_signer=signers[KeyUsage.APP],
            capability_signer=signers[KeyUsage.CAPABILITY],
        )
        if not (folder / OS_RELEASE_DIR).exists():
            release = fleet.build_os_release(
                version=INITIAL_OS_VERSION,
                security_version=INITIAL_OS_SECURITY_VERSION,
                build_time=int(now.timestamp()),
            )
            _publish_release(folder / OS_RELEASE_DIR, release)
        return fleet

    def keystore(self) -> TrustedKeyStore:
        """What every device of the fleet trusts, each key for its one usage."""
        return TrustedKeyStore(
            (
                TrustedKey("os-vendor", self.os_signer.public_key(), frozenset({KeyUsage.OS})),
                TrustedKey("app-signing", self.app_signer.public_key(), frozenset({KeyUsage.APP})),
                TrustedKey(
                    "capability-signing",
                    self.capability_signer.public_key(),
                    frozenset({KeyUsage.CAPABILITY}),
                ),
            )
        )

    def os_release(self) -> list[bytes]:
        """The fleet's initial OS release, in boot-stage order."""
        return [
            (self.folder / OS_RELEASE_DIR / stage.file_name).read_bytes() for stage in BOOT_STAGES
        ]

    def reference_values(self, *, description: str = "") -> schemas.OsReleaseCreate:
        """What the operator registers so that the fleet's devices pass attestation."""
        return release_reference_values(self.keystore(), self.os_release(), description=description)

    def build_os_release(
        self, *, version: str, security_version: int, build_time: int, payload_size: int = 0
    ) -> list[bytes]:
        """Signed stand-in images for every boot stage, in boot-stage order.

        Each body is a tar of a few files naming the stage and version; ``payload_size`` adds
        that many deterministic filler bytes per image, to give images a realistic size.
        """
        return [
            package_image(
                image_type=stage.image_type,
                component_id=stage.component_id,
                name=f"OpenSphere {stage.name}",
                body=_stand_in_body(stage, version, payload_size),
                signer=self.os_signer,
                version=version,
                security_version=security_version,
                build_time=build_time,
            )
            for stage in BOOT_STAGES
        ]

    def issue_capability(
        self,
        device_id: DeviceId,
        capabilities: Iterable[DeviceCapability],
        *,
        now: int,
        expires_at: int | None = None,
    ) -> bytes:
        """A capability file for one device, as the service would sign it."""
        grant = CapabilityGrant(
            device_id=device_id,
            capabilities=frozenset(capabilities),
            issued_at=now,
            signer_thumbprint=key_thumbprint(self.capability_signer.public_key()),
            expires_at=expires_at,
        )
        return encode_capability_file(grant, self.capability_signer.sign)


def create_emulated_device(
    folder: Path, fleet: Fleet, *, now: dt.datetime, development: bool = False
) -> DeviceId:
    """Manufacture a device, lay out its flash and put the fleet's OS release in both slots.

    With ``development`` the device also gets an appDevelopment capability, as
    ``enable-development`` would give it.
    """
    device_id = manufacture_device(folder, fleet.ca_key, fleet.ca_cert, now=now)
    flash = DeviceFlash(folder)
    keystore = fleet.keystore()
    flash.format(keystore)
    release = dict(zip((s.file_name for s in BOOT_STAGES), fleet.os_release(), strict=True))
    for slot in SLOTS:
        flash.write_slot(slot, release)
    if development:
        seconds = int(now.timestamp())
        data = fleet.issue_capability(device_id, [DeviceCapability.APP_DEVELOPMENT], now=seconds)
        apply_capability(flash, data, keystore=keystore, device_id=device_id, now=seconds)
    return device_id


def release_reference_values(
    keystore: TrustedKeyStore, release: Sequence[bytes], *, description: str = ""
) -> schemas.OsReleaseCreate:
    """The measurements a device with ``keystore`` makes when it boots ``release``; no I/O.

    They are the first entries of its boot log (``boot_device``): the key store file exactly
    as ``DeviceFlash.format`` writes it, then each boot stage's whole package. The version is
    the OS stage's, which the device reports as its OS version. Capability, app and board
    configuration measurements follow on a device, but they are not part of the OS release.
    """
    images = list(zip(BOOT_STAGES, release, strict=True))
    measurements = [
        schemas.ReferenceMeasurement(
            stage=KEYSTORE_STAGE, digest=hashlib.sha256(keystore.encode()).hexdigest()
        ),
        *(
            schemas.ReferenceMeasurement(stage=stage.name, digest=hashlib.sha256(data).hexdigest())
            for stage, data in images
        ),
    ]
    version = parse_package(images[-1][1]).metadata.version
    return schemas.OsReleaseCreate(
        version=version, description=description, measurements=measurements
    )


def _create_ca(folder: Path, now: dt.datetime) -> None:
    ca_key, ca_cert = create_manufacturer_ca(
        f"OpenSphere emulated fleet CA ({folder.name})", now=now, validity_days=CA_VALIDITY_DAYS
    )
    save_manufacturer_ca(
        ca_key, ca_cert, key_path=folder / CA_KEY_FILE, cert_path=folder / CA_CERT_FILE
    )


def _load_or_create_key(path: Path) -> KeySigner:
    """The signing key in ``path``; a new one if there is none (whoever creates it first wins)."""
    if not path.exists():
        _create_once(path, _pem(ec.generate_private_key(ec.SECP256R1())), mode=0o600)
    return load_signing_key(path)


def _publish_release(release_dir: Path, release: Sequence[bytes]) -> None:
    """Write the release into a hidden folder, then rename it into place whole, only once."""
    staging = release_dir.parent / f".{release_dir.name}-{secrets.token_hex(8)}"
    staging.mkdir()
    try:
        for stage, data in zip(BOOT_STAGES, release, strict=True):
            _create_once(staging / stage.file_name, data, mode=0o644)
        fsync_directory(staging)
        try:
            os.rename(staging, release_dir)
        except OSError:
            if not release_dir.is_dir():
                raise  # not the "another caller published it first" refusal
        fsync_directory(release_dir.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stand_in_body(stage: BootStage, version: str, payload_size: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="opensphere-os-") as temp:
        root = Path(temp)
        (root / "STAGE").write_text(f"{stage.name}\n")
        (root / "VERSION").write_text(f"{version}\n")
        (root / "README").write_text(
            f"Stand-in for the {stage.name} of an emulated OpenSphere device: it is verified "
            "and measured at boot like a real one, but nothing in it runs.\n"
        )
        if payload_size:
            seed = f"{stage.name}/{version}".encode()
            (root / "payload.bin").write_bytes(hashlib.shake_256(seed).digest(payload_size))
        return pack_directory(root)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _create_once(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` whole and durably unless it exists: a fleet's files are never replaced.

    The data goes to a temporary file first and is hard-linked into place, so nobody ever
    reads a half-written key, and a file someone else created meanwhile is kept.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    fsync_directory(path.parent)
