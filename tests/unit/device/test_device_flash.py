"""Flash primitives: whole-file and whole-slot replacement, boot control, key store, events."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensphere.device.errors import DeviceStateError
from opensphere.device.events import ErrorEvent, EventType, record_event
from opensphere.device.flash import BootControl, DeviceFlash, write_atomically
from opensphere.device.keystore import KeyUsage, TrustedKey, TrustedKeyStore
from opensphere.device.reporting.queue import EventQueue
from opensphere.formats.error_events import EventCategory
from opensphere.formats.image_package import TEST_SIGNING_PUBLIC_KEY


def _key(name: str, *usages: KeyUsage) -> TrustedKey:
    return TrustedKey(name, ec.generate_private_key(ec.SECP256R1()).public_key(), frozenset(usages))


@pytest.fixture
def flash(tmp_path: Path) -> DeviceFlash:
    flash = DeviceFlash(tmp_path / "device")
    flash.format(TrustedKeyStore((_key("os-vendor", KeyUsage.OS),)))
    return flash


def test_format_lays_out_an_empty_device(flash: DeviceFlash) -> None:
    assert flash.read_control() == BootControl(active="a")
    assert TrustedKeyStore.decode(flash.read_keystore_bytes()).keys[0].name == "os-vendor"
    assert flash.installed_image_files() == []
    assert flash.read_capability_file() is None


def test_write_atomically_replaces_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    write_atomically(target, b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_write_slot_replaces_the_whole_slot_and_cleans_leftovers(flash: DeviceFlash) -> None:
    flash.write_slot("b", {"os.imagepackage": b"one", "extra.imagepackage": b"x"})
    (flash.root / "slots" / ".staging-b-interrupted").mkdir()
    flash.write_slot("b", {"os.imagepackage": b"two"})
    assert [p.name for p in flash.slot_dir("b").iterdir()] == ["os.imagepackage"]
    assert flash.read_slot("b", "os.imagepackage") == b"two"
    assert sorted(p.name for p in (flash.root / "slots").iterdir()) == ["b"]


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"[]",
        b'{"format": 2, "active": "a", "trial": null, "unconfirmed": null}',
        b'{"format": 1, "active": "c", "trial": null, "unconfirmed": null}',
        b'{"format": 1, "active": "a", "trial": "a", "unconfirmed": null}',
        b'{"format": 1, "active": "a"}',
    ],
)
def test_damaged_boot_control_is_refused(document: bytes) -> None:
    with pytest.raises(DeviceStateError):
        BootControl.decode(document)


def test_boot_control_round_trip() -> None:
    control = BootControl(active="b", trial=None, unconfirmed="a")
    assert BootControl.decode(control.encode()) == control


def test_keystore_round_trip_keeps_usages() -> None:
    store = TrustedKeyStore(
        (_key("vendor", KeyUsage.OS), _key("service", KeyUsage.APP, KeyUsage.CAPABILITY))
    )
    decoded = TrustedKeyStore.decode(store.encode())
    assert [(k.name, k.usages, k.thumbprint) for k in decoded.keys] == [
        (k.name, k.usages, k.thumbprint) for k in store.keys
    ]
    assert set(decoded.for_usage(KeyUsage.OS)) == {store.keys[0].thumbprint}


def test_keystore_refuses_the_public_test_key() -> None:
    with pytest.raises(ValueError, match="test signing key"):
        TrustedKey("sdk", TEST_SIGNING_PUBLIC_KEY, frozenset({KeyUsage.APP}))


@pytest.mark.parametrize(
    "document",
    [b"not json", b'{"format": 9, "keys": []}', b'{"format": 1, "keys": [{"name": "x"}]}'],
)
def test_damaged_keystore_is_refused(document: bytes) -> None:
    with pytest.raises(DeviceStateError):
        TrustedKeyStore.decode(document)


def test_boot_events_go_to_the_failure_report_queue(flash: DeviceFlash) -> None:
    image = uuid.uuid4()
    first = ErrorEvent(EventType.APP_REFUSED, "app", "bad signature", 1, image_id=str(image))
    second = ErrorEvent(EventType.UPDATE_FAILED, "os", "downgrade", 2, slot="b")
    record_event(flash, first)
    record_event(flash, second)
    record_event(flash, second)
    queued = EventQueue(flash.events_queue).pending()
    assert [(e.category, e.image_id, e.detail, e.count) for e in queued] == [
        (EventCategory.VERIFICATION_FAILURE, image, "AppRefused: app: bad signature", 1),
        (EventCategory.UPDATE_FAILURE, None, "UpdateFailed: os: downgrade (slot b)", 2),
    ]
