"""Virtual peripherals: the board an emulated device shows its apps.

Like an Azure Sphere hardware definition, a board names each peripheral (``$NAME`` in a
manifest) and gives the number apps pass to applibs (``AppManifestValue``). Because the board
is virtual, its definition also holds each peripheral's starting state: GPIO levels, ADC
readings (the sensors), I2C device registers and PWM channel counts. ``VirtualBoard`` is that
state while the device runs; tests and the control socket change sensor readings through it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from opensphere.formats.errors import FormatError

PeripheralKind = Literal["Gpio", "Adc", "Uart", "I2cMaster", "Pwm", "SpiMaster"]
UART_BUFFER_BYTES: Final = 4096
MAX_BOARD_SIZE: Final = 256 * 1024

_Name = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")]
_Value = Annotated[StrictInt, Field(ge=0, le=0xFFFF)]
_Byte = Annotated[StrictInt, Field(ge=0, le=255)]


class BoardError(FormatError):
    """A board definition is malformed or inconsistent."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Peripheral(_Model):
    name: _Name = Field(alias="Name")
    value: _Value = Field(alias="AppManifestValue")


class GpioDefinition(_Peripheral):
    kind: Literal["Gpio"] = Field(alias="Type")
    level: Literal[0, 1] = Field(default=0, alias="Level")


class AdcDefinition(_Peripheral):
    kind: Literal["Adc"] = Field(alias="Type")
    sample_bits: Annotated[StrictInt, Field(ge=8, le=16)] = Field(default=12, alias="SampleBits")
    reference_voltage: Annotated[StrictFloat | StrictInt, Field(gt=0, le=5)] = Field(
        default=2.5, alias="ReferenceVoltage"
    )
    channels: Annotated[tuple[Annotated[StrictInt, Field(ge=0)], ...], Field(min_length=1)] = Field(
        alias="Channels"
    )

    @model_validator(mode="after")
    def _samples_fit(self) -> AdcDefinition:
        if any(sample >= 1 << self.sample_bits for sample in self.channels):
            raise ValueError(f"a channel reading does not fit in {self.sample_bits} bits")
        return self


class UartDefinition(_Peripheral):
    kind: Literal["Uart"] = Field(alias="Type")


class I2cDevice(_Model):
    address: Annotated[StrictInt, Field(ge=0x08, le=0x77)] = Field(alias="Address")
    registers: Annotated[tuple[_Byte, ...], Field(min_length=1, max_length=256)] = Field(
        alias="Registers"
    )


class I2cDefinition(_Peripheral):
    kind: Literal["I2cMaster"] = Field(alias="Type")
    devices: tuple[I2cDevice, ...] = Field(default=(), alias="Devices")


class PwmDefinition(_Peripheral):
    kind: Literal["Pwm"] = Field(alias="Type")
    channels: Annotated[StrictInt, Field(ge=1, le=16)] = Field(alias="Channels")


class SpiDefinition(_Peripheral):
    """Listed so manifests may name it; the virtual board has no SPI devices to talk to."""

    kind: Literal["SpiMaster"] = Field(alias="Type")


PeripheralDefinition = Annotated[
    GpioDefinition | AdcDefinition | UartDefinition | I2cDefinition | PwmDefinition | SpiDefinition,
    Field(discriminator="kind"),
]


class BoardMetadata(_Model):
    type: Literal["OpenSphere Virtual Board"] = Field(alias="Type")
    version: Literal[1] = Field(alias="Version")


class BoardDefinition(_Model):
    metadata: BoardMetadata = Field(alias="Metadata")
    description: Annotated[StrictStr, Field(max_length=200)] = Field(
        default="", alias="Description"
    )
    peripherals: tuple[PeripheralDefinition, ...] = Field(alias="Peripherals")

    @model_validator(mode="after")
    def _unique(self) -> BoardDefinition:
        names = [(p.kind, p.name.upper()) for p in self.peripherals]
        values = [(p.kind, p.value) for p in self.peripherals]
        if len(set(names)) != len(names) or len(set(values)) != len(values):
            raise ValueError("each peripheral's name and AppManifestValue must be unique per Type")
        return self

    def lookup(self, kind: PeripheralKind, reference: int | str) -> int | None:
        """The number of the ``kind`` peripheral that ``reference`` names, or None.

        A number names itself; text names a peripheral with or without its ``$``.
        """
        for peripheral in self.peripherals:
            if peripheral.kind != kind:
                continue
            if isinstance(reference, int):
                if peripheral.value == reference:
                    return peripheral.value
            elif peripheral.name.upper() == reference.removeprefix("$").upper():
                return peripheral.value
        return None

    def find(self, kind: PeripheralKind, value: int) -> PeripheralDefinition:
        """The peripheral with that number; call only with a number ``lookup`` returned."""
        for peripheral in self.peripherals:
            if peripheral.kind == kind and peripheral.value == value:
                return peripheral
        raise KeyError((kind, value))


def parse_board(data: bytes) -> BoardDefinition:
    """Decode and validate a board definition (JSON)."""
    if len(data) > MAX_BOARD_SIZE:
        raise BoardError(f"board definition is over {MAX_BOARD_SIZE} bytes")
    try:
        return BoardDefinition.model_validate_json(data)
    except ValidationError as exc:
        raise BoardError(f"invalid board definition: {exc}") from exc


# The board a device gets when none is configured; the samples are written for it. A TMP36-like
# sensor on ADC 0 channel 0 reads 0.5 V + 10 mV/°C: 1200 of 4096 at 2.5 V is about 23 °C.
VIRTUAL_BOARD: Final = BoardDefinition.model_validate(
    {
        "Metadata": {"Type": "OpenSphere Virtual Board", "Version": 1},
        "Description": "Emulated MT3620-like board with a temperature sensor and a heater relay",
        "Peripherals": [
            {"Name": "HEATER", "Type": "Gpio", "AppManifestValue": 8},
            {"Name": "STATUS_LED", "Type": "Gpio", "AppManifestValue": 9},
            {"Name": "BUTTON_A", "Type": "Gpio", "AppManifestValue": 12, "Level": 1},
            {"Name": "TEMPERATURE_ADC", "Type": "Adc", "AppManifestValue": 0,
             "Channels": [1200, 0, 0, 0, 0, 0, 0, 0]},
            {"Name": "DEBUG_UART", "Type": "Uart", "AppManifestValue": 4},
            {"Name": "SENSOR_I2C", "Type": "I2cMaster", "AppManifestValue": 2,
             "Devices": [{"Address": 0x48, "Registers": [0x17, 0x00, 0x4B, 0x00]}]},
            {"Name": "FAN_PWM", "Type": "Pwm", "AppManifestValue": 1, "Channels": 4},
            {"Name": "FLASH_SPI", "Type": "SpiMaster", "AppManifestValue": 3},
        ],
    }
)  # fmt: skip


class PeripheralError(Exception):
    """A request the virtual hardware cannot carry out (no such channel, no device at address).

    ``errno_name`` is what a real driver would return, for the app to see.
    """

    def __init__(self, message: str, *, errno_name: str = "EINVAL") -> None:
        self.errno_name = errno_name
        super().__init__(message)


class PwmState(_Model):
    period_ns: Annotated[StrictInt, Field(ge=1, le=10**12)]
    duty_cycle_ns: Annotated[StrictInt, Field(ge=0, le=10**12)]
    enabled: StrictBool
    polarity: Literal["normal", "inversed"]


@dataclass
class _I2cState:
    registers: bytearray
    pointer: int = 0


class VirtualBoard:
    """The live state of a board's peripherals, shared by all apps; thread-safe."""

    def __init__(self, definition: BoardDefinition) -> None:
        self.definition = definition
        self._lock = threading.Lock()
        self._gpio: dict[int, int] = {}
        self._adc: dict[int, list[int]] = {}
        self._uart: dict[int, deque[int]] = {}
        self._i2c: dict[tuple[int, int], _I2cState] = {}
        self._pwm: dict[tuple[int, int], PwmState] = {}
        for peripheral in definition.peripherals:
            if isinstance(peripheral, GpioDefinition):
                self._gpio[peripheral.value] = peripheral.level
            elif isinstance(peripheral, AdcDefinition):
                self._adc[peripheral.value] = list(peripheral.channels)
            elif isinstance(peripheral, UartDefinition):
                self._uart[peripheral.value] = deque(maxlen=UART_BUFFER_BYTES)
            elif isinstance(peripheral, I2cDefinition):
                for device in peripheral.devices:
                    key = (peripheral.value, device.address)
                    self._i2c[key] = _I2cState(bytearray(device.registers))

    def gpio_get(self, gpio: int) -> int:
        with self._lock:
            return self._gpio[gpio]

    def gpio_set(self, gpio: int, level: int) -> None:
        with self._lock:
            self._gpio[gpio] = 1 if level else 0

    def adc_read(self, controller: int, channel: int) -> int:
        with self._lock:
            readings = self._adc[controller]
            if not 0 <= channel < len(readings):
                raise PeripheralError(f"ADC {controller} has no channel {channel}")
            return readings[channel]

    def adc_set(self, controller: int, channel: int, sample: int) -> None:
        """Change what a sensor reads (tests, demos, the control socket)."""
        definition = self.definition.find("Adc", controller)
        assert isinstance(definition, AdcDefinition)
        if not 0 <= sample < 1 << definition.sample_bits:
            raise PeripheralError(f"{sample} does not fit in {definition.sample_bits} bits")
        with self._lock:
            readings = self._adc[controller]
            if not 0 <= channel < len(readings):
                raise PeripheralError(f"ADC {controller} has no channel {channel}")
            readings[channel] = sample

    def uart_write(self, uart: int, data: bytes) -> int:
        with self._lock:
            buffer = self._uart[uart]
            accepted = min(len(data), UART_BUFFER_BYTES - len(buffer))
            buffer.extend(data[:accepted])
            return accepted

    def uart_read(self, uart: int, size: int) -> bytes:
        with self._lock:
            buffer = self._uart[uart]
            return bytes(buffer.popleft() for _ in range(min(size, len(buffer))))

    def i2c_transfer(self, bus: int, address: int, write: bytes, read: int) -> bytes:
        """A write (register pointer, then data) followed by a read from the pointer on."""
        with self._lock:
            device = self._i2c.get((bus, address))
            if device is None:
                raise PeripheralError(
                    f"no device at address {address:#04x} on I2C {bus}", errno_name="ENXIO"
                )
            size = len(device.registers)
            if write:
                device.pointer = write[0] % size
                for byte in write[1:]:
                    device.registers[device.pointer] = byte
                    device.pointer = (device.pointer + 1) % size
            data = bytearray()
            for _ in range(read):
                data.append(device.registers[device.pointer])
                device.pointer = (device.pointer + 1) % size
            return bytes(data)

    def pwm_apply(self, controller: int, channel: int, state: PwmState) -> None:
        definition = self.definition.find("Pwm", controller)
        assert isinstance(definition, PwmDefinition)
        if not 0 <= channel < definition.channels:
            raise PeripheralError(f"PWM {controller} has no channel {channel}")
        if state.duty_cycle_ns > state.period_ns:
            raise PeripheralError("the duty cycle is longer than the period")
        with self._lock:
            self._pwm[(controller, channel)] = state

    def snapshot(self) -> dict[str, Any]:
        """Every peripheral's current state, named as in the definition (JSON-ready)."""
        with self._lock:
            state: dict[str, Any] = {}
            for peripheral in self.definition.peripherals:
                key = f"{peripheral.kind}:{peripheral.name}"
                if isinstance(peripheral, GpioDefinition):
                    state[key] = self._gpio[peripheral.value]
                elif isinstance(peripheral, AdcDefinition):
                    state[key] = list(self._adc[peripheral.value])
                elif isinstance(peripheral, UartDefinition):
                    state[key] = {"pending_bytes": len(self._uart[peripheral.value])}
                elif isinstance(peripheral, PwmDefinition):
                    state[key] = {
                        str(channel): pwm.model_dump()
                        for (controller, channel), pwm in sorted(self._pwm.items())
                        if controller == peripheral.value
                    }
            return state
