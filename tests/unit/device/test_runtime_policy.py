"""The app runtime's policy: what a manifest grants, decided without I/O."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from opensphere.device.runtime.board import VIRTUAL_BOARD
from opensphere.device.runtime.policy import (
    MAX_UPDATE_DEFERRAL,
    BoardMismatchError,
    CapabilityError,
    Grants,
    RestartPolicy,
    check_connection,
    check_device_authentication,
    check_peripheral,
    check_server_port,
    check_storage,
    grants_for,
    restart_delay,
    update_deferral_deadline,
)
from opensphere.formats.app_manifest import parse_manifest

TENANT = uuid.UUID("3f2504e0-4f89-41d3-9a0c-0305e82c3301")


def grants(**capabilities: Any) -> Grants:
    manifest = {
        "SchemaVersion": 1,
        "Name": "PolicyTest",
        "ComponentId": str(uuid.uuid4()),
        "EntryPoint": "/main.py",
        "ApplicationType": "Default",
        "Capabilities": capabilities,
    }
    return grants_for(parse_manifest(json.dumps(manifest).encode()), VIRTUAL_BOARD)


def test_no_capabilities_grant_nothing() -> None:
    nothing = grants()
    assert all(not numbers for numbers in nothing.peripherals.values())
    assert nothing.allowed_hosts == ()
    assert nothing.storage_bytes is None
    with pytest.raises(CapabilityError):
        check_peripheral(nothing, VIRTUAL_BOARD, "Gpio", 8)
    with pytest.raises(CapabilityError):
        check_connection(nothing, "localhost")
    with pytest.raises(CapabilityError):
        check_storage(nothing)


def test_peripherals_resolve_by_symbol_name_or_number() -> None:
    granted = grants(Gpio=["$HEATER", 9], Adc=["TEMPERATURE_ADC"])
    assert granted.peripherals["Gpio"] == {8, 9}
    assert granted.peripherals["Adc"] == {0}
    for reference in (8, "$HEATER", "HEATER", "$heater"):
        assert check_peripheral(granted, VIRTUAL_BOARD, "Gpio", reference) == 8
    assert check_peripheral(granted, VIRTUAL_BOARD, "Gpio", "$STATUS_LED") == 9


@pytest.mark.parametrize(
    ("kind", "reference"),
    [("Gpio", 12), ("Gpio", "$BUTTON_A"), ("Gpio", 4242), ("Uart", 4), ("Adc", 8), ("Pwm", 1)],
)
def test_peripherals_not_in_the_manifest_are_refused(kind: Any, reference: int | str) -> None:
    granted = grants(Gpio=["$HEATER"], Adc=["$TEMPERATURE_ADC"])
    with pytest.raises(CapabilityError) as refused:
        check_peripheral(granted, VIRTUAL_BOARD, kind, reference)
    assert refused.value.capability == kind


def test_a_grant_is_per_kind_of_peripheral() -> None:
    # ADC 0 is granted; GPIO 0 does not exist and UART 0 is not granted.
    granted = grants(Adc=[0])
    with pytest.raises(CapabilityError):
        check_peripheral(granted, VIRTUAL_BOARD, "Uart", 0)


def test_manifest_naming_peripherals_missing_from_the_board_is_refused() -> None:
    with pytest.raises(BoardMismatchError) as mismatch:
        grants(Gpio=["$HEATER", "$NO_SUCH_LED", 77], Uart=["ISU9"])
    assert len(mismatch.value.problems) == 3
    assert any("$NO_SUCH_LED" in problem for problem in mismatch.value.problems)


@pytest.mark.parametrize(
    "host", ["example.com", "EXAMPLE.com", "example.com.", "a.contoso.net", "10.1.2.3"]
)
def test_listed_hosts_are_allowed(host: str) -> None:
    granted = grants(AllowedConnections=["example.com", "*.contoso.net", "10.1.2.3"])
    assert check_connection(granted, host) == host.lower().removesuffix(".")


@pytest.mark.parametrize(
    "host",
    [
        "contoso.net",  # a wildcard is not its apex
        "a.b.contoso.net",  # one label only
        "evil-contoso.net",
        "example.com.evil.org",
        "www.example.com",
        "10.1.2.4",
        "127.1",  # resolvers read this as 127.0.0.1; it is not a listed name
        "0x0a.1.2.3",
        "010.1.2.3",
        "",
    ],
)
def test_hosts_not_listed_are_refused(host: str) -> None:
    granted = grants(AllowedConnections=["example.com", "*.contoso.net", "10.1.2.3"])
    with pytest.raises(CapabilityError) as refused:
        check_connection(granted, host)
    assert refused.value.capability == "AllowedConnections"


def test_an_allowed_name_does_not_allow_its_address() -> None:
    granted = grants(AllowedConnections=["localhost"])
    assert check_connection(granted, "localhost") == "localhost"
    with pytest.raises(CapabilityError):
        check_connection(granted, "127.0.0.1")


def test_server_ports_are_checked_per_protocol() -> None:
    granted = grants(AllowedTcpServerPorts=[11000], AllowedUdpServerPorts=[1825])
    check_server_port(granted, "tcp", 11000)
    check_server_port(granted, "udp", 1825)
    with pytest.raises(CapabilityError, match="AllowedTcpServerPorts"):
        check_server_port(granted, "tcp", 1825)
    with pytest.raises(CapabilityError, match="AllowedUdpServerPorts"):
        check_server_port(granted, "udp", 11000)


def test_storage_quota_is_the_manifest_size() -> None:
    assert check_storage(grants(MutableStorage={"SizeKB": 8})) == 8192


def test_device_authentication_needs_the_capability_and_the_right_tenant() -> None:
    with pytest.raises(CapabilityError):
        check_device_authentication(grants(), TENANT)
    granted = grants(DeviceAuthentication=str(TENANT))
    check_device_authentication(granted, TENANT)
    check_device_authentication(granted, None)  # the device's tenant is not known yet
    with pytest.raises(CapabilityError, match="tenant"):
        check_device_authentication(granted, uuid.uuid4())


def test_an_update_is_deferred_at_most_24_hours_after_it_was_announced() -> None:
    announced = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    soon = announced + dt.timedelta(hours=2)
    assert update_deferral_deadline(announced, soon) == soon
    late = announced + dt.timedelta(hours=30)
    assert update_deferral_deadline(announced, late) == announced + MAX_UPDATE_DEFERRAL


def test_restart_delay_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(initial=1, factor=2, maximum=10)
    delays = [restart_delay(policy, failures) for failures in range(1, 7)]
    assert delays == [1, 2, 4, 8, 10, 10]
    assert restart_delay(policy, 10**9) == 10  # a long crash loop does not overflow


@pytest.mark.parametrize(
    "settings",
    [
        {"initial": -1},
        {"factor": 0.5},
        {"factor": 100},
        {"initial": 10, "maximum": 1},
    ],
)
def test_restart_policy_refuses_nonsense(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="initial"):
        RestartPolicy(**settings)
