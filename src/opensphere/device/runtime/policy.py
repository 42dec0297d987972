"""What an app may do, decided from its manifest alone: pure functions, no I/O, no clock.

The runtime calls these for every applibs request and every brokered connection; the
functions that refuse raise ``CapabilityError``, which the runtime counts and turns into the
app's ``PermissionError``.

Decisions the original leaves open:

- ``AllowedConnections`` entries match host names case-insensitively, ignoring one trailing
  dot. ``*.example.com`` matches exactly one more label (``a.example.com``, not
  ``a.b.example.com`` nor ``example.com``), as TLS wildcards do: the narrower reading.
- An IP address is allowed only if the manifest lists that address. Connecting by IP to an
  address an allowed name resolves to is refused: the app must use the name.
- Text that only looks like an address (``127.1``, ``0x7f.1``) is a name, and no manifest can
  list it, so it is refused before any resolver could read it as an address.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

from opensphere.device.runtime.board import BoardDefinition, PeripheralKind
from opensphere.formats.app_manifest import AppManifest

MAX_UPDATE_DEFERRAL: Final = dt.timedelta(hours=24)

_PERIPHERAL_FIELDS: Final[Mapping[PeripheralKind, str]] = {
    "Gpio": "gpio",
    "Uart": "uart",
    "I2cMaster": "i2c_master",
    "SpiMaster": "spi_master",
    "Adc": "adc",
    "Pwm": "pwm",
}


class CapabilityError(Exception):
    """The manifest does not grant what the app asked for. ``capability`` is the manifest key."""

    def __init__(self, capability: str, detail: str) -> None:
        self.capability = capability
        self.detail = detail
        super().__init__(f"{capability}: {detail}")


class BoardMismatchError(Exception):
    """The manifest names peripherals the board does not have; ``problems`` lists them."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Grants:
    """A manifest's capabilities, with peripheral names resolved to the board's numbers."""

    peripherals: Mapping[PeripheralKind, frozenset[int]]
    allowed_hosts: tuple[str, ...]
    tcp_server_ports: frozenset[int]
    udp_server_ports: frozenset[int]
    storage_bytes: int | None
    device_authentication: UUID | None
    system_event_notifications: bool
    software_update_deferral: bool


def grants_for(manifest: AppManifest, board: BoardDefinition) -> Grants:
    """Resolve a manifest against a board; every peripheral it names must exist there."""
    capabilities = manifest.capabilities
    resolved: dict[PeripheralKind, frozenset[int]] = {}
    problems: list[str] = []
    for kind, field in _PERIPHERAL_FIELDS.items():
        numbers: set[int] = set()
        for reference in getattr(capabilities, field):
            number = board.lookup(kind, reference)
            if number is None:
                problems.append(f"{kind} {reference!r} is not on this board")
            else:
                numbers.add(number)
        resolved[kind] = frozenset(numbers)
    if problems:
        raise BoardMismatchError(problems)
    storage = capabilities.mutable_storage
    return Grants(
        peripherals=resolved,
        allowed_hosts=tuple(_normalise_host(h) for h in capabilities.allowed_connections),
        tcp_server_ports=frozenset(capabilities.allowed_tcp_server_ports),
        udp_server_ports=frozenset(capabilities.allowed_udp_server_ports),
        storage_bytes=storage.size_kb * 1024 if storage is not None else None,
        device_authentication=capabilities.device_authentication,
        system_event_notifications=capabilities.system_event_notifications,
        software_update_deferral=capabilities.software_update_deferral,
    )


def check_peripheral(
    grants: Grants, board: BoardDefinition, kind: PeripheralKind, reference: int | str
) -> int:
    """The peripheral's number if the manifest lists it; refused otherwise."""
    number = board.lookup(kind, reference)
    if number is None or number not in grants.peripherals.get(kind, frozenset()):
        raise CapabilityError(kind, f"{reference!r} is not in the app manifest")
    return number


def check_connection(grants: Grants, host: str) -> str:
    """The host to resolve or connect to, if ``AllowedConnections`` lists it; refused otherwise."""
    normalised = _normalise_host(host)
    address = ipv4_address(normalised)
    for allowed in grants.allowed_hosts:
        if address is not None:
            if ipv4_address(allowed) == address:
                return normalised
        elif ipv4_address(allowed) is None and _name_matches(allowed, normalised):
            return normalised
    raise CapabilityError("AllowedConnections", f"{host!r} is not in the app manifest")


def check_server_port(grants: Grants, protocol: Literal["tcp", "udp"], port: int) -> None:
    allowed = grants.tcp_server_ports if protocol == "tcp" else grants.udp_server_ports
    if port not in allowed:
        capability = "AllowedTcpServerPorts" if protocol == "tcp" else "AllowedUdpServerPorts"
        raise CapabilityError(capability, f"port {port} is not in the app manifest")


def check_storage(grants: Grants) -> int:
    """The storage quota in bytes, if the manifest grants mutable storage."""
    if grants.storage_bytes is None:
        raise CapabilityError("MutableStorage", "the app manifest grants no mutable storage")
    return grants.storage_bytes


def check_device_authentication(grants: Grants, device_tenant: UUID | None) -> None:
    """Granted when the manifest names a tenant, and the device's tenant when it is known."""
    if grants.device_authentication is None:
        raise CapabilityError("DeviceAuthentication", "not in the app manifest")
    if device_tenant is not None and grants.device_authentication != device_tenant:
        raise CapabilityError(
            "DeviceAuthentication",
            f"the manifest names tenant {grants.device_authentication}, "
            f"this device belongs to {device_tenant}",
        )


def update_deferral_deadline(
    first_notified: dt.datetime, requested_until: dt.datetime
) -> dt.datetime:
    """How long a deferral may really last: at most 24 hours after the device learnt of it."""
    return min(requested_until, first_notified + MAX_UPDATE_DEFERRAL)


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential back-off between restarts of an app that keeps stopping.

    The n-th consecutive failure waits ``initial * factor**(n-1)`` seconds, at most
    ``maximum``; a run that lasted ``reset_after`` seconds starts the count again.
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not (0 <= self.initial <= self.maximum and 1 <= self.factor <= 10):
            raise ValueError("need 0 <= initial <= maximum and 1 <= factor <= 10")


def restart_delay(policy: RestartPolicy, consecutive_failures: int) -> float:
    # The exponent is capped so that a long crash loop cannot overflow a float.
    exponent = min(max(consecutive_failures - 1, 0), 64)
    return float(min(policy.initial * policy.factor**exponent, policy.maximum))


def _normalise_host(host: str) -> str:
    return host.lower().removesuffix(".")


def ipv4_address(host: str) -> ipaddress.IPv4Address | None:
    """The address ``host`` spells in canonical dotted form, else None (it is a name)."""
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


def _name_matches(allowed: str, host: str) -> bool:
    if allowed.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == allowed[2:]
    return allowed == host
