"""The app runtime with real app processes: supervision, applibs services, isolation, attacks."""

from __future__ import annotations

import datetime as dt
import errno
import http.server
import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_runtime_helpers import (
    Apps,
    app_log,
    needs_namespaces,
    pending_events,
    results,
    running_runtime,
    wait_for,
)
from typer.testing import CliRunner

from opensphere.cli.apps import app_app
from opensphere.device.runtime import AppLaunch, AppRefusedError, AppState, Runtime

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TENANT = uuid.UUID("3f2504e0-4f89-41d3-9a0c-0305e82c3301")


@pytest.fixture
def device(tmp_path: Path) -> Path:
    return tmp_path / "device"


@pytest.fixture
def apps(tmp_path: Path, device: Path) -> Apps:
    return Apps(tmp_path / "apps", device)


@pytest.fixture
def runtime(device: Path) -> Iterator[Runtime]:
    with running_runtime(device) as started:
        yield started


def copy_sample(name: str, apps: Apps, cmd_args: list[str] | None = None) -> AppLaunch:
    folder = apps.root / name
    shutil.copytree(SAMPLES / name, folder)
    if cmd_args is not None:
        manifest_path = folder / "app_manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["CmdArgs"] = cmd_args
        manifest_path.write_text(json.dumps(manifest))
    return apps.launch(folder)


class _Telemetry(http.server.BaseHTTPRequestHandler):
    readings: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.readings.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def telemetry() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    readings: list[dict[str, Any]] = []
    handler = type("Handler", (_Telemetry,), {"readings": readings})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}/telemetry", readings
    server.shutdown()
    server.server_close()


def sensor_sample(celsius: float) -> int:
    """What the virtual TMP36 on ADC 0 reads at ``celsius`` (12 bits, 2.5 V reference)."""
    return round((0.5 + celsius / 100) / 2.5 * 4096)


def test_sample_thermostat_reads_sensor_drives_heater_stores_and_reports(
    runtime: Runtime, apps: Apps, telemetry: tuple[str, list[dict[str, Any]]]
) -> None:
    url, readings = telemetry
    launch = copy_sample("thermostat", apps, ["--report-url", url, "--interval", "0.1"])
    runtime.board.adc_set(0, 0, sensor_sample(12.0))
    runtime.launch_app(launch)

    def reading(heater: bool) -> dict[str, Any] | None:
        return next((r for r in readings if r["heater"] is heater), None)

    cold = wait_for(lambda: reading(True), what="a report with the heater on")
    assert cold["celsius"] == pytest.approx(12.0, abs=0.2)
    assert cold["setpoint"] == 21.0
    runtime.board.adc_set(0, 0, sensor_sample(30.0))
    warm = wait_for(lambda: reading(False), what="a report with the heater off")
    assert warm["celsius"] == pytest.approx(30.0, abs=0.2)
    assert runtime.board.gpio_get(8) == 0

    assert launch.storage_folder is not None
    stored = json.loads((launch.storage_folder / "mutable-storage.bin").read_bytes())
    assert stored["setpoint"] == 21.0
    assert {True, False} <= {entry["heater"] for entry in stored["history"]}
    status = runtime.app_status(launch.component_id)
    assert status.state is AppState.RUNNING
    assert status.refusals == {}
    assert status.crashes == 0


def test_crashing_app_is_restarted_with_back_off_and_each_crash_recorded(
    runtime: Runtime, apps: Apps, device: Path
) -> None:
    launch = copy_sample("thermostat-faulty", apps)
    runtime.launch_app(launch)

    def three_crashes() -> dict[str, Any] | None:
        events = pending_events(device)
        return events[0] if events and events[0]["count"] >= 3 else None

    event = wait_for(three_crashes, what="three AppCrash occurrences")
    assert len(pending_events(device)) == 1, "repeated crashes aggregate into one record"
    assert event["category"] == "AppCrash"
    assert event["signal_status"] == 11
    assert event["exit_status"] is None
    assert event["detail"] == "Thermostat (faulty): killed by SIGSEGV"
    assert event["component_id"] == str(launch.component_id)
    assert event["image_id"] == str(launch.image_id)
    assert event["first_seen"] <= event["last_seen"]

    def back_offs() -> list[str] | None:
        log = app_log(runtime, launch)
        waits = [
            line.split("restarting in ")[1] for line in log.splitlines() if "restarting" in line
        ]
        return waits if len(waits) >= 3 else None

    assert wait_for(back_offs, what="three restarts")[:3] == ["0.2 s", "0.4 s", "0.8 s"]
    assert "Fatal Python error: Segmentation fault" in app_log(runtime, launch)
    status = runtime.app_status(launch.component_id)
    assert status.crashes >= 3
    assert status.restarts >= 2
    assert status.last_exit == "killed by SIGSEGV"


@pytest.mark.parametrize(("code", "kind", "exit_code"), [(0, "AppExit", 0), (7, "AppCrash", 7)])
def test_exit_status_is_recorded(
    runtime: Runtime, apps: Apps, device: Path, code: int, kind: str, exit_code: int
) -> None:
    launch = apps.write("Exiter", f"raise SystemExit({code})")
    runtime.launch_app(launch)
    event = wait_for(lambda: pending_events(device))[0]
    runtime.stop_app(launch.component_id)
    assert (event["category"], event["exit_status"], event["signal_status"]) == (
        kind,
        exit_code,
        None,
    )


def test_stopped_app_stays_stopped_records_nothing_and_starts_again(
    runtime: Runtime, apps: Apps, device: Path
) -> None:
    launch = apps.write("Sleeper", "print('RESULT up')", idle=True)
    runtime.launch_app(launch)
    results(runtime, launch, 1)
    first_pid = runtime.app_status(launch.component_id).pid
    runtime.stop_app(launch.component_id)
    stopped = runtime.app_status(launch.component_id)
    assert (stopped.state, stopped.pid) == (AppState.STOPPED, None)
    assert pending_events(device) == []
    runtime.start_app(launch.component_id)
    assert results(runtime, launch, 2) == ["up", "up"]
    restarted = runtime.app_status(launch.component_id)
    assert restarted.state is AppState.RUNNING
    assert restarted.pid not in (None, first_pid)
    runtime.remove_app(launch.component_id)  # as before installing a new version
    assert runtime.status() == []
    assert pending_events(device) == []


def test_peripherals_and_device_services_reach_the_app(tmp_path: Path, apps: Apps) -> None:
    certificate = tmp_path / "deviceauth" / "device-certificate.pem"
    certificate.parent.mkdir()
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")
    with running_runtime(
        apps.device, device_certificate=certificate, device_tenant=TENANT
    ) as runtime:
        launch = apps.write(
            "Peripherals",
            """
            import time
            from applibs import adc, deviceauth, events, i2c, pwm, uart
            print("RESULT adc", adc.read("$TEMPERATURE_ADC", 0), adc.sample_bits(0))
            port = uart.open("$DEBUG_UART")
            uart.write(port, b"loop")
            print("RESULT uart", uart.read(port, 16))
            print("RESULT i2c", i2c.write_read("$SENSOR_I2C", 0x48, b"\\x00", 2).hex())
            pwm.apply("$FAN_PWM", 2, period_ns=1000, duty_cycle_ns=400)
            print("RESULT cert", open(deviceauth.certificate_path()).read().strip())
            while not (pending := events.poll()):
                time.sleep(0.05)
            print("RESULT event", pending[0]["event"], pending[0]["status"])
            print("RESULT deferred", events.defer_update(90) != "")
            """,
            idle=True,
            Capabilities={
                "Adc": ["$TEMPERATURE_ADC"],
                "Uart": ["$DEBUG_UART"],
                "I2cMaster": ["$SENSOR_I2C"],
                "Pwm": ["$FAN_PWM"],
                "DeviceAuthentication": str(TENANT),
                "SystemEventNotifications": True,
                "SoftwareUpdateDeferral": True,
            },
        )
        runtime.launch_app(launch)
        assert results(runtime, launch, 4) == [
            "adc 1200 12",
            "uart b'loop'",
            "i2c 1700",
            "cert -----BEGIN CERTIFICATE-----",
        ]
        now = dt.datetime.now(dt.UTC)
        runtime.updates.announce("App", now)
        assert results(runtime, launch, 6)[4:] == [
            "event UpdateReadyForInstall Pending",
            "deferred True",
        ]
        assert runtime.updates.deferred_until(now) is not None
        assert runtime.board.snapshot()["Pwm:FAN_PWM"]["2"]["duty_cycle_ns"] == 400
        assert runtime.app_status(launch.component_id).refusals == {}


def test_device_services_not_in_the_manifest_are_refused_and_counted(
    runtime: Runtime, apps: Apps
) -> None:
    launch = apps.write(
        "NoGrants",
        """
        from applibs import adc, deviceauth, events, networking, storage, uart
        attempts = {
            "Adc": lambda: adc.read(0, 0),
            "Uart": lambda: uart.open(4),
            "MutableStorage": storage.read,
            "DeviceAuthentication": deviceauth.certificate_path,
            "SystemEventNotifications": events.poll,
            "SoftwareUpdateDeferral": lambda: events.defer_update(5),
            "AllowedTcpServerPorts": lambda: networking.listen_tcp(8080),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
                print("RESULT", name, "allowed")
            except PermissionError as exc:
                print("RESULT", name, "refused", exc.errno)
        """,
        idle=True,
    )
    runtime.launch_app(launch)
    outcomes = results(runtime, launch, 7)
    assert all(line.endswith(f"refused {errno.EPERM}") for line in outcomes), outcomes
    assert runtime.app_status(launch.component_id).refusals == {
        line.split()[0]: 1 for line in outcomes
    }


# Attacks


def test_app_using_an_undeclared_gpio_is_refused_and_counted(runtime: Runtime, apps: Apps) -> None:
    launch = apps.write(
        "GpioThief",
        """
        from applibs import gpio
        heater = gpio.open_output("$HEATER", gpio.HIGH)
        print("RESULT heater", gpio.get_value(heater))
        for pin in ("$STATUS_LED", 9, "$BUTTON_A", 4242):
            try:
                gpio.open_output(pin)
                print("RESULT", pin, "opened")
            except PermissionError as exc:
                print("RESULT", pin, "refused:", exc)
        try:
            gpio.set_value(heater + 1, 1)  # a handle it never got
        except OSError as exc:
            print("RESULT forged handle:", exc.errno)
        """,
        idle=True,
        Capabilities={"Gpio": ["$HEATER"]},
    )
    runtime.launch_app(launch)
    outcomes = results(runtime, launch, 6)
    assert outcomes[0] == "heater 1"
    assert outcomes[1:5] == [
        "$STATUS_LED refused: [Errno 1] Gpio: '$STATUS_LED' is not in the app manifest",
        "9 refused: [Errno 1] Gpio: 9 is not in the app manifest",
        "$BUTTON_A refused: [Errno 1] Gpio: '$BUTTON_A' is not in the app manifest",
        "4242 refused: [Errno 1] Gpio: 4242 is not in the app manifest",
    ]
    assert outcomes[5] == f"forged handle: {errno.EBADF}"
    assert runtime.app_status(launch.component_id).refusals == {"Gpio": 4}
    assert runtime.board.gpio_get(9) == 0
    assert "refused: Gpio: 9 is not in the app manifest" in app_log(runtime, launch)


def test_app_exceeding_its_storage_quota_is_refused(runtime: Runtime, apps: Apps) -> None:
    launch = apps.write(
        "Hoarder",
        """
        from applibs import storage
        print("RESULT quota", storage.quota())
        storage.write(b"k" * 1024)
        for attempt in (lambda: storage.append(b"x"), lambda: storage.write(b"y" * 1025)):
            try:
                attempt()
                print("RESULT stored")
            except OSError as exc:
                print("RESULT refused", exc.errno)
        print("RESULT kept", storage.read() == b"k" * 1024)
        """,
        idle=True,
        Capabilities={"MutableStorage": {"SizeKB": 1}},
    )
    runtime.launch_app(launch)
    assert results(runtime, launch, 4) == [
        "quota 1024",
        f"refused {errno.EDQUOT}",
        f"refused {errno.EDQUOT}",
        "kept True",
    ]
    assert launch.storage_folder is not None
    assert (launch.storage_folder / "mutable-storage.bin").read_bytes() == b"k" * 1024


@needs_namespaces
def test_app_reading_another_apps_storage_fails(runtime: Runtime, apps: Apps) -> None:
    victim = apps.write(
        "Victim",
        "from applibs import storage\nstorage.write(b'secret of A')\nprint('RESULT stored')",
        idle=True,
        Capabilities={"MutableStorage": {"SizeKB": 1}},
    )
    runtime.launch_app(victim)
    results(runtime, victim, 1)
    assert victim.storage_folder is not None
    secret = victim.storage_folder / "mutable-storage.bin"
    assert stat.S_IMODE(victim.storage_folder.stat().st_mode) == 0o700
    thief = apps.write(
        "Thief",
        """
        import sys
        from applibs import _client, protocol, storage
        secret, runtime_pid = sys.argv[1], sys.argv[2]
        for path in (secret, f"/proc/{runtime_pid}/root{secret}", f"/proc/1/root{secret}"):
            try:
                print("RESULT read", open(path, "rb").read())
            except OSError as exc:
                print("RESULT direct", type(exc).__name__)
        for args in ({"path": secret}, {"component_id": sys.argv[3]}):
            try:
                print("RESULT read", _client.call("storage.read", **args))
            except ValueError:
                print("RESULT socket invalid")
        print("RESULT own", storage.read())
        """,
        idle=True,
        CmdArgs=[str(secret), str(os.getpid()), str(victim.component_id)],
        Capabilities={"MutableStorage": {"SizeKB": 1}},
    )
    runtime.launch_app(thief)
    outcomes = results(runtime, thief, 6)
    assert outcomes[0] in ("direct FileNotFoundError", "direct PermissionError")
    assert outcomes[1:3] == ["direct PermissionError", "direct PermissionError"]
    assert outcomes[3:] == ["socket invalid", "socket invalid", "own b''"]
    assert secret.read_bytes() == b"secret of A"


@needs_namespaces
def test_apps_run_as_their_own_users_without_privileges(
    runtime: Runtime, apps: Apps, device: Path
) -> None:
    first = apps.write("First", "import os\nprint('RESULT', os.getpid(), os.getuid())", idle=True)
    runtime.launch_app(first)
    first_pid, first_uid = map(int, results(runtime, first, 1)[0].split())
    second = apps.write(
        "Second",
        """
        import os, signal, sys
        print("RESULT ids", os.getuid(), os.getgid(), os.getgroups())
        attempts = {
            "setuid": lambda: os.setuid(0),
            "signal": lambda: os.kill(int(sys.argv[1]), signal.SIGKILL),
            "write-app": lambda: open("main.py", "a"),
            "write-tmp": lambda: open("/tmp/x", "w"),
            "device": lambda: os.listdir(sys.argv[2]),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
                print("RESULT", name, "allowed")
            except OSError as exc:
                print("RESULT", name, type(exc).__name__)
        print("RESULT run", sorted(os.listdir("/run")), os.listdir("/tmp"))
        """,
        idle=True,
        CmdArgs=[str(first_pid), str(device)],
    )
    runtime.launch_app(second)
    outcomes = results(runtime, second, 7)
    uid = runtime.app_status(second.component_id).uid
    assert uid is not None
    assert uid not in (0, first_uid)
    assert outcomes[0] == f"ids {uid} {uid} []"
    assert outcomes[1:3] == ["setuid PermissionError", "signal PermissionError"]
    assert outcomes[3] in ("write-app OSError", "write-app PermissionError")
    assert outcomes[4] in ("write-tmp OSError", "write-tmp PermissionError")
    assert outcomes[5] in ("device FileNotFoundError", "device PermissionError")
    assert outcomes[6] == "run ['app', 'applibs'] []"
    assert runtime.app_status(first.component_id).pid == first_pid


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"Capabilities": {"Gpio": ["$HEATER"], "Bluetooth": True}}, "unknown capability"),
        ({"Name": "N" * 32}, "bytes long"),
        ({"EntryPoint": "/../../etc/passwd"}, "EntryPoint"),
        ({"CmdArgs": ["x"] * 65}, "CmdArgs"),
    ],
)
def test_manifest_with_unknown_capability_or_over_long_fields_is_refused_at_start(
    runtime: Runtime, apps: Apps, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(AppRefusedError) as refused:
        runtime.launch_app(apps.write("Bad", "print('RESULT ran')", **change))
    assert any(problem in line for line in refused.value.problems), refused.value.problems
    assert runtime.status() == []


def test_app_the_device_cannot_honour_is_refused_at_start(runtime: Runtime, apps: Apps) -> None:
    launch = apps.write(
        "Misfit",
        "print('RESULT ran')",
        EntryPoint="/missing.py",
        Capabilities={"Gpio": ["$NO_SUCH_PIN"], "MutableStorage": {"SizeKB": 1}},
    )
    with pytest.raises(AppRefusedError) as refused:
        runtime.launch_app(launch)
    assert len(refused.value.problems) == 2
    impostor = apps.write("Impostor", "print('RESULT ran')")
    with pytest.raises(AppRefusedError, match="manifest says"):
        runtime.launch_app(
            AppLaunch(
                manifest=impostor.manifest,
                app_folder=impostor.app_folder,
                component_id=uuid.uuid4(),
                image_id=impostor.image_id,
                storage_folder=None,
            )
        )
    assert runtime.status() == []


def test_cli_shows_status_stops_and_starts_apps(runtime: Runtime, apps: Apps, device: Path) -> None:
    launch = apps.write("Controlled", "print('RESULT up')", idle=True)
    runtime.launch_app(launch)
    results(runtime, launch, 1)
    cli = CliRunner()
    shown = cli.invoke(app_app, ["show-status", "--device", str(device), "--output", "json"])
    assert shown.exit_code == 0, shown.output
    [status] = json.loads(shown.output)
    assert (status["name"], status["state"]) == ("Controlled", "running")
    stopped = cli.invoke(app_app, ["stop", "Controlled", "-d", str(device), "-o", "json"])
    assert json.loads(stopped.output)["state"] == "stopped"
    started = cli.invoke(app_app, ["start", str(launch.component_id), "-d", str(device)])
    assert started.exit_code == 0, started.output
    assert runtime.app_status(launch.component_id).state is AppState.RUNNING
    cli.invoke(app_app, ["set-adc", "$TEMPERATURE_ADC", "0", "2000", "-d", str(device)])
    assert runtime.board.adc_read(0, 0) == 2000
    board = cli.invoke(app_app, ["show-board", "-d", str(device)])
    assert json.loads(board.output)["Adc:TEMPERATURE_ADC"][0] == 2000
    unknown = cli.invoke(app_app, ["stop", "Nobody", "-d", str(device)])
    assert unknown.exit_code != 0
    assert "no app 'Nobody'" in str(unknown.exception)


def test_cli_says_when_no_runtime_is_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(app_app, ["show-status", "-d", str(tmp_path)])
    assert result.exit_code != 0
    assert "no device runtime answers" in str(result.exception)


def test_a_second_runtime_for_the_same_device_is_refused(runtime: Runtime, device: Path) -> None:
    with pytest.raises(RuntimeError, match="another runtime"):
        Runtime(device).start()
    assert runtime.status() == []
