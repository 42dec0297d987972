"""app_manifest.json: the original's schema, validated strictly, every problem listed."""

from __future__ import annotations

import codecs
import copy
import json
import uuid
from pathlib import PurePosixPath
from typing import Any

import pytest

from opensphere.formats.app_manifest import (
    MAX_MANIFEST_SIZE,
    AppManifest,
    ManifestError,
    parse_manifest,
)
from opensphere.formats.errors import FormatError

COMPONENT_ID = "06e116bd-e3af-4bfe-a0cb-f1530b8b91ab"
TENANT_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"

# Shaped like the high-level samples in Azure/azure-sphere-samples.
SAMPLE: dict[str, Any] = {
    "SchemaVersion": 1,
    "Name": "AzureIoT_HighLevelApp",
    "ComponentId": COMPONENT_ID,
    "EntryPoint": "/bin/app",
    "CmdArgs": ["--ScopeID", ""],
    "Capabilities": {
        "AllowedConnections": [
            "global.azure-devices-provisioning.net",
            "*.azure-devices.net",
            "192.168.1.200",
        ],
        "AllowedTcpServerPorts": [11000],
        "AllowedUdpServerPorts": [1825],
        "AllowedApplicationConnections": ["9f19b84b-d83c-442b-b8b8-ce095a3b9b33"],
        "Gpio": ["$SAMPLE_LED", 8],
        "Uart": ["ISU0"],
        "I2cMaster": ["$SAMPLE_LSM6DSO_I2C"],
        "SpiMaster": [],
        "Adc": ["$SAMPLE_POTENTIOMETER_ADC_CONTROLLER"],
        "Pwm": ["$SAMPLE_LED_PWM_CONTROLLER"],
        "MutableStorage": {"SizeKB": 8},
        "DeviceAuthentication": TENANT_ID,
        "PowerControls": ["ForceReboot", "SetPowerProfile"],
        "SoftwareUpdateDeferral": True,
        "SystemEventNotifications": True,
        "NetworkConfig": True,
        "WifiConfig": True,
        "CertStore": True,
    },
    "ApplicationType": "Default",
    "MallocVersion": 2,
}


def _manifest(**changes: Any) -> bytes:
    document = copy.deepcopy(SAMPLE)
    for key, value in changes.items():
        document[key] = value
    return json.dumps(document).encode()


def _capabilities(**changes: Any) -> bytes:
    return _manifest(Capabilities={**SAMPLE["Capabilities"], **changes})


def _problems(data: bytes) -> tuple[str, ...]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    assert caught.value.problems
    assert all(problem in str(caught.value) for problem in caught.value.problems)
    return caught.value.problems


def test_valid_sample_is_parsed() -> None:
    manifest = parse_manifest(_manifest())
    assert isinstance(manifest, AppManifest)
    assert manifest.name == "AzureIoT_HighLevelApp"
    assert manifest.component_id == uuid.UUID(COMPONENT_ID)
    assert manifest.entry_point_path == PurePosixPath("bin/app")
    assert manifest.cmd_args == ("--ScopeID", "")
    capabilities = manifest.capabilities
    assert capabilities.allowed_tcp_server_ports == (11000,)
    assert capabilities.gpio == ("$SAMPLE_LED", 8)
    assert capabilities.mutable_storage is not None
    assert capabilities.mutable_storage.size_kb == 8
    assert capabilities.device_authentication == uuid.UUID(TENANT_ID)
    assert capabilities.power_controls == ("ForceReboot", "SetPowerProfile")
    assert capabilities.wifi_config is True
    assert capabilities.enterprise_wifi_config is False


def test_minimal_manifest_grants_nothing() -> None:
    required = ("SchemaVersion", "Name", "ComponentId", "EntryPoint", "ApplicationType")
    manifest = parse_manifest(json.dumps({key: SAMPLE[key] for key in required}).encode())
    assert manifest.cmd_args == ()
    capabilities = manifest.capabilities.model_dump()
    assert all(value in ((), False, None) for value in capabilities.values())


def test_every_capability_of_the_original_is_known() -> None:
    flags = [
        "NetworkConfig", "WifiConfig", "EnterpriseWifiConfig", "ReadNetworkProxyConfig",
        "HardwareAddressConfig", "SntpService", "DhcpService", "TimeSyncConfig", "SystemTime",
        "CertStore", "SystemEventNotifications", "SoftwareUpdateDeferral", "HeapMemStats",
    ]  # fmt: skip
    manifest = parse_manifest(_capabilities(**dict.fromkeys(flags, True)))
    assert all(manifest.capabilities.model_dump(by_alias=True)[flag] is True for flag in flags)


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_manifest(codecs.BOM_UTF8 + _manifest()).name == SAMPLE["Name"]


def test_unknown_capability_is_refused() -> None:
    assert _problems(_capabilities(RootAccess=True)) == (
        "Capabilities.RootAccess: unknown capability",
    )


def test_rtapp_only_capability_is_refused() -> None:
    assert _problems(_capabilities(ExternalInterrupt=["EINT4"])) == (
        "Capabilities.ExternalInterrupt: unknown capability",
    )


def test_unknown_top_level_field_is_refused() -> None:
    assert _problems(_manifest(Privileged=True)) == ("Privileged: unknown field",)


def test_name_of_32_characters_is_refused() -> None:
    (problem,) = _problems(_manifest(Name="AvnetStarterKit-Hackster.io-V1.0"))
    assert problem.startswith("Name: is 32 bytes long")


def test_name_of_31_characters_is_accepted() -> None:
    assert parse_manifest(_manifest(Name="n" * 31)).name == "n" * 31


def test_name_is_measured_in_utf8_bytes_as_stored() -> None:
    (problem,) = _problems(_manifest(Name="é" * 16))
    assert "32 bytes" in problem


@pytest.mark.parametrize("name", ["", "tab\tname", "new\nline"])
def test_empty_or_control_character_name_is_refused(name: str) -> None:
    (problem,) = _problems(_manifest(Name=name))
    assert problem.startswith("Name:")


@pytest.mark.parametrize(
    "component_id",
    [
        "not-a-guid",
        "{06e116bd-e3af-4bfe-a0cb-f1530b8b91ab}",
        "06e116bde3af4bfea0cbf1530b8b91ab",
        "06e116bd-e3af-4bfe-a0cb-f1530b8b91ab0",
        "00000000-0000-0000-0000-000000000000",
        12345,
        None,
    ],
)
def test_bad_component_id_is_refused(component_id: object) -> None:
    (problem,) = _problems(_manifest(ComponentId=component_id))
    assert problem.startswith("ComponentId:")


@pytest.mark.parametrize("port", [0, 65536, -1, "80", True, 80.0, None])
@pytest.mark.parametrize("capability", ["AllowedTcpServerPorts", "AllowedUdpServerPorts"])
def test_bad_port_is_refused(capability: str, port: object) -> None:
    (problem,) = _problems(_capabilities(**{capability: [port]}))
    assert problem.startswith(f"Capabilities.{capability}.0:")


def test_duplicate_port_is_refused() -> None:
    (problem,) = _problems(_capabilities(AllowedTcpServerPorts=[8080, 443, 8080]))
    assert problem == "Capabilities.AllowedTcpServerPorts: duplicate entries: 8080"


def test_duplicate_peripheral_and_connection_are_refused() -> None:
    problems = _problems(
        _capabilities(Gpio=["$LED", "$LED"], AllowedConnections=["example.com", "EXAMPLE.com"])
    )
    assert {p.split(":")[0] for p in problems} == {
        "Capabilities.Gpio",
        "Capabilities.AllowedConnections",
    }


@pytest.mark.parametrize(
    "entry_point",
    [
        "../app",
        "/bin/../../etc/passwd",
        "bin/../../outside",
        "//bin/app",
        "/",
        "",
        "bin/./app",
        "bin\\..\\app",
        "bin/app\x00",
        "bin/",
    ],
)
def test_entry_point_escaping_the_app_is_refused(entry_point: str) -> None:
    (problem,) = _problems(_manifest(EntryPoint=entry_point))
    assert problem.startswith("EntryPoint:")


@pytest.mark.parametrize(("entry_point", "path"), [("/bin/app", "bin/app"), ("app", "app")])
def test_entry_point_is_rooted_at_the_app(entry_point: str, path: str) -> None:
    assert parse_manifest(_manifest(EntryPoint=entry_point)).entry_point_path == PurePosixPath(path)


def test_real_time_capable_app_is_refused_with_the_reason() -> None:
    (problem,) = _problems(_manifest(ApplicationType="RealTimeCapable"))
    assert "real-time cores" in problem


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"SchemaVersion": 2}, "SchemaVersion"),
        ({"SchemaVersion": "1"}, "SchemaVersion"),
        ({"SchemaVersion": True}, "SchemaVersion"),
        ({"CmdArgs": "--verbose"}, "CmdArgs"),
        ({"CmdArgs": [1]}, "CmdArgs.0"),
        ({"ApplicationType": "Service"}, "ApplicationType"),
        ({"MallocVersion": 3}, "MallocVersion"),
        ({"Capabilities": []}, "Capabilities"),
    ],
)
def test_wrong_types_and_values_are_refused(changes: dict[str, Any], field: str) -> None:
    (problem,) = _problems(_manifest(**changes))
    assert problem.startswith(f"{field}:")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"WifiConfig": 1}, "WifiConfig"),
        ({"WifiConfig": "true"}, "WifiConfig"),
        ({"Gpio": [True]}, "Gpio.0"),
        ({"Gpio": ["$SAMPLE LED"]}, "Gpio.0"),
        ({"Uart": [-1]}, "Uart.0"),
        ({"MutableStorage": {"SizeKB": 0}}, "MutableStorage.SizeKB"),
        ({"MutableStorage": {"SizeKB": 65}}, "MutableStorage.SizeKB"),
        ({"MutableStorage": {"SizeKB": 8, "Path": "/"}}, "MutableStorage.Path"),
        ({"DeviceAuthentication": "tenant"}, "DeviceAuthentication"),
        ({"PowerControls": ["Reboot"]}, "PowerControls.0"),
        ({"AllowedApplicationConnections": ["x"]}, "AllowedApplicationConnections.0"),
    ],
)
def test_bad_capability_values_are_refused(changes: dict[str, Any], field: str) -> None:
    (problem,) = _problems(_capabilities(**changes))
    assert problem.startswith(f"Capabilities.{field}:")


@pytest.mark.parametrize(
    "host", ["2001:db8::1", "1.2.3.999", "-bad.example.com", "*", "a..b", "exa mple.com", "*.*.com"]
)
def test_bad_allowed_connection_is_refused(host: str) -> None:
    (problem,) = _problems(_capabilities(AllowedConnections=[host]))
    assert problem.startswith("Capabilities.AllowedConnections.0:")


def test_all_problems_are_listed_at_once() -> None:
    problems = _problems(
        _manifest(
            Name="x" * 40,
            ComponentId="nope",
            EntryPoint="../x",
            Capabilities={"AllowedTcpServerPorts": [0], "Teleport": True},
        )
    )
    assert [p.split(":")[0] for p in problems] == [
        "Name",
        "ComponentId",
        "EntryPoint",
        "Capabilities.AllowedTcpServerPorts.0",
        "Capabilities.Teleport",
    ]


def test_missing_required_fields_are_listed() -> None:
    problems = _problems(b'{"SchemaVersion": 1}')
    assert problems == (
        "Name: required field is missing",
        "ComponentId: required field is missing",
        "EntryPoint: required field is missing",
        "ApplicationType: required field is missing",
    )


def test_duplicate_json_key_is_refused() -> None:
    data = _manifest().replace(b'"Name": ', b'"Name": "Shadow", "Name": ', 1)
    assert _problems(data) == ("not valid JSON: duplicate key 'Name'",)


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"[1, 2]", b'{"SchemaVersion": NaN}', b"\xff\xfe{}", b"[" * 50_000]
)
def test_malformed_documents_are_refused(data: bytes) -> None:
    assert len(_problems(data)) == 1


def test_oversized_manifest_is_refused() -> None:
    data = _manifest() + b" " * MAX_MANIFEST_SIZE  # valid JSON, just too big
    (problem,) = _problems(data)
    assert "over the" in problem


def test_manifest_error_is_a_format_error() -> None:
    assert issubclass(ManifestError, FormatError)
