"""EmulatedRootOfTrust: keeps the key inside, moves state one way, refuses damaged state."""

from __future__ import annotations

import hashlib
import inspect
import pickle
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.formats.device_id import device_id_from_public_key
from opensphere.formats.evidence import ManufacturingState, Measurement, SecurityState
from opensphere.formats.signatures import verify_es256
from opensphere.rot import (
    AlreadyManufacturedError,
    CounterRollbackError,
    EmulatedRootOfTrust,
    EmulatedRootOfTrustWarning,
    ManufacturingStateError,
    RootOfTrust,
    RootOfTrustMissingError,
    SealedStateError,
)
from opensphere.rot.software import OTP_FILE, ROT_DIRECTORY, SEALED_FILE

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "device"


@pytest.fixture
def rot(folder: Path) -> EmulatedRootOfTrust:
    return EmulatedRootOfTrust.manufacture(folder)


def sealed_path(folder: Path) -> Path:
    return folder / ROT_DIRECTORY / SEALED_FILE


def private_scalar(rot: EmulatedRootOfTrust) -> bytes:
    """Peek at the key (tests only) to prove it appears nowhere public."""
    key: ec.EllipticCurvePrivateKey = rot._identity_key
    return key.private_numbers().private_value.to_bytes(32, "big")


def test_device_id_is_the_id_of_the_public_key(rot: EmulatedRootOfTrust) -> None:
    assert rot.device_id == device_id_from_public_key(rot.public_key())


def test_signature_verifies_with_the_public_key(rot: EmulatedRootOfTrust) -> None:
    verify_es256(rot.public_key(), b"to be signed", rot.sign(b"to be signed"))


def test_no_public_member_returns_private_key_material(rot: EmulatedRootOfTrust) -> None:
    secret = private_scalar(rot)
    for name in dir(rot):
        if name.startswith("_"):
            continue
        value = getattr(rot, name)
        if callable(value):
            params = inspect.signature(value).parameters
            if params:
                continue
            value = value()
        assert not isinstance(value, ec.EllipticCurvePrivateKey), name
        assert secret.hex() not in repr(value), name
        if isinstance(value, bytes):
            assert secret not in value, name
    assert secret.hex() not in repr(rot)
    with pytest.raises(TypeError):
        pickle.dumps(rot)


def test_key_is_not_stored_in_clear(rot: EmulatedRootOfTrust, folder: Path) -> None:
    secret = private_scalar(rot)
    for path in (folder / ROT_DIRECTORY).iterdir():
        assert secret not in path.read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_emulated_root_of_trust_says_so(folder: Path) -> None:
    with pytest.warns(EmulatedRootOfTrustWarning, match="emulated devices and tests only"):
        EmulatedRootOfTrust.manufacture(folder)
    with pytest.warns(EmulatedRootOfTrustWarning):
        EmulatedRootOfTrust.open(folder)


def test_it_is_a_root_of_trust(rot: EmulatedRootOfTrust) -> None:
    as_protocol: RootOfTrust = rot
    assert as_protocol.device_id == rot.device_id


def test_extend_is_sha256_of_old_and_digest(rot: EmulatedRootOfTrust) -> None:
    first, second = hashlib.sha256(b"bootloader").digest(), hashlib.sha256(b"os").digest()
    assert rot.register() == bytes(32)
    rot.extend("bootloader", first)
    after_first = hashlib.sha256(bytes(32) + first).digest()
    assert rot.register() == after_first
    rot.extend("os", second)
    assert rot.register() == hashlib.sha256(after_first + second).digest()
    assert rot.event_log() == (Measurement("bootloader", first), Measurement("os", second))


def test_extend_refuses_a_digest_that_is_not_sha256(rot: EmulatedRootOfTrust) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        rot.extend("os", b"not a digest")
    assert rot.event_log() == ()


def test_reboot_clears_the_register_and_the_log(rot: EmulatedRootOfTrust, folder: Path) -> None:
    rot.extend("os", hashlib.sha256(b"os").digest())
    rot.reset_boot_measurements()
    assert (rot.register(), rot.event_log()) == (bytes(32), ())
    rot.extend("os", hashlib.sha256(b"os").digest())
    reopened = EmulatedRootOfTrust.open(folder)
    assert (reopened.register(), reopened.event_log()) == (bytes(32), ())


def test_manufacturing_state_moves_forward_only(rot: EmulatedRootOfTrust, folder: Path) -> None:
    assert rot.manufacturing_state is ManufacturingState.BLANK
    rot.advance_manufacturing_state(ManufacturingState.MODULE1_COMPLETE)
    rot.advance_manufacturing_state(ManufacturingState.MODULE1_COMPLETE)
    rot.advance_manufacturing_state(ManufacturingState.DEVICE_COMPLETE)
    with pytest.raises(ManufacturingStateError, match="cannot go back to Blank"):
        rot.advance_manufacturing_state(ManufacturingState.BLANK)
    reopened = EmulatedRootOfTrust.open(folder)
    assert reopened.manufacturing_state is ManufacturingState.DEVICE_COMPLETE
    with pytest.raises(ManufacturingStateError):
        reopened.advance_manufacturing_state(ManufacturingState.MODULE1_COMPLETE)


def test_manufacturing_state_may_skip_ahead(rot: EmulatedRootOfTrust) -> None:
    rot.advance_manufacturing_state(ManufacturingState.DEVICE_COMPLETE)
    assert rot.manufacturing_state is ManufacturingState.DEVICE_COMPLETE


def test_counters_are_monotonic_and_persist(rot: EmulatedRootOfTrust, folder: Path) -> None:
    assert rot.counter("os") == 0
    rot.bump_counter("os", 3)
    rot.bump_counter("os", 3)
    with pytest.raises(CounterRollbackError, match="cannot go down to 2"):
        rot.bump_counter("os", 2)
    assert rot.counter("os") == 3
    reopened = EmulatedRootOfTrust.open(folder)
    assert reopened.counter("os") == 3
    with pytest.raises(CounterRollbackError):
        reopened.bump_counter("os", 0)


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "../escape"])
def test_counter_names_are_checked(rot: EmulatedRootOfTrust, name: str) -> None:
    with pytest.raises(ValueError, match="counter names"):
        rot.counter(name)


@pytest.mark.parametrize("value", [-1, 2**64, True])
def test_counter_values_are_checked(rot: EmulatedRootOfTrust, value: int) -> None:
    with pytest.raises(ValueError, match="counter value"):
        rot.bump_counter("os", value)


def test_survives_reopen(rot: EmulatedRootOfTrust, folder: Path) -> None:
    reopened = EmulatedRootOfTrust.open(folder)
    assert reopened.device_id == rot.device_id
    assert reopened.security_state is SecurityState.SECURE
    verify_es256(rot.public_key(), b"after reboot", reopened.sign(b"after reboot"))


def test_security_state_is_set_at_manufacturing(tmp_path: Path) -> None:
    rot = EmulatedRootOfTrust.manufacture(tmp_path / "dev", security_state=SecurityState.TEST)
    assert EmulatedRootOfTrust.open(tmp_path / "dev").security_state is SecurityState.TEST
    assert rot.security_state is SecurityState.TEST


def test_manufacturing_twice_is_refused(rot: EmulatedRootOfTrust, folder: Path) -> None:
    before = {p.name: p.read_bytes() for p in (folder / ROT_DIRECTORY).iterdir()}
    with pytest.raises(AlreadyManufacturedError):
        EmulatedRootOfTrust.manufacture(folder)
    after = {p.name: p.read_bytes() for p in (folder / ROT_DIRECTORY).iterdir()}
    assert after == before


def test_tampered_sealed_state_is_refused(rot: EmulatedRootOfTrust, folder: Path) -> None:
    sealed = bytearray(sealed_path(folder).read_bytes())
    sealed[40] ^= 0x01
    sealed_path(folder).write_bytes(bytes(sealed))
    with pytest.raises(SealedStateError, match="failed authentication"):
        EmulatedRootOfTrust.open(folder)


def test_truncated_sealed_state_is_refused(rot: EmulatedRootOfTrust, folder: Path) -> None:
    sealed = sealed_path(folder).read_bytes()
    sealed_path(folder).write_bytes(sealed[:-1])
    with pytest.raises(SealedStateError, match="failed authentication"):
        EmulatedRootOfTrust.open(folder)
    sealed_path(folder).write_bytes(sealed[:20])
    with pytest.raises(SealedStateError, match="truncated"):
        EmulatedRootOfTrust.open(folder)


def test_sealed_state_from_another_device_is_refused(
    rot: EmulatedRootOfTrust, folder: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    EmulatedRootOfTrust.manufacture(other)
    shutil.copyfile(sealed_path(other), sealed_path(folder))
    with pytest.raises(SealedStateError, match="another device"):
        EmulatedRootOfTrust.open(folder)


def test_otp_from_another_device_is_refused(
    rot: EmulatedRootOfTrust, folder: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    EmulatedRootOfTrust.manufacture(other)
    shutil.copyfile(other / ROT_DIRECTORY / OTP_FILE, folder / ROT_DIRECTORY / OTP_FILE)
    with pytest.raises(SealedStateError, match="failed authentication"):
        EmulatedRootOfTrust.open(folder)


def test_foreign_file_in_place_of_the_sealed_state_is_refused(
    rot: EmulatedRootOfTrust, folder: Path
) -> None:
    sealed_path(folder).write_bytes(b"PK\x03\x04" + bytes(64))
    with pytest.raises(SealedStateError, match="not an OpenSphere sealed state"):
        EmulatedRootOfTrust.open(folder)


def test_missing_otp_is_refused_and_not_recreated(rot: EmulatedRootOfTrust, folder: Path) -> None:
    (folder / ROT_DIRECTORY / OTP_FILE).unlink()
    with pytest.raises(SealedStateError, match="missing"):
        EmulatedRootOfTrust.open(folder)
    assert not (folder / ROT_DIRECTORY / OTP_FILE).exists()


def test_missing_sealed_state_is_refused(rot: EmulatedRootOfTrust, folder: Path) -> None:
    sealed_path(folder).unlink()
    with pytest.raises(SealedStateError, match="never re-created"):
        EmulatedRootOfTrust.open(folder)


def test_damaged_otp_is_refused(rot: EmulatedRootOfTrust, folder: Path) -> None:
    (folder / ROT_DIRECTORY / OTP_FILE).write_bytes(bytes(16))
    with pytest.raises(SealedStateError, match="16 bytes"):
        EmulatedRootOfTrust.open(folder)


def test_folder_without_a_root_of_trust(tmp_path: Path) -> None:
    with pytest.raises(RootOfTrustMissingError, match="manufacture the device first"):
        EmulatedRootOfTrust.open(tmp_path / "nothing")


def test_no_temporary_files_are_left_behind(rot: EmulatedRootOfTrust, folder: Path) -> None:
    rot.bump_counter("os", 1)
    rot.advance_manufacturing_state(ManufacturingState.DEVICE_COMPLETE)
    assert sorted(p.name for p in (folder / ROT_DIRECTORY).iterdir()) == [OTP_FILE, SEALED_FILE]
