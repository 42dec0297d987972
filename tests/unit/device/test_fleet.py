"""Emulated fleets: a manufacturer CA grows into a fleet once; its reference values are a boot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.device.emulator import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    INITIAL_OS_VERSION,
    Fleet,
)
from opensphere.device.errors import DeviceStateError
from opensphere.factory import ManufacturingError, create_manufacturer_ca, save_manufacturer_ca
from opensphere.formats.evidence import Measurement
from support.device_os import NOW, new_device

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet.create(tmp_path_factory.mktemp("fleet"), now=NOW)


def _manufacturer_ca(folder: Path) -> Path:
    """What 'sphere manufacturer ca create --out folder' leaves: the CA and nothing else."""
    folder.mkdir()
    key, certificate = create_manufacturer_ca("Contoso Mfg CA", now=NOW, validity_days=365)
    save_manufacturer_ca(
        key, certificate, key_path=folder / CA_KEY_FILE, cert_path=folder / CA_CERT_FILE
    )
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _reference(fleet: Fleet) -> tuple[Measurement, ...]:
    return tuple(
        Measurement(m.stage, bytes.fromhex(m.digest)) for m in fleet.reference_values().measurements
    )


def test_a_manufacturer_ca_alone_becomes_a_fleet_once(tmp_path: Path) -> None:
    folder = _manufacturer_ca(tmp_path / "ca")
    ca_files = _files(folder)
    with pytest.raises(DeviceStateError, match="sphere device manufacture"):
        Fleet.load(folder)

    fleet = Fleet.open_or_create(folder, now=NOW)

    assert Fleet.exists(folder)
    made = _files(folder)
    assert {name: made[name] for name in ca_files} == ca_files
    assert sorted(made) == [
        "app-signing-key.pem",
        "capability-signing-key.pem",
        CA_KEY_FILE,
        CA_CERT_FILE,
        "os-release/bootloader.imagepackage",
        "os-release/os.imagepackage",
        "os-release/security-monitor.imagepackage",
        "os-signing-key.pem",
    ]
    again = Fleet.open_or_create(folder, now=NOW)
    assert _files(folder) == made
    assert again.reference_values() == fleet.reference_values()
    assert Fleet.load(folder).keystore() == fleet.keystore()
    with pytest.raises(ManufacturingError, match="refusing to overwrite"):
        Fleet.create(folder, now=NOW)


def test_an_existing_vendor_key_is_kept(tmp_path: Path) -> None:
    folder = _manufacturer_ca(tmp_path / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    (folder / "os-signing-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "os-signing-key.pem").chmod(0o600)
    fleet = Fleet.open_or_create(folder, now=NOW)
    assert fleet.os_signer.public_key() == key.public_key()


def test_concurrent_callers_get_the_same_fleet(tmp_path: Path) -> None:
    folder = _manufacturer_ca(tmp_path / "ca")
    with ThreadPoolExecutor(4) as pool:
        fleets = list(pool.map(lambda _: Fleet.open_or_create(folder, now=NOW), range(4)))
    assert len({f.reference_values().model_dump_json() for f in fleets}) == 1
    assert not [path for path in folder.iterdir() if path.name.startswith(".")]


def test_reference_values_are_what_a_device_measures_at_boot(tmp_path: Path, fleet: Fleet) -> None:
    device = new_device(tmp_path / "device", fleet)
    result, rot = device.boot()
    reference = fleet.reference_values(description="initial release")
    assert (reference.version, reference.description) == (INITIAL_OS_VERSION, "initial release")
    assert result.os_version == reference.version
    assert rot.event_log() == _reference(fleet)
    assert [m.stage for m in reference.measurements] == [
        "trusted-keystore",
        "bootloader",
        "security-monitor",
        "os",
    ]


def test_a_development_device_measures_its_capability_after_the_release(
    tmp_path: Path, fleet: Fleet
) -> None:
    device = new_device(tmp_path / "device", fleet, development=True)
    _, rot = device.boot()
    reference = _reference(fleet)
    log = rot.event_log()
    assert log[: len(reference)] == reference
    assert [m.stage for m in log[len(reference) :]] == ["capability"]
