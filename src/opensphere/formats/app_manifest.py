"""``app_manifest.json``: what an application may touch, in Azure Sphere's schema (reference §3.3).

Capabilities are deny-by-default: an absent capability is not granted. Validation is strict so
that the device and the service never disagree about what a manifest grants: unknown fields
and capabilities, wrong types, duplicates, out-of-range values and duplicate JSON keys are all
refused, and every problem found is listed in one ``ManifestError``.

Decisions that differ from the original, or that it leaves open:

- ``Name`` longer than 31 UTF-8 bytes is refused. The original stores only the first 31
  characters in the image package; refusing means what developers write is what devices show.
- ``ApplicationType`` must be ``Default``. ``RealTimeCapable`` is refused with its own message:
  OpenSphere devices have no real-time cores to run such an app on. The RTApp-only
  ``ExternalInterrupt`` capability is therefore not part of the schema.
- ``EntryPoint`` is a path inside the app. The original writes ``/bin/app``, rooted at the
  app's own image, so one leading ``/`` means the app's root; ``..``, ``.``, empty parts,
  backslashes and control characters are refused, so it can never name a file outside the app.
- ``AllowedConnections`` holds DNS names (optionally with a leading ``*.`` wildcard) or IPv4
  addresses; the original has no IPv6.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import re
from collections.abc import Hashable, Sequence
from pathlib import PurePosixPath
from typing import Annotated, Final, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import ErrorDetails

from opensphere.formats.errors import FormatError

MAX_MANIFEST_SIZE: Final = 64 * 1024
NAME_MAX_BYTES: Final = 31
MUTABLE_STORAGE_MAX_KB: Final = 64
MAX_CMD_ARGS: Final = 64

_GUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DNS_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PERIPHERAL: Final = re.compile(r"\$?[A-Za-z0-9_-]{1,63}")
_T = TypeVar("_T", bound=Hashable)


class ManifestError(FormatError):
    """The manifest is not acceptable; ``problems`` lists every reason, one per entry."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid app_manifest.json:\n" + "\n".join(f"- {p}" for p in problems))


def _guid(value: object) -> UUID:
    # Only the canonical 8-4-4-4-12 text: pydantic's UUID type would also take braces or no dashes.
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        raise ValueError("must be a GUID such as 4e2b5f4c-1d3a-4c6e-9f7b-2a8d0c1e3f5a")
    return UUID(value)


def _not_nil(value: UUID) -> UUID:
    if value.int == 0:
        raise ValueError("must not be the nil GUID")
    return value


def _unique(values: tuple[_T, ...]) -> tuple[_T, ...]:
    duplicates = sorted({repr(v) for i, v in enumerate(values) if v in values[:i]})
    if duplicates:
        raise ValueError(f"duplicate entries: {', '.join(duplicates)}")
    return values


def _unique_hosts(values: tuple[str, ...]) -> tuple[str, ...]:
    _unique(tuple(value.lower() for value in values))
    return values


def _host(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        labels = value.removeprefix("*.").split(".")
        if (
            len(value) > 253
            or not all(_DNS_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()
        ):
            raise ValueError(
                "must be a DNS name (optionally '*.'-prefixed) or IPv4 address"
            ) from None
    return value


def _peripheral(value: object) -> str | int:
    if isinstance(value, str) and _PERIPHERAL.fullmatch(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
        return value
    raise ValueError("must be a peripheral name such as '$SAMPLE_LED' or 'ISU0', or a number")


def _schema_version(value: int) -> int:
    if value != 1:
        raise ValueError("must be 1")
    return value


def _name(value: str) -> str:
    size = len(value.encode("utf-8", errors="replace"))
    if not value or not value.isprintable():
        raise ValueError("must be non-empty printable text")
    if size > NAME_MAX_BYTES:
        raise ValueError(
            f"is {size} bytes long in UTF-8; an image package stores at most {NAME_MAX_BYTES}"
        )
    return value


def _entry_point(value: str) -> str:
    parts = value.removeprefix("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("must be a path inside the app, without '..', '.' or empty parts")
    if "\\" in value or not value.isprintable() or len(value) > 1024:
        raise ValueError("must be printable, without backslashes, at most 1024 characters")
    return value


def _application_type(value: str) -> str:
    if value == "RealTimeCapable":
        raise ValueError(
            "RealTimeCapable apps need real-time cores, which OpenSphere devices do not have; "
            "only 'Default' (high-level) apps are supported"
        )
    if value != "Default":
        raise ValueError("must be 'Default'")
    return value


def _command_argument(value: str) -> str:
    if "\0" in value or len(value) > 1024:
        raise ValueError("must be at most 1024 characters, without NUL")
    return value


Guid = Annotated[UUID, PlainValidator(_guid)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Peripherals = Annotated[
    tuple[Annotated[str | int, PlainValidator(_peripheral)], ...], AfterValidator(_unique)
]
PowerControl = Literal["ForcePowerDown", "ForceReboot", "SetPowerProfile"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MutableStorage(_Model):
    size_kb: Annotated[StrictInt, Field(ge=1, le=MUTABLE_STORAGE_MAX_KB)] = Field(alias="SizeKB")


class Capabilities(_Model):
    """The original's capability names; absent means not granted."""

    allowed_connections: Annotated[
        tuple[Annotated[StrictStr, AfterValidator(_host)], ...], AfterValidator(_unique_hosts)
    ] = Field(default=(), alias="AllowedConnections")
    allowed_tcp_server_ports: Annotated[tuple[Port, ...], AfterValidator(_unique)] = Field(
        default=(), alias="AllowedTcpServerPorts"
    )
    allowed_udp_server_ports: Annotated[tuple[Port, ...], AfterValidator(_unique)] = Field(
        default=(), alias="AllowedUdpServerPorts"
    )
    allowed_application_connections: Annotated[tuple[Guid, ...], AfterValidator(_unique)] = Field(
        default=(), alias="AllowedApplicationConnections"
    )
    gpio: Peripherals = Field(default=(), alias="Gpio")
    uart: Peripherals = Field(default=(), alias="Uart")
    i2c_master: Peripherals = Field(default=(), alias="I2cMaster")
    spi_master: Peripherals = Field(default=(), alias="SpiMaster")
    adc: Peripherals = Field(default=(), alias="Adc")
    pwm: Peripherals = Field(default=(), alias="Pwm")
    mutable_storage: MutableStorage | None = Field(default=None, alias="MutableStorage")
    device_authentication: Guid | None = Field(default=None, alias="DeviceAuthentication")
    cert_store: StrictBool = Field(default=False, alias="CertStore")
    power_controls: Annotated[tuple[PowerControl, ...], AfterValidator(_unique)] = Field(
        default=(), alias="PowerControls"
    )
    software_update_deferral: StrictBool = Field(default=False, alias="SoftwareUpdateDeferral")
    system_event_notifications: StrictBool = Field(default=False, alias="SystemEventNotifications")
    network_config: StrictBool = Field(default=False, alias="NetworkConfig")
    wifi_config: StrictBool = Field(default=False, alias="WifiConfig")
    enterprise_wifi_config: StrictBool = Field(default=False, alias="EnterpriseWifiConfig")
    read_network_proxy_config: StrictBool = Field(default=False, alias="ReadNetworkProxyConfig")
    hardware_address_config: StrictBool = Field(default=False, alias="HardwareAddressConfig")
    sntp_service: StrictBool = Field(default=False, alias="SntpService")
    dhcp_service: StrictBool = Field(default=False, alias="DhcpService")
    time_sync_config: StrictBool = Field(default=False, alias="TimeSyncConfig")
    system_time: StrictBool = Field(default=False, alias="SystemTime")
    heap_mem_stats: StrictBool = Field(default=False, alias="HeapMemStats")


class AppManifest(_Model):
    """A validated manifest; field names are snake_case, JSON keys the original's PascalCase."""

    schema_version: Annotated[StrictInt, AfterValidator(_schema_version)] = Field(
        alias="SchemaVersion"
    )
    name: Annotated[StrictStr, AfterValidator(_name)] = Field(alias="Name")
    component_id: Annotated[Guid, AfterValidator(_not_nil)] = Field(alias="ComponentId")
    entry_point: Annotated[StrictStr, AfterValidator(_entry_point)] = Field(alias="EntryPoint")
    cmd_args: tuple[Annotated[StrictStr, AfterValidator(_command_argument)], ...] = Field(
        default=(), alias="CmdArgs", max_length=MAX_CMD_ARGS
    )
    application_type: Annotated[StrictStr, AfterValidator(_application_type)] = Field(
        alias="ApplicationType"
    )
    malloc_version: Annotated[StrictInt, Field(ge=1, le=2)] | None = Field(
        default=None, alias="MallocVersion"
    )
    target_application_runtime: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        default=None, alias="TargetApplicationRuntime"
    )
    target_beta_apis: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        default=None, alias="TargetBetaApis"
    )
    capabilities: Capabilities = Field(default_factory=Capabilities, alias="Capabilities")

    @property
    def entry_point_path(self) -> PurePosixPath:
        """The entry point relative to the app's root, safe to join to the app folder."""
        return PurePosixPath(self.entry_point.removeprefix("/"))


def parse_manifest(data: bytes) -> AppManifest:
    """Decode and validate ``app_manifest.json`` bytes, reporting every problem at once."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestError([f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_SIZE} limit"])
    try:
        document = json.loads(
            data.removeprefix(codecs.BOM_UTF8).decode("utf-8"),
            object_pairs_hook=_object_without_duplicate_keys,
            parse_constant=_refuse_constant,
        )
    except UnicodeDecodeError as exc:
        raise ManifestError([f"not UTF-8 text: {exc}"]) from exc
    except (ValueError, RecursionError) as exc:
        raise ManifestError([f"not valid JSON: {exc}"]) from exc
    if not isinstance(document, dict):
        raise ManifestError(["the top level must be a JSON object"])
    try:
        return AppManifest.model_validate(document)
    except ValidationError as exc:
        raise ManifestError([_describe(error) for error in exc.errors()]) from exc


def _object_without_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Python keeps the last duplicate and other parsers the first: refuse, so none can disagree.
    document: dict[str, object] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _describe(error: ErrorDetails) -> str:
    location = error["loc"]
    where = ".".join(str(part) for part in location) or "manifest"
    if error["type"] == "extra_forbidden":
        is_capability = len(location) == 2 and location[0] == "Capabilities"
        return f"{where}: unknown {'capability' if is_capability else 'field'}"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)) or value is None:
        shown = repr(value)
        message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return f"{where}: {message}"
