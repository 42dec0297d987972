"""The app runtime's parts that need no app process: board, storage, framing, events, updates."""

from __future__ import annotations

import datetime as dt
import json
import socket
import stat
import uuid
from pathlib import Path

import pytest

from opensphere.device.applibs import protocol
from opensphere.device.reporting.queue import EventQueue
from opensphere.device.runtime import AppEvent, AppEventType, QueueEventSink
from opensphere.device.runtime.board import (
    VIRTUAL_BOARD,
    BoardError,
    PeripheralError,
    PwmState,
    VirtualBoard,
    parse_board,
)
from opensphere.device.runtime.storage import MutableStorage, QuotaExceededError
from opensphere.device.runtime.updates import NoPendingUpdateError, UpdateDeferrals

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def board_json(*peripherals: dict[str, object]) -> bytes:
    document = {
        "Metadata": {"Type": "OpenSphere Virtual Board", "Version": 1},
        "Peripherals": list(peripherals),
    }
    return json.dumps(document).encode()


def test_board_definition_round_trips_and_looks_up_names() -> None:
    board = parse_board(VIRTUAL_BOARD.model_dump_json(by_alias=True).encode())
    assert board == VIRTUAL_BOARD
    assert board.lookup("Gpio", "$HEATER") == 8
    assert board.lookup("Gpio", "heater") == 8
    assert board.lookup("Gpio", 9) == 9
    assert board.lookup("Uart", 8) is None


@pytest.mark.parametrize(
    "peripherals",
    [
        [{"Name": "A", "Type": "Gpio", "AppManifestValue": 1, "Colour": "red"}],
        [{"Name": "A", "Type": "Teleporter", "AppManifestValue": 1}],
        [
            {"Name": "A", "Type": "Gpio", "AppManifestValue": 1},
            {"Name": "a", "Type": "Gpio", "AppManifestValue": 2},
        ],
        [
            {"Name": "A", "Type": "Gpio", "AppManifestValue": 1},
            {"Name": "B", "Type": "Gpio", "AppManifestValue": 1},
        ],
        [{"Name": "T", "Type": "Adc", "AppManifestValue": 0, "SampleBits": 8, "Channels": [256]}],
        [{"Name": "bad name!", "Type": "Gpio", "AppManifestValue": 1}],
    ],
)
def test_malformed_board_definitions_are_refused(peripherals: list[dict[str, object]]) -> None:
    with pytest.raises(BoardError):
        parse_board(board_json(*peripherals))


def test_virtual_peripherals_behave_like_hardware() -> None:
    board = VirtualBoard(VIRTUAL_BOARD)
    assert board.gpio_get(12) == 1  # the button's pull-up
    board.gpio_set(8, 1)
    assert board.gpio_get(8) == 1
    board.adc_set(0, 0, 2000)
    assert board.adc_read(0, 0) == 2000
    with pytest.raises(PeripheralError):
        board.adc_read(0, 99)
    with pytest.raises(PeripheralError):
        board.adc_set(0, 0, 4096)
    assert board.uart_write(4, b"hello") == 5
    assert board.uart_read(4, 3) == b"hel"
    assert board.uart_read(4, 10) == b"lo"
    assert board.i2c_transfer(2, 0x48, b"\x00", 2) == b"\x17\x00"
    board.i2c_transfer(2, 0x48, b"\x01\xaa", 0)
    assert board.i2c_transfer(2, 0x48, b"\x01", 1) == b"\xaa"
    with pytest.raises(PeripheralError) as missing:
        board.i2c_transfer(2, 0x49, b"\x00", 1)
    assert missing.value.errno_name == "ENXIO"
    board.pwm_apply(
        1, 0, PwmState(period_ns=1000, duty_cycle_ns=250, enabled=True, polarity="normal")
    )
    with pytest.raises(PeripheralError):
        board.pwm_apply(
            1, 0, PwmState(period_ns=10, duty_cycle_ns=20, enabled=True, polarity="normal")
        )
    snapshot = board.snapshot()
    assert snapshot["Gpio:HEATER"] == 1
    assert snapshot["Pwm:FAN_PWM"]["0"]["duty_cycle_ns"] == 250


def test_storage_quota_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    storage = MutableStorage(tmp_path / "storage", quota=1024)
    storage.prepare()
    assert stat.S_IMODE((tmp_path / "storage").stat().st_mode) == 0o700
    assert storage.read() == b""
    storage.write(b"a" * 1000)
    storage.append(b"b" * 24)
    with pytest.raises(QuotaExceededError):
        storage.append(b"c")
    with pytest.raises(QuotaExceededError):
        storage.write(b"d" * 1025)
    assert storage.read() == b"a" * 1000 + b"b" * 24
    assert [p.name for p in (tmp_path / "storage").iterdir()] == ["mutable-storage.bin"]
    storage.delete()
    assert storage.read() == b""


def test_framing_carries_descriptors_and_refuses_oversized_messages() -> None:
    left, right = socket.socketpair()
    carried, kept = socket.socketpair()
    with left, right, carried, kept:
        protocol.send_message(left, {"op": "x"}, [carried.fileno()])
        received = protocol.receive_message(right, accept_fds=True)
        assert received is not None
        message, fds = received
        assert message == {"op": "x"}
        with socket.socket(fileno=fds[0]) as passed:
            passed.sendall(b"through")
            assert kept.recv(16) == b"through"
        # Without accept_fds the kernel drops descriptors: none can be smuggled to the runtime.
        protocol.send_message(left, {"op": "y"}, [carried.fileno()])
        assert protocol.receive_message(right) == ({"op": "y"}, [])
        left.sendall((protocol.MAX_FRAME + 1).to_bytes(4, "big"))
        with pytest.raises(protocol.ProtocolError):
            protocol.receive_message(right)
        left.sendall(b"\x00\x00\x00\x02[]")
        with pytest.raises(protocol.ProtocolError):
            protocol.receive_message(right)
        left.close()
        assert protocol.receive_message(right) is None


@pytest.mark.parametrize(
    ("returncode", "kind", "exit_code", "signal", "reason"),
    [
        (-11, AppEventType.APP_CRASH, None, 11, "killed by SIGSEGV"),
        (3, AppEventType.APP_CRASH, 3, None, "exit status 3"),
        (0, AppEventType.APP_EXIT, 0, None, "exit status 0"),
    ],
)
def test_app_events_go_to_the_queue_and_aggregate(
    tmp_path: Path,
    returncode: int,
    kind: AppEventType,
    exit_code: int | None,
    signal: int | None,
    reason: str,
) -> None:
    component, image = uuid.uuid4(), uuid.uuid4()
    event = AppEvent.from_returncode(
        returncode, time=NOW, component_id=component, image_id=image, app_name="Demo"
    )
    sink = QueueEventSink(EventQueue(tmp_path / "events" / "queue.json"))
    sink.record(event)
    sink.record(event)
    [queued] = sink.queue.pending()
    assert queued.category.value == kind.value
    assert (queued.exit_status, queued.signal_status) == (exit_code, signal)
    assert (queued.component_id, queued.image_id) == (component, image)
    assert queued.detail == f"Demo: {reason}"
    assert queued.count == 2
    assert queued.first_seen == int(NOW.timestamp())


def test_update_deferral_is_capped_and_needs_a_pending_update() -> None:
    updates = UpdateDeferrals()
    app, other = uuid.uuid4(), uuid.uuid4()
    updates.subscribe(app)
    with pytest.raises(NoPendingUpdateError):
        updates.defer(app, 60, NOW)
    updates.announce("App", NOW)
    assert updates.poll(app) == [
        {
            "event": "UpdateReadyForInstall",
            "update_type": "App",
            "status": "Pending",
            "max_deferral_minutes": 24 * 60,
        }
    ]
    assert updates.poll(app) == []
    assert updates.poll(other) == []  # not subscribed
    later = NOW + dt.timedelta(hours=23)
    assert updates.defer(app, 24 * 60, later) == NOW + dt.timedelta(hours=24)
    assert updates.deferred_until(later) == NOW + dt.timedelta(hours=24)
    assert updates.deferred_until(NOW + dt.timedelta(hours=25)) is None
    updates.resume(app)
    assert updates.deferred_until(later) is None
    updates.defer(app, 30, later)
    updates.finish(later)
    assert updates.deferred_until(later) is None
    assert updates.poll(app)[-1]["status"] == "Complete"
